"""Pydantic models for every request and response body of the API."""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model, field_validator
from pydantic.fields import FieldInfo

from sidyp_engine.types import CalibrationConfig, check_noise_fraction

T = TypeVar("T")

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class ListResponse(BaseModel, Generic[T]):
    object: Literal["list"] = "list"
    data: list[T]
    has_more: bool


class Dataset(BaseModel):
    id: str
    object: Literal["dataset"] = "dataset"
    name: str | None
    n_rows: int
    labels: list[str]
    label_counts: dict[str, int]
    n_missing_labels: int
    has_gold: bool
    created_at: str
    format: str
    text_column: str
    label_column: str


# The job parameters a client may set: a subset of the engine's CalibrationConfig. Types, defaults, ranges
# and descriptions are taken from it (one source of truth), so the API never accepts what the engine refuses.
CLIENT_PARAMS = (
    "epochs",
    "branches",
    "diffusion_epochs",
    "k",
    "noise_fraction",
    "seed",
    "max_length",
    "backbone",
    "batch_size",
)


def _engine_field(name: str, annotation: Any = None, **overrides: Any) -> tuple[Any, FieldInfo]:
    info = CalibrationConfig.model_fields[name]
    return annotation or info.annotation, FieldInfo.merge_field_infos(info, **overrides)


def _fraction(cls, v: Any) -> Any:
    return check_noise_fraction(v)  # the engine's own check, not a copy of it


JobParams = create_model(
    "JobParams",
    __doc__="Calibration parameters a client may set; ranges come from sidyp_engine.types.CalibrationConfig.",
    __config__=ConfigDict(extra="forbid"),
    __validators__={"_fraction": field_validator("noise_fraction")(_fraction)},
    **{name: _engine_field(name) for name in CLIENT_PARAMS if name != "backbone"},
    # A path the server checks against SIDYP_ALLOWED_BACKBONE_DIRS; bounded so a huge string is a 422.
    backbone=_engine_field(
        "backbone",
        Annotated[str, StringConstraints(max_length=4096)] | None,
        description="None = bundled MiniLM; else a directory the server allows",
    ),
)


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset_id: str = Field(..., max_length=64)
    validation_dataset_id: str | None = Field(None, max_length=64)
    eval_dataset_id: str | None = Field(None, max_length=64)
    params: JobParams | None = None


class JobProgress(BaseModel):
    stage: str
    fraction: float
    message: str = ""


class JobError(BaseModel):
    code: str
    message: str


class Job(BaseModel):
    id: str
    object: Literal["job"] = "job"
    status: JobStatus
    dataset_id: str
    validation_dataset_id: str | None = None
    eval_dataset_id: str | None = None
    params: dict[str, Any]
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    progress: JobProgress
    metrics: dict[str, Any] = Field(default_factory=dict)
    error: JobError | None = None
    model_id: str | None = None
    deliveries: int = 0
    cancel_requested: bool = False


class JobEvent(BaseModel):
    seq: int
    type: str
    at: str
    stage: str | None = None
    fraction: float | None = None
    message: str = ""
    metrics: dict[str, Any] = Field(default_factory=dict)


class LabelItem(BaseModel):
    index: int
    text: str
    noisy_label: str | None
    suggested_label: str
    label_quality: float
    is_label_issue: bool
    probabilities: dict[str, float]
    is_validation: bool


class EvalScores(BaseModel):
    accuracy: float
    macro_f1: float
    ece: float


class EvalReport(BaseModel):
    dataset_id: str
    n_rows: int
    noisy_classifier: EvalScores
    calibrated: EvalScores


class Report(BaseModel):
    object: Literal["report"] = "report"
    job_id: str
    labels: list[str]
    n_rows: int
    n_labelled: int
    noise_share: float
    noise_matrix: list[list[float]] = Field(description="row i: P(noisy label = j | true label = i)")
    flagged_per_class: dict[str, int] = Field(description="rows flagged as label issues, by given label")
    n_flagged: int
    suggested_counts: dict[str, int]
    timings: dict[str, float]
    eval: EvalReport | None = None
    diagnostics: dict[str, Any] = Field(default_factory=dict)


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    job_id: str
    dataset_id: str
    labels: list[str]
    created_at: str
    params: dict[str, Any]


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: list[str] = Field(..., min_length=1, description="at most SIDYP_MAX_PREDICT_TEXTS (1000) per call")


class Prediction(BaseModel):
    label: str
    confidence: float
    probabilities: dict[str, float]


class PredictResponse(BaseModel):
    object: Literal["prediction"] = "prediction"
    model_id: str
    predictions: list[Prediction]


class Health(BaseModel):
    status: str
    checks: dict[str, Any] = Field(default_factory=dict)
