"""Calibration jobs: create, read, list, events, cancel (their outputs: routes/labels.py, routes/reports.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from app.api.deps import JobDep, SettingsDep, StoreDep, TenantDep
from app.api.routes.common import check_cursor, page_limit
from app.schemas import Job, JobCreate, JobEvent, ListResponse
from app.services import jobs as service
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
