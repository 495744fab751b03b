"""Calibration jobs: create, read, list, events, cancel, and their labels (the report: reports.py)."""

from __future__ import annotations

import csv
import functools
import io
import os
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from app.api.deps import JobDep, SettingsDep, StoreDep, TenantDep
from app.api.routes.common import check_cursor, page_limit
from app.api.routes.event_stream import SSE_MEDIA_TYPE, event_stream_response
from app.errors import ProblemError, problems
from app.schemas import JOB_CREATE_EXAMPLES, Job, JobCreate, JobEvent, JobStatus, LabelItem, ListResponse
from app.services import idempotency
from app.services import jobs as service
from sidyp_core.artifacts import LABELS_FILE, artifact_dir, read_json
from sidyp_core.jobs import JobRecord

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=idempotency.KEY_PATTERN,
        description="retrying with the same key and body returns the first answer and starts no second job",
    ),
]


@router.post(
    "",
    status_code=202,
    response_model=Job,
    summary="Start a calibration job",
    responses=problems(404, 409, 422, 429, 503),
    openapi_extra={"requestBody": {"content": {"application/json": {"examples": JOB_CREATE_EXAMPLES}}}},
)
def create_job(
    body: JobCreate,
    request: Request,
    settings: SettingsDep,
    store: StoreDep,
    tenant: TenantDep,
    idempotency_key: IdempotencyKey = None,
):
    def run() -> idempotency.Answer:
        job = service.create_job(settings, store, tenant, body, request.app.state.enqueue)
        return 202, service.to_public(job).model_dump(mode="json"), {"Location": f"/v1/jobs/{job.id}"}

    request_print = idempotency.json_fingerprint(body.model_dump(mode="json"))
    return idempotency.respond(store, tenant, "jobs", idempotency_key, request_print, run)


@router.get("", response_model=ListResponse[Job], summary="List jobs, newest first", responses=problems(422))
def list_jobs(
    settings: SettingsDep,
    store: StoreDep,
    tenant: TenantDep,
    limit: Annotated[int | None, Query(ge=1, description="page size")] = None,
    after: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[JobStatus | None, Query(description="only jobs in this status")] = None,
    dataset_id: Annotated[str | None, Query(max_length=64, description="only jobs trained on it")] = None,
) -> ListResponse[Job]:
    jobs, more = service.list_jobs(
        store,
        tenant,
        page_limit(limit, settings.max_page_size),
        check_cursor(after, "job"),
        status,
        dataset_id,
    )
    return ListResponse[Job](data=[service.to_public(j) for j in jobs], has_more=more)


@router.get("/{job_id}", response_model=Job, responses=problems(404))
async def get_job(job: JobDep) -> Job:
    return service.to_public(job)


@router.delete(
    "/{job_id}",
    status_code=204,
    response_class=Response,
    summary="Delete a finished job with its outputs and model (409 while queued or running: cancel first)",
    responses=problems(404, 409),
)
def delete_job(job: JobDep, settings: SettingsDep, store: StoreDep) -> Response:
    service.delete_job(settings, store, job)
    return Response(status_code=204)


@router.get(
    "/{job_id}/events",
    response_model=ListResponse[JobEvent],
    summary="Ordered progress and metric events (a server-sent-events stream with Accept: text/event-stream)",
    responses={200: {"content": {SSE_MEDIA_TYPE: {}}}, **problems(404, 422)},
)
def job_events(
    job: JobDep,
    request: Request,
    settings: SettingsDep,
    store: StoreDep,
    limit: Annotated[int | None, Query(ge=1, description="page size")] = None,
    after: Annotated[int, Query(ge=-1, le=2**31 - 1, description="seq of the last event already seen")] = -1,
):
    if SSE_MEDIA_TYPE in request.headers.get("accept", ""):
        return event_stream_response(store, job.id, request, after)
    events, more = store.list_events(job.id, after, page_limit(limit, settings.max_page_size, default=100))
    return ListResponse[JobEvent](data=[JobEvent(**e) for e in events], has_more=more)


@router.get(
    "/{job_id}/events/stream",
    summary="The job's events as server-sent events; the stream ends once the job has ended",
    response_class=StreamingResponse,
    responses={200: {"content": {SSE_MEDIA_TYPE: {}}}, **problems(404, 422)},
)
def job_event_stream(
    job: JobDep,
    request: Request,
    store: StoreDep,
    after: Annotated[int, Query(ge=-1, le=2**31 - 1, description="seq of the last event already seen")] = -1,
):
    return event_stream_response(store, job.id, request, after)


@router.post(
    "/{job_id}/cancel",
    response_model=Job,
    summary="Cancel a job (queued: at once; running: within seconds)",
    responses=problems(404, 409),
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
    responses={200: {"content": {"text/csv": {}}}, **problems(404, 409, 410, 422)},
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
