"""Calibration jobs: create, read, list, events, cancel, and their report (labels: routes/labels.py)."""

from __future__ import annotations

import functools
import os
import time
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from app.api.deps import SettingsDep, StoreDep, TenantDep
from app.api.routes.common import check_cursor, check_id, page_limit
from app.core.artifacts import REPORT_FILE, artifact_dir, read_json
from app.core.backbones import resolve_allowed_backbone
from app.core.ids import is_valid_id, new_id
from app.errors import ProblemError, not_found
from app.schemas import Job, JobCreate, JobEvent, JobParams, ListResponse, Report
from app.store import TERMINAL_STATUSES, utc_now_iso

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

PUBLIC_FIELDS = set(Job.model_fields)


def to_public(record: dict) -> Job:
    return Job(**{k: v for k, v in record.items() if k in PUBLIC_FIELDS})


def _owned_dataset(store, tenant: str, dataset_id: str | None, field: str) -> dict | None:
    if dataset_id is None:
        return None
    record = store.get("dataset", dataset_id, tenant) if is_valid_id(dataset_id, "dataset") else None
    if record is None:
        raise ProblemError(404, f"{field}: no such dataset.", slug="dataset-not-found")
    return record


def _get_job(store, tenant: str, job_id: str) -> dict:
    record = store.get("job", check_id(job_id, "job"), tenant)
    if record is None:
        raise not_found("job")
    return record


@router.post("", status_code=202, response_model=Job, summary="Start a calibration job")
def create_job(
    body: JobCreate,
    request: Request,
    response: Response,
    settings: SettingsDep,
    store: StoreDep,
    tenant: TenantDep,
) -> Job:
    dataset = _owned_dataset(store, tenant, body.dataset_id, "dataset_id")
    validation = _owned_dataset(store, tenant, body.validation_dataset_id, "validation_dataset_id")
    evaluation = _owned_dataset(store, tenant, body.eval_dataset_id, "eval_dataset_id")
    classes = set(dataset["labels"])
    if validation is not None and not set(validation["labels"]) <= classes:
        raise ProblemError(
            422,
            "validation_dataset_id: its labels are not a subset of the dataset's labels",
            slug="label-mismatch",
            errors=[
                {"field": "body.validation_dataset_id", "message": "labels outside the dataset's classes"}
            ],
        )
    if evaluation is not None and not set(evaluation["labels"]) <= classes:
        raise ProblemError(
            422,
            "eval_dataset_id: its labels are not a subset of the dataset's labels",
            slug="label-mismatch",
            errors=[{"field": "body.eval_dataset_id", "message": "labels outside the dataset's classes"}],
        )
    params = body.params or JobParams()
    try:
        resolve_allowed_backbone(params.backbone, settings)
    except ValueError as exc:
        raise ProblemError(
            422,
            str(exc),
            slug="backbone-not-allowed",
            errors=[{"field": "body.params.backbone", "message": str(exc)}],
        ) from None
    queued = store.count_jobs_by_status().get("queued", 0)
    if queued >= settings.max_queued_jobs:
        raise ProblemError(
            429,
            f"{queued} jobs are already waiting; try again later.",
            slug="queue-full",
            headers={"Retry-After": "30"},
        )
    job_id = new_id("job")
    record = {
        "id": job_id,
        "object": "job",
        "tenant": tenant,
        "status": "queued",
        "dataset_id": dataset["id"],
        "validation_dataset_id": validation["id"] if validation else None,
        "eval_dataset_id": evaluation["id"] if evaluation else None,
        "params": params.model_dump(mode="json"),
        "created_at": utc_now_iso(),
        "started_at": None,
        "finished_at": None,
        "progress": {"stage": "queued", "fraction": 0.0, "message": "waiting for a worker"},
        "metrics": {},
        "error": None,
        "model_id": None,
        # Reserved now so that a re-delivered job writes the same model folder, never an orphan.
        "reserved_model_id": new_id("model"),
        "deliveries": 0,
        "cancel_requested": False,
        "queued_at": time.time(),
    }
    store.put("job", record)
    store.add_event(
        job_id, {"type": "status", "at": record["created_at"], "stage": "queued", "message": "job queued"}
    )
    try:
        request.app.state.enqueue(job_id)
    except Exception as exc:
        store.update_job(
            job_id,
            {
                "status": "failed",
                "finished_at": utc_now_iso(),
                "error": {"code": "enqueue_failed", "message": str(exc)[:300]},
            },
        )
        raise ProblemError(
            503, "The job could not be queued; try again later.", slug="queue-unavailable"
        ) from exc
    response.headers["Location"] = f"/v1/jobs/{job_id}"
    return to_public(record)


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
    return ListResponse[Job](data=[to_public(d) for d in docs], has_more=more)


@router.get("/{job_id}", response_model=Job)
def get_job(job_id: str, store: StoreDep, tenant: TenantDep) -> Job:
    return to_public(_get_job(store, tenant, job_id))


@router.get(
    "/{job_id}/events", response_model=ListResponse[JobEvent], summary="Ordered progress and metric events"
)
def job_events(
    job_id: str,
    settings: SettingsDep,
    store: StoreDep,
    tenant: TenantDep,
    limit: Annotated[int | None, Query(ge=1, description="page size")] = None,
    after: Annotated[int, Query(ge=-1, le=2**31 - 1, description="seq of the last event already seen")] = -1,
) -> ListResponse[JobEvent]:
    _get_job(store, tenant, job_id)
    events, more = store.list_events(job_id, after, page_limit(limit, settings.max_page_size, default=100))
    return ListResponse[JobEvent](data=[JobEvent(**e) for e in events], has_more=more)


@router.post(
    "/{job_id}/cancel", response_model=Job, summary="Cancel a job (queued: at once; running: within seconds)"
)
def cancel_job(job_id: str, store: StoreDep, tenant: TenantDep) -> Job:
    record = _get_job(store, tenant, job_id)
    if record["status"] in TERMINAL_STATUSES:
        raise ProblemError(409, f"The job already ended ({record['status']}).", slug="job-finished")
    now = utc_now_iso()
    cancelled = store.update_job(
        job_id,
        {
            "status": "cancelled",
            "finished_at": now,
            "cancel_requested": True,
            "progress": {**record["progress"], "message": "cancelled before it started"},
        },
        expect_status={"queued"},
    )
    if cancelled is not None:
        store.request_cancel(job_id)
        store.dequeue(job_id)
        store.add_event(
            job_id, {"type": "status", "at": now, "stage": "cancelled", "message": "cancelled while queued"}
        )
        return to_public(cancelled)
    # Running (or it started between our read and write): the worker stops at its next batch boundary.
    store.request_cancel(job_id)
    updated = store.update_job(job_id, {"cancel_requested": True}, expect_status={"running"})
    if updated is None:
        updated = store.get("job", job_id, tenant)
    else:
        store.add_event(
            job_id, {"type": "status", "at": now, "stage": "cancelling", "message": "cancel requested"}
        )
    return to_public(updated)


def _require_succeeded(record: dict) -> None:
    if record["status"] != "succeeded":
        raise ProblemError(
            409,
            f"The job is {record['status']}; its outputs exist once it has succeeded.",
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


@router.get(
    "/{job_id}/report",
    response_model=Report,
    summary="Noise estimate, flags per class, timings, eval metrics",
)
def job_report(job_id: str, settings: SettingsDep, store: StoreDep, tenant: TenantDep) -> Report:
    record = _get_job(store, tenant, job_id)
    _require_succeeded(record)
    return Report(**_job_output(settings, tenant, job_id, REPORT_FILE))
