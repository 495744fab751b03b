"""What `POST /v1/jobs` refuses before anything is queued: a dataset the engine cannot train, and a job
whose estimated peak memory does not fit a worker (both 422, with the numbers)."""

from __future__ import annotations

import logging
from pathlib import Path

from app.errors import ProblemError
from sidyp_core.config import Settings
from sidyp_engine.data import MIN_ROWS_PER_CLASS, MIN_TRAINABLE_CLASSES, trainable_classes
from sidyp_engine.memory import backbone_dimensions, estimate_peak_bytes
from sidyp_engine.types import CalibrationConfig

log = logging.getLogger("sidyp.api")


def check_trainable(dataset: dict) -> None:
    counts = dataset["label_counts"]
    if len(trainable_classes(counts)) >= MIN_TRAINABLE_CLASSES:
        return
    shown = ", ".join(f"{c}: {n}" for c, n in counts.items())
    raise ProblemError(
        422,
        f"The dataset cannot be trained: it needs at least {MIN_TRAINABLE_CLASSES} classes with "
        f"{MIN_ROWS_PER_CLASS} or more labelled rows each; labelled rows per class: {shown}.",
        slug="dataset-not-trainable",
        errors=[
            {"field": "body.dataset_id", "message": f"class {c!r} has {n} labelled rows"}
            for c, n in counts.items()
        ],
    )


def _dimensions(backbone_dir: Path | None) -> dict[str, int]:
    if backbone_dir is None:
        return {}  # the estimate's defaults are the bundled MiniLM's
    try:
        return backbone_dimensions(backbone_dir)
    except (OSError, KeyError, ValueError):
        log.warning("backbone %s has no readable config.json; estimating with MiniLM's sizes", backbone_dir)
        return {}


def check_fits_memory(
    settings: Settings,
    params,
    backbone_dir: Path | None,
    dataset: dict,
    validation: dict | None,
    evaluation: dict | None,
) -> None:
    config = CalibrationConfig(**params.model_dump(exclude={"backbone"}, exclude_none=True))
    n_rows = dataset["n_rows"] + (validation["n_rows"] if validation else 0)
    estimate = estimate_peak_bytes(
        n_rows,
        len(dataset["labels"]),
        config,
        n_extra_rows=evaluation["n_rows"] if evaluation else 0,
        **_dimensions(backbone_dir),
    )
    limit = settings.worker_memory_limit()
    if estimate > limit:
        raise ProblemError(
            422,
            f"The job would need about {estimate} bytes of memory at its peak; a worker has {limit} "
            "(SIDYP_WORKER_MEMORY_BYTES). Use fewer rows, epochs or branches, or a shorter max_length.",
            slug="job-too-large",
            errors=[{"field": "body.params", "message": f"estimated peak {estimate} bytes > limit {limit}"}],
            extra={"estimated_peak_bytes": estimate, "worker_memory_bytes": limit},
        )
