"""Creating and cancelling calibration jobs; the job's public shape."""

from __future__ import annotations

import logging
from collections.abc import Callable

from app.errors import ProblemError
from app.schemas import Job, JobCreate, JobParams
from app.services import fairness, models
from app.services.trainable import check_fits_memory, check_trainable
from sidyp_core.artifacts import artifact_dir, job_work_dir, remove_artifact
from sidyp_core.backbones import resolve_backbone_name
from sidyp_core.config import Settings
from sidyp_core.ids import is_valid_id
from sidyp_core.jobs import JobLedger, JobRecord, new_job_record
from sidyp_core.store import JobStore

log = logging.getLogger("sidyp.api")
PUBLIC_FIELDS = set(Job.model_fields)


def to_public(job: JobRecord) -> Job:
    return Job(**job.model_dump(mode="json", include=PUBLIC_FIELDS))


def _owned_dataset(store: JobStore, tenant: str, dataset_id: str | None, field: str) -> dict | None:
    if dataset_id is None:
        return None
    record = store.get("dataset", dataset_id, tenant) if is_valid_id(dataset_id, "dataset") else None
    if record is None:
        raise ProblemError(404, f"{field}: no such dataset.", slug="dataset-not-found")
    return record


def _check_label_subset(extra: dict | None, classes: set[str], field: str) -> None:
    if extra is not None and not set(extra["labels"]) <= classes:
        raise ProblemError(
            422,
            f"{field}: its labels are not a subset of the dataset's labels",
            slug="label-mismatch",
            errors=[{"field": f"body.{field}", "message": "labels outside the dataset's classes"}],
        )


def _check_backbone(params: JobParams, settings: Settings):
    try:
        return resolve_backbone_name(params.backbone, settings)
    except ValueError as exc:
        raise ProblemError(
            422,
            str(exc),
            slug="backbone-not-allowed",
            errors=[{"field": "body.params.backbone", "message": str(exc)}],
        ) from None


def _check_queue_room(store: JobStore, settings: Settings) -> None:
    queued = store.count_jobs_by_status().get("queued", 0)
    if queued >= settings.max_queued_jobs:
        raise ProblemError(
            429,
            f"{queued} jobs are already waiting; try again later.",
            slug="queue-full",
            headers={"Retry-After": "30"},
        )


def create_job(
    settings: Settings, store: JobStore, tenant: str, body: JobCreate, enqueue: Callable[[str], None]
) -> JobRecord:
    """Validate the request against the tenant's datasets and the server's limits, record, then enqueue."""
    dataset = _owned_dataset(store, tenant, body.dataset_id, "dataset_id")
    validation = _owned_dataset(store, tenant, body.validation_dataset_id, "validation_dataset_id")
    evaluation = _owned_dataset(store, tenant, body.eval_dataset_id, "eval_dataset_id")
    classes = set(dataset["labels"])
    _check_label_subset(validation, classes, "validation_dataset_id")
    _check_label_subset(evaluation, classes, "eval_dataset_id")
    check_trainable(dataset)
    params = body.params or JobParams()
    backbone_dir = _check_backbone(params, settings)
    check_fits_memory(settings, params, backbone_dir, dataset, validation, evaluation)
    _check_queue_room(store, settings)
    fairness.check_active_jobs(store, settings, tenant)
    fairness.check_stored_bytes(settings, tenant)
    job = new_job_record(
        tenant,
        dataset["id"],
        validation["id"] if validation else None,
        evaluation["id"] if evaluation else None,
        params.model_dump(mode="json"),
    )
    ledger = JobLedger(store)
    ledger.create(job)
    try:
        enqueue(job.id)
    except Exception as exc:
        log.exception("job %s: enqueue failed", job.id)
        ledger.fail_enqueue(job.id)
        raise ProblemError(
            503, "The job could not be queued; try again later.", slug="queue-unavailable"
        ) from exc
    return job


def list_jobs(
    store: JobStore, tenant: str, limit: int, after: str | None, status: str | None, dataset_id: str | None
) -> tuple[list[JobRecord], bool]:
    where = {k: v for k, v in (("status", status), ("dataset_id", dataset_id)) if v is not None}
    docs, more = store.list_where("job", tenant, limit, after, where)
    return [JobRecord.model_validate(d) for d in docs], more


def delete_job(settings: Settings, store: JobStore, job: JobRecord) -> None:
    """Remove a finished job: its model, outputs and checkpoints first, then the record (a failure half-way
    leaves a record whose outputs answer 410, never files nobody can reach)."""
    if not job.finished:
        raise ProblemError(
            409, f"The job is {job.status}; cancel it first, then delete it.", slug="job-not-finished"
        )
    for model_id in {job.model_id, job.reserved_model_id} - {None}:
        models.delete_model(settings, store, job.tenant, model_id)
        remove_artifact(artifact_dir(settings.data_dir, job.tenant, "models", model_id))
    remove_artifact(artifact_dir(settings.data_dir, job.tenant, "jobs", job.id))
    remove_artifact(job_work_dir(settings.data_dir, job.tenant, job.id))
    store.delete("job", job.id, job.tenant)


def cancel_job(store: JobStore, job: JobRecord) -> JobRecord:
    if job.finished:
        raise ProblemError(409, f"The job already ended ({job.status}).", slug="job-finished")
    return JobLedger(store).cancel(job)
