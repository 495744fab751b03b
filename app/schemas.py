"""Pydantic models for every request and response body of the API."""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

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


class JobParams(BaseModel):
    """Calibration parameters a client may set. Ranges match sidyp_engine.types.CalibrationConfig."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(4, ge=1, le=50, description="classifier fine-tuning epochs")
    branches: int = Field(3, ge=1, le=8, description="ensemble branches")
    diffusion_epochs: int = Field(4, ge=1, le=100, description="refiner training epochs")
    k: int = Field(10, ge=1, le=100, description="neighbours of the k-NN prior")
    noise_fraction: Literal["auto"] | float = Field("auto", description="'auto' or a number in (0, 1)")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    max_length: int = Field(128, ge=8, le=512, description="token cap per text")
    backbone: str | None = Field(
        None, max_length=4096, description="None = bundled MiniLM; else a directory the server allows"
    )
    batch_size: int = Field(32, ge=1, le=1024)

    @field_validator("noise_fraction")
    @classmethod
    def _fraction(cls, v: Any) -> Any:
        if v != "auto" and not (0.0 < float(v) < 1.0):
            raise ValueError("noise_fraction must be 'auto' or a number in (0, 1)")
        return v


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
