"""A finished job's output files (labels, report, plots), read with one set of answers: 409 until the job
has succeeded, 410 when its files are gone."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from app.errors import ProblemError
from sidyp_core.artifacts import artifact_dir, read_json
from sidyp_core.config import Settings
from sidyp_core.jobs import JobRecord


def require_succeeded(job: JobRecord) -> JobRecord:
    if job.status != "succeeded":
        raise ProblemError(
            409,
            f"The job is {job.status}; its outputs exist once it has succeeded.",
            slug="job-not-finished",
        )
    return job


def output_path(settings: Settings, job: JobRecord, *parts: str) -> Path:
    return artifact_dir(settings.data_dir, job.tenant, "jobs", job.id).joinpath(*parts)


@functools.lru_cache(maxsize=8)
def _load_json_cached(path: str, mtime_ns: int) -> dict:
    return read_json(path)


def output_json(settings: Settings, job: JobRecord, name: str) -> dict[str, Any]:
    """A JSON output, parsed once per file version (the cache key holds the mtime)."""
    path = output_path(settings, job, name)
    try:
        return _load_json_cached(str(path), os.stat(path).st_mtime_ns)
    except FileNotFoundError:
        raise ProblemError(410, "The job's outputs are no longer on disk.", slug="outputs-missing") from None


def output_bytes(settings: Settings, job: JobRecord, *parts: str) -> bytes | None:
    try:
        return output_path(settings, job, *parts).read_bytes()
    except FileNotFoundError:
        return None
