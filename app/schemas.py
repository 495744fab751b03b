"""Pydantic models for every request and response body of the API."""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model, field_validator
from pydantic.fields import FieldInfo

from sidyp_engine.types import CalibrationConfig, check_noise_fraction

T = TypeVar("T")

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class ProblemItem(BaseModel):
    model_config = ConfigDict(extra="allow")

    row: int | None = Field(None, description="uploads: 0-based data row; null when the file or header")
    column: str | None = Field(None, description="uploads: the column")
    field: str | None = Field(None, description="request bodies, queries and headers: where")
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details: every error answer, as application/problem+json."""

    model_config = ConfigDict(extra="allow")  # extension members, e.g. estimated_peak_bytes

    type: str = Field(description="a URI reference naming the kind of problem, e.g. /problems/queue-full")
    title: str
    status: int
    detail: str
    instance: str | None = Field(None, description="the request path")
    errors: list[ProblemItem] | None = None


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
    # A name the operator registered (SIDYP_BACKBONES), never a path; bounded so a huge string is a 422.
    backbone=_engine_field(
        "backbone",
        Annotated[str, StringConstraints(max_length=4096)] | None,
        description="None or 'minilm' = the bundled MiniLM; else a backbone name the server registered",
    ),
)


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset_id: str = Field(..., max_length=64)
    validation_dataset_id: str | None = Field(None, max_length=64)
    eval_dataset_id: str | None = Field(None, max_length=64)
    params: JobParams | None = None


JOB_CREATE_EXAMPLES = {
    "defaults": {"summary": "Calibrate with the default parameters", "value": {"dataset_id": "ds_..."}},
    "with_eval": {
        "summary": "A held-out validation set and a gold-labelled evaluation set",
        "value": {
            "dataset_id": "ds_...",
            "validation_dataset_id": "ds_...",
            "eval_dataset_id": "ds_...",
            "params": {"epochs": 4, "branches": 3, "seed": 0, "backbone": "minilm"},
        },
    },
}


class JobProgress(BaseModel):
    stage: str
    fraction: float
    message: str = ""


class JobError(BaseModel):
    code: str = Field(
        description="stable: invalid_input, timeout, worker_lost, storage_error, internal_error, ..."
    )
    message: str
    error_id: str | None = Field(None, description="server-side failures: quote it to the operator")


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


ReviewAction = Literal["accept", "keep", "set"]


class Review(BaseModel):
    """A reviewer's decision on one row; `label` is the label the row has once the decision is applied."""

    index: int
    action: ReviewAction
    label: str
    reviewed_at: str
    key_id: str = Field(description="a hash prefix of the API key that saved it (never the key)")


class LabelItem(BaseModel):
    index: int
    text: str
    given_label: str | None
    suggested_label: str
    label_quality: float
    is_label_issue: bool
    probabilities: dict[str, float]
    is_validation: bool
    is_trusted: bool = False
    review: Review | None = None


class LabelPage(BaseModel):
    object: Literal["list"] = "list"
    data: list[LabelItem]
    has_more: bool
    next_cursor: int | None = Field(description="pass as `after` for the next page; null on the last page")
    total: int = Field(description="rows matching the filters, over all pages")


class ReviewInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    index: int = Field(..., ge=0, le=2**31 - 1)
    action: ReviewAction = Field(
        description="accept: the suggested label; keep: the given label; set: `label`"
    )
    label: str | None = Field(None, max_length=200, description="the class, for action 'set' only")


class ReviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reviews: list[ReviewInput] = Field(..., min_length=1, max_length=10_000)


class ReviewResult(BaseModel):
    object: Literal["list"] = "list"
    data: list[Review]
    n_reviewed: int = Field(description="rows of the job with a decision, after this request")


class ReviewedDatasetRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=200)


class ClassScores(BaseModel):
    precision: float | None = Field(description="None when the model never predicts the class")
    recall: float | None = Field(description="None when no gold row has the class")
    f1: float | None
    support: int = Field(description="gold-labelled rows of the class")


class ModelEval(BaseModel):
    accuracy: float
    macro_f1: float
    ece: float = Field(description="expected calibration error, 15 equal-width bins")
    nll: float | None
    per_class: dict[str, ClassScores]
    confusion_matrix: list[list[int]] = Field(description="row i: gold class i; column j: predicted class j")


class EvalReport(BaseModel):
    n_rows: int
    n_scored: int = Field(description="rows whose gold label is one of the classes")
    n_skipped: int
    llm_label_accuracy: float | None = Field(
        description="share of scored rows whose LLM label is the gold one"
    )
    noisy_classifier: ModelEval | None = Field(description="classifier trained on the noisy labels (before)")
    refined_posterior: ModelEval | None = Field(description="SiDyP's refined posterior (after)")
    served: ModelEval | None = Field(description="the calibrated model served at /v1/models/{id}/predict")


class ReliabilityBin(BaseModel):
    lo: float
    hi: float
    count: int
    confidence: float | None = Field(description="mean top-class confidence in the bin; None when empty")
    accuracy: float | None


class Reliability(BaseModel):
    n_bins: int
    n_rows: int
    noisy_classifier: list[ReliabilityBin] | None = None
    refined_posterior: list[ReliabilityBin] | None = None
    served: list[ReliabilityBin] | None = None


class ClassDistribution(BaseModel):
    given: dict[str, int]
    suggested: dict[str, int]


class Histogram(BaseModel):
    edges: list[float]
    counts: list[int]
    counts_flagged: list[int]


class ReportWarning(BaseModel):
    # details per code: count, max_length, labels, threshold, ...; a warning that hand-checked rows settle
    # also carries asks_for: "trusted_rows" (docs/report.md)
    model_config = ConfigDict(extra="allow")

    code: str = Field(
        description="texts_truncated | class_never_labelled | class_few_rows | eval_not_scored | "
        "flagged_vs_noise_share | labels_look_like_a_rule | noise_gate_close | method_kept_on_expected_gain | "
        "few_rows_per_class | "
        "trusted_rows_not_random (docs/report.md); those that trusted rows settle carry asks_for: trusted_rows"
    )
    message: str


class ServedSummary(BaseModel):
    temperature: float | None


class Report(BaseModel):
    object: Literal["report"] = "report"
    version: Literal[2] = 2
    job_id: str | None
    created_at: str
    labels: list[str]
    inputs: dict[str, Any]
    config: dict[str, Any]
    n_rows: int
    n_labelled: int
    n_validation: int = Field(description="training rows held out for model selection (still labelled)")
    noise_share: float = Field(description="expected share of wrong given labels among labelled rows")
    noise_matrix: list[list[float]] = Field(description="row i: P(noisy label = j | true label = i)")
    n_flagged: int
    flagged_per_class: dict[str, int] = Field(description="rows flagged as label issues, by given label")
    class_distribution: ClassDistribution
    label_quality_histogram: Histogram = Field(description="labelled rows per label-quality bin")
    served: ServedSummary
    eval: EvalReport | None = Field(description="scores on the evaluation rows' gold labels, if any")
    reliability: Reliability | None = Field(description="reliability-diagram bins on the same rows")
    warnings: list[ReportWarning]
    timings: dict[str, float]
    selection: dict[str, Any] | None = Field(
        None,
        description="do no harm: what was kept (refined / plain / probe labels, served / plain / probe model) and why",
    )
    estimates: dict[str, Any] | None = Field(
        None,
        description="estimated accuracy of the LLM labels, the plain classifier and what is delivered, each "
        "with an interval: from trusted rows a 95 % Wilson interval; gold-free, one spanning the 95 % "
        "row-sampling intervals of two estimators (refined posteriors, method of moments), whose own bias is "
        "not in it; with trusted rows and evaluation texts also the delivered model's accuracy on those texts, "
        "carried from the trusted rows by its confidence (average thresholded confidence, bootstrap 95 % interval)",
    )
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
