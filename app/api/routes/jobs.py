"""Calibration jobs: create, read, list, events, cancel (their outputs: routes/labels.py, routes/reports.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse

from app.api.deps import JobDep, SettingsDep, StoreDep, TenantDep
from app.api.routes.common import check_cursor, page_limit
from app.api.routes.event_stream import SSE_MEDIA_TYPE, event_stream_response
from app.errors import problems
from app.schemas import JOB_CREATE_EXAMPLES, Job, JobCreate, JobEvent, JobStatus, ListResponse
from app.services import idempotency
from app.services import jobs as service

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
