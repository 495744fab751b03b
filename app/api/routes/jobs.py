"""Calibration jobs: create, read, list, events, cancel, and their labels (the report: reports.py)."""

from __future__ import annotations

import csv
import functools
import io
import os
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from app.api.deps import JobDep, SettingsDep, StoreDep, TenantDep
from app.api.routes.common import check_cursor, page_limit
from app.errors import ProblemError
from app.schemas import Job, JobCreate, JobEvent, LabelItem, ListResponse
from app.services import jobs as service
from sidyp_core.artifacts import LABELS_FILE, artifact_dir, read_json
from sidyp_core.jobs import JobRecord

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.post("", status_code=202, response_model=Job, summary="Start a calibration job")
def create_job(
    body: JobCreate,
    request: Request,
    response: Response,
    settings: SettingsDep,
    store: StoreDep,
    tenant: TenantDep,
) -> Job:
    job = service.create_job(settings, store, tenant, body, request.app.state.enqueue)
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return service.to_public(job)


@router.get("", response_model=ListResponse[Job], summary="List jobs, newest first")
def list_jobs(
    settings: SettingsDep,
    store: StoreDep,
    tenant: TenantDep,
    limit: Annotated[int | None, Query(ge=1, description="page size")] = None,
    after: Annotated[str | None, Query(max_length=64)] = None,
) -> ListResponse[Job]:
    docs, more = store.list(
        "job", tenant, page_limit(limit, settings.max_page_size), check_cursor(after, "job")
    )
    return ListResponse[Job](
        data=[service.to_public(JobRecord.model_validate(d)) for d in docs], has_more=more
    )


@router.get("/{job_id}", response_model=Job)
async def get_job(job: JobDep) -> Job:
    return service.to_public(job)


@router.get(
    "/{job_id}/events", response_model=ListResponse[JobEvent], summary="Ordered progress and metric events"
)
def job_events(
    job: JobDep,
    settings: SettingsDep,
    store: StoreDep,
    limit: Annotated[int | None, Query(ge=1, description="page size")] = None,
    after: Annotated[int, Query(ge=-1, le=2**31 - 1, description="seq of the last event already seen")] = -1,
) -> ListResponse[JobEvent]:
    events, more = store.list_events(job.id, after, page_limit(limit, settings.max_page_size, default=100))
    return ListResponse[JobEvent](data=[JobEvent(**e) for e in events], has_more=more)


@router.post(
    "/{job_id}/cancel", response_model=Job, summary="Cancel a job (queued: at once; running: within seconds)"
)
def cancel_job(job: JobDep, store: StoreDep) -> Job:
    return service.to_public(service.cancel_job(store, job))


def _require_succeeded(job: JobRecord) -> None:
    if job.status != "succeeded":
        raise ProblemError(
            409,
            f"The job is {job.status}; its outputs exist once it has succeeded.",
            slug="job-not-finished",
        )


@functools.lru_cache(maxsize=8)
def _load_json_cached(path: str, mtime_ns: int) -> dict:
    return read_json(path)


def _job_output(settings, tenant: str, job_id: str, name: str) -> dict:
    path = artifact_dir(settings.data_dir, tenant, "jobs", job_id) / name
    try:
        return _load_json_cached(str(path), os.stat(path).st_mtime_ns)
    except FileNotFoundError:
        raise ProblemError(410, "The job's outputs are no longer on disk.", slug="outputs-missing") from None


def _label_item(rows: dict, classes: list[str], i: int) -> dict:
    return {
        "index": i,
        "text": rows["text"][i],
        "given_label": rows["given_label"][i],
        "suggested_label": rows["suggested_label"][i],
        "label_quality": rows["label_quality"][i],
        "is_label_issue": rows["is_label_issue"][i],
        "probabilities": dict(zip(classes, rows["probabilities"][i], strict=True)),
        "is_validation": rows["is_validation"][i],
    }


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_safe(value) -> str:
    """Spreadsheet formula injection: a cell starting with = + - @ (or tab/CR) is prefixed with '."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


@router.get(
    "/{job_id}/labels",
    response_model=ListResponse[LabelItem],
    summary="Per-row refined labels (one per uploaded row, validation rows included)",
    responses={200: {"content": {"text/csv": {}}}},
)
def job_labels(
    job: JobDep,
    settings: SettingsDep,
    tenant: TenantDep,
    limit: Annotated[int | None, Query(ge=1, description="page size")] = None,
    after: Annotated[int, Query(ge=-1, le=2**31 - 1, description="index of the last row already seen")] = -1,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
):
    job_id = job.id
    _require_succeeded(job)
    labels = _job_output(settings, tenant, job_id, LABELS_FILE)
    classes, rows = labels["classes"], labels["rows"]
    n = len(rows["text"])
    if format == "csv":
        return StreamingResponse(
            _csv_lines(rows, classes, n),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{job_id}-labels.csv"'},
        )
    size = page_limit(limit, settings.max_page_size, default=100)
    start = after + 1
    items = [LabelItem(**_label_item(rows, classes, i)) for i in range(start, min(start + size, n))]
    return ListResponse[LabelItem](data=items, has_more=start + size < n)


def _csv_lines(rows: dict, classes: list[str], n: int):
    buf = io.StringIO()
    writer = csv.writer(buf)
    header = [
        "index",
        "text",
        "given_label",
        "suggested_label",
        "label_quality",
        "is_label_issue",
        "is_validation",
    ]
    writer.writerow(header + [_csv_safe(f"p_{c}") for c in classes])
    for i in range(n):
        writer.writerow(
            [
                i,
                _csv_safe(rows["text"][i]),
                _csv_safe(rows["given_label"][i]),
                _csv_safe(rows["suggested_label"][i]),
                rows["label_quality"][i],
                rows["is_label_issue"][i],
                rows["is_validation"][i],
                *rows["probabilities"][i],
            ]
        )
        if buf.tell() > 65536:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()
