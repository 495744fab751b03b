"""Public data types of the engine: configuration, inputs' errors, progress and results.

This module is the contract between the engine and its callers (CLI, Celery worker, benchmarks).
It holds no training code; stages live in their own modules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator


class InvalidInputError(ValueError):
    """The one error type for bad inputs. `rows` lists offending 0-based row indices (may be empty)."""

    def __init__(self, message: str, rows: list[int] | None = None, column: str | None = None):
        self.rows = list(rows or [])
        self.column = column
        shown = ""
        if self.rows:
            head = ", ".join(str(r) for r in self.rows[:20])
            more = f" (+{len(self.rows) - 20} more)" if len(self.rows) > 20 else ""
            shown = f" [rows: {head}{more}]"
        super().__init__(f"{message}{shown}")
        self.message = message


class CalibrationStopped(RuntimeError):
    """Raised when the should-stop callback asked the engine to stop (checked at least once per batch)."""


class CalibrationConfig(BaseModel):
    """Hyper-parameters of one calibration run. Every field has a default and a valid range."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(4, ge=1, le=50, description="classifier fine-tuning epochs (stage 1)")
    branches: int = Field(3, ge=1, le=8, description="ensemble branches M for classifier and refiner")
    diffusion_epochs: int = Field(4, ge=1, le=100, description="refiner training epochs (stage 3)")
    k: int | None = Field(
        None,
        ge=1,
        le=200,
        description="neighbours of the k-NN prior; None = 10 in the stage-1 space, 50 in the encoder space",
    )
    noise_fraction: Literal["auto"] | float = Field(
        "auto", description="share of examples treated as likely mislabelled; 'auto' estimates it"
    )
    seed: int = Field(0, ge=0, le=2**31 - 1, description="random seed of every stage")
    max_length: int = Field(
        128, ge=8, le=512, description="token cap per text (batches pad to their longest)"
    )
    backbone: str | None = Field(
        None, description="local Hugging Face model dir; None = bundled all-MiniLM-L6-v2"
    )
    encoder: str | None = Field(
        None,
        description="frozen sentence encoder dir (k-NN prior in the encoder space, refiner conditioning); "
        "None = the backbone as downloaded",
    )
    knn_space: Literal["auto", "stage1", "encoder"] = Field(
        "auto",
        description="where the k-NN prior looks for neighbours: the stage-1 classifiers' mid-training "
        "space, the frozen encoder's, or 'auto' (the encoder's when the classifiers reproduce the held-out "
        "noisy labels almost perfectly, i.e. the labels are a learnable rule of the text)",
    )
    noise_model: Literal["auto", "on", "off"] = Field(
        "auto",
        description="refine the k-NN prior with a class-conditional noise matrix fitted by EM over the "
        "neighbours' noisy labels; 'auto' = on in the stage-1 k-NN space, off in the frozen encoder space "
        "(which 'auto' takes when the labels are a learnable rule of the text, where noise is not a habit "
        "per true class)",
    )
    batch_size: int = Field(32, ge=1, le=1024, description="texts per training batch")
    learning_rate: float = Field(
        1e-4, gt=0, le=1e-2, description="peak learning rate of the classifiers and the served model"
    )
    class_balanced: bool = Field(
        False,
        description="stage-1 classifiers: class-balanced loss and epoch selection (k-NN votes are always "
        "balanced)",
    )
    selection: Literal["trusted", "auto"] = Field(
        "auto",
        description="do no harm: which evidence may replace the refined labels and the served model by the "
        "plain noisy-label classifier. 'auto' = the noise gate (plain unless >= 40 % of the labels are "
        "wrong: measured on the trusted rows when there are any, else the run's estimate), and with trusted "
        "rows whichever side is clearly better on them; "
        "'trusted' = only trusted rows, the gold-free estimates are reported",
    )
    valid_fraction: float = Field(0.1, gt=0, lt=0.5, description="held-out share when no validation set")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="'auto' = CUDA when present; 'cuda' without one is an error"
    )

    @field_validator("noise_fraction")
    @classmethod
    def _fraction_range(cls, v: Any) -> Any:
        return check_noise_fraction(v)


def check_noise_fraction(v: Any) -> Any:
    """config.noise_fraction's rule, for other models of the same field (the API's job params)."""
    if v != "auto" and not (0.0 < float(v) < 1.0):
        raise ValueError("noise_fraction must be 'auto' or a number in (0, 1)")
    return v


@dataclass(frozen=True)
class Progress:
    # "validate", "classifier", "prior", "refiner", "posterior", "served", "plain", "select", "refit", "done"
    stage: str
    fraction: float  # 0..1 within the stage
    message: str = ""
    metrics: dict[str, float] = field(default_factory=dict)


ProgressCallback = Callable[[Progress], None]
ShouldStop = Callable[[], bool]


def progress_as_stage(progress: ProgressCallback | None, stage: str) -> ProgressCallback | None:
    """`progress` with every event re-labelled as `stage` (a stage that reruns another's training)."""
    if progress is None:
        return None

    def report(p: Progress) -> None:
        progress(Progress(stage, p.fraction, p.message, p.metrics))

    return report


@dataclass
class CalibrationResult:
    """Everything one run produces. Row arrays follow the order of the training inputs.

    When no validation set is given, the held-out rows are still training rows: they appear here
    (with `is_validation[i] = True`) and get the same outputs as every other row.
    """

    classes: list[str]
    given_labels: list[str | None]  # per training row, as given (None = missing)
    suggested_labels: list[str]  # argmax of posterior
    label_quality: np.ndarray  # [N] in [0, 1]: posterior probability of the given label (0 when missing)
    is_label_issue: np.ndarray  # [N] bool
    posteriors: np.ndarray  # [N, C] refined P(y | x)
    is_validation: np.ndarray  # [N] bool: row was held out for model selection
    noise_matrix: np.ndarray  # [C, C] estimated P(noisy = j | true = i), rows sum to 1
    noise_share: float  # estimated share of wrong noisy labels among labelled rows
    extra_posteriors: np.ndarray | None  # [E, C] for the extra texts, or None
    extra_noisy_posteriors: np.ndarray | None  # [E, C] the noisy-label classifier's P(ỹ | x) for extra texts
    model: Any  # ServedClassifier
    timings: dict[str, float]  # seconds per stage, plus "total"
    diagnostics: dict[str, Any] = field(default_factory=dict)  # JSON-safe figures, no server paths
    # per-row arrays of the intermediate stages, only with calibrate(..., collect_diagnostics=True)
    diagnostic_arrays: dict[str, np.ndarray] = field(default_factory=dict)
