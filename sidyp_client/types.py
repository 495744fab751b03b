"""What the API returns, as frozen dataclasses.

Built with `from_api`, which takes the fields it knows and keeps the whole answer in `raw`: a server that
adds a field breaks nothing, and a caller can still read it there.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})


def _build(cls: type[T], data: dict[str, Any], raw: dict[str, Any] | None = None) -> T:
    known = {f.name for f in dataclasses.fields(cls)} - {"raw"}
    return cls(**{name: data.get(name) for name in known}, raw=data if raw is None else raw)


@dataclass(frozen=True)
class Dataset:
    id: str
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
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Dataset:
        return _build(cls, data)


@dataclass(frozen=True)
class JobProgress:
    stage: str
    fraction: float
    message: str


@dataclass(frozen=True)
class JobError:
    code: str
    message: str


@dataclass(frozen=True)
class Job:
    id: str
    status: str
    dataset_id: str
    validation_dataset_id: str | None
    eval_dataset_id: str | None
    params: dict[str, Any]
    created_at: str
    started_at: str | None
    finished_at: str | None
    progress: JobProgress
    metrics: dict[str, Any]
    error: JobError | None
    model_id: str | None
    deliveries: int
    cancel_requested: bool
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Job:
        progress = data.get("progress") or {}
        error = data.get("error")
        fields = {
            **data,
            "progress": JobProgress(
                str(progress.get("stage", "")),
                float(progress.get("fraction") or 0.0),
                str(progress.get("message") or ""),
            ),
            "error": JobError(str(error.get("code", "")), str(error.get("message", ""))) if error else None,
            "metrics": data.get("metrics") or {},
        }
        return _build(cls, fields, raw=data)

    @property
    def done(self) -> bool:
        """The job ended (succeeded, failed or cancelled) and will not change again."""
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True)
class JobEvent:
    seq: int
    type: str
    at: str
    stage: str | None
    fraction: float | None
    message: str
    metrics: dict[str, Any]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> JobEvent:
        return _build(cls, data)


@dataclass(frozen=True)
class Model:
    id: str
    job_id: str
    dataset_id: str
    labels: list[str]
    created_at: str
    params: dict[str, Any]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Model:
        return _build(cls, data)


@dataclass(frozen=True)
class Prediction:
    text: str
    label: str
    confidence: float
    probabilities: dict[str, float]
