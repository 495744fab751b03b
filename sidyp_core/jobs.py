"""The job record and the one owner of its status transitions.

    queued ──start──▶ running ──finish──▶ succeeded | failed | cancelled
      │  ▲              │
      │  └──requeue─────┘   (worker lost, worker shut down)
      └──cancel / fail─────▶ cancelled | failed

Every status change goes through `JobLedger`, which applies it atomically in the store (`mutate_job`) and
writes the event that explains it. The stored JSON is `JobRecord.model_dump(mode="json")`: the same keys the
service always wrote, so records written before this module existed still load.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sidyp_core.ids import new_id
from sidyp_core.store import TERMINAL_STATUSES, JobStore, utc_now_iso

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL = TERMINAL_STATUSES
ALLOWED: dict[str, frozenset[str]] = {
    "queued": frozenset({"running", "cancelled", "failed"}),
    # running -> running: a re-delivery takes over a job whose worker was lost.
    "running": frozenset({"running", "queued", "succeeded", "failed", "cancelled"}),
}


class InvalidTransition(RuntimeError):
    """A bug, never a user error: code asked for a status change the lifecycle does not have."""


class JobProgress(BaseModel):
    stage: str = "queued"
    fraction: float = 0.0
    message: str = ""


class JobError(BaseModel):
    code: str
    message: str
    error_id: str | None = None  # for server-side failures: the key to the log entry with the detail


class JobRecord(BaseModel):
    # Keys another part of the service adds are kept, not dropped, when a record is rewritten.
    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["job"] = "job"
    tenant: str
    status: JobStatus = "queued"
    dataset_id: str | None = None
    validation_dataset_id: str | None = None
    eval_dataset_id: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    created_at: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    progress: JobProgress = Field(default_factory=JobProgress)
    metrics: dict[str, Any] = Field(default_factory=dict)
    error: JobError | None = None
    model_id: str | None = None
    # Reserved at creation so that a re-delivered job writes the same model folder, never an orphan.
    reserved_model_id: str | None = None
    deliveries: int = 0
    cancel_requested: bool = False
    queued_at: float | None = None  # epoch seconds; the reaper's clock
    run_token: str | None = None  # which delivery owns a running job
    worker_id: str | None = None
    heartbeat_at: float | None = None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    def moved(self, status: JobStatus, **changes: Any) -> JobRecord:
        """A copy in `status` with `changes`; raises InvalidTransition for an edge the lifecycle lacks."""
        if status not in ALLOWED.get(self.status, frozenset()):
            raise InvalidTransition(f"job {self.id}: {self.status} -> {status}")
        return self.model_copy(update={"status": status, **changes})

    def with_message(self, message: str, **progress: Any) -> JobProgress:
        return self.progress.model_copy(update={"message": message, **progress})


def new_job_record(
    tenant: str,
    dataset_id: str,
    validation_dataset_id: str | None,
    eval_dataset_id: str | None,
    params: dict[str, Any],
) -> JobRecord:
    return JobRecord(
        id=new_id("job"),
        tenant=tenant,
        dataset_id=dataset_id,
        validation_dataset_id=validation_dataset_id,
        eval_dataset_id=eval_dataset_id,
        params=params,
        created_at=utc_now_iso(),
        progress=JobProgress(stage="queued", fraction=0.0, message="waiting for a worker"),
        reserved_model_id=new_id("model"),
        queued_at=time.time(),
    )


Change = Callable[[JobRecord], JobRecord | None]


class JobLedger:
    """Reads jobs as `JobRecord`s and is the only code that changes their status (see the module docstring)."""

    def __init__(self, store: JobStore):
        self.store = store

    # ---------------- reading and raw writes ----------------
    def get(self, job_id: str, tenant: str | None = None) -> JobRecord | None:
        doc = self.store.get("job", job_id, tenant)
        return None if doc is None else JobRecord.model_validate(doc)

    def with_status(self, status: JobStatus) -> list[JobRecord]:
        return [JobRecord.model_validate(d) for d in self.store.jobs_with_status(status)]

    def change(self, job_id: str, fn: Change) -> JobRecord | None:
        """Apply `fn` atomically; `fn` returns the new record or None to leave the job as it is."""

        def apply(doc: dict) -> dict | None:
            new = fn(JobRecord.model_validate(doc))
            return None if new is None else new.model_dump(mode="json")

        doc = self.store.mutate_job(job_id, apply)
        return None if doc is None else JobRecord.model_validate(doc)

    def event(self, job_id: str, type_: str, **fields: Any) -> None:
        self.store.add_event(job_id, {"type": type_, "at": utc_now_iso(), **fields})

    # ---------------- the API's transitions ----------------
    def create(self, job: JobRecord) -> None:
        self.store.put("job", job.model_dump(mode="json"))
        self.store.add_event(
            job.id, {"type": "status", "at": job.created_at, "stage": "queued", "message": "job queued"}
        )

    def fail_enqueue(self, job_id: str) -> None:
        # The broker's exception text names hosts and ports: it goes to the log, never into the record.
        error = JobError(code="enqueue_failed", message="the job queue did not accept the job")
        self.change(
            job_id,
            lambda j: (
                j.moved("failed", finished_at=utc_now_iso(), error=error) if j.status == "queued" else None
            ),
        )

    def cancel(self, job: JobRecord) -> JobRecord:
        """A queued job is cancelled at once; a running one gets the flag its worker polls between batches."""
        now = utc_now_iso()
        cancelled = self.change(
            job.id,
            lambda j: (
                j.moved(
                    "cancelled",
                    finished_at=now,
                    cancel_requested=True,
                    progress=j.with_message("cancelled before it started"),
                )
                if j.status == "queued"
                else None
            ),
        )
        self.store.request_cancel(job.id)
        if cancelled is not None:
            self.store.dequeue(job.id)
            self.event(job.id, "status", stage="cancelled", message="cancelled while queued")
            return cancelled
        flagged = self.change(
            job.id,
            lambda j: j.model_copy(update={"cancel_requested": True}) if j.status == "running" else None,
        )
        if flagged is None:  # it ended between our read and write
            return self.get(job.id) or job
        self.event(job.id, "status", stage="cancelling", message="cancel requested")
        return flagged

    # ---------------- a worker's transitions ----------------
    def count_delivery(self, job_id: str) -> int:
        job = self.change(job_id, lambda j: j.model_copy(update={"deliveries": j.deliveries + 1}))
        return job.deliveries if job else 0

    def start(self, job_id: str, owner: str, worker_id: str, deliveries: int) -> JobRecord | None:
        def run(j: JobRecord) -> JobRecord | None:
            if j.status not in ("queued", "running"):
                return None
            return j.moved(
                "running",
                run_token=owner,
                worker_id=worker_id,
                heartbeat_at=time.time(),
                started_at=j.started_at or utc_now_iso(),
                progress=JobProgress(stage="starting", fraction=0.0, message=f"delivery {deliveries}"),
            )

        started = self.change(job_id, run)
        if started is not None:
            msg = (
                "started"
                if deliveries == 1
                else f"resumed on delivery {deliveries} (stage checkpoints are reused)"
            )
            self.event(job_id, "status", stage="running", message=f"{msg} on worker {worker_id}")
        return started

    def update_running(self, job_id: str, owner: str, **changes: Any) -> JobRecord | None:
        """Heartbeat and progress writes, only while `owner`'s delivery still holds the job (None: it lost it)."""
        return self.change(
            job_id,
            lambda j: (
                j.model_copy(update=changes) if j.status == "running" and j.run_token == owner else None
            ),
        )

    def finish(
        self,
        job_id: str,
        status: Literal["succeeded", "failed", "cancelled"],
        message: str,
        error: JobError | None = None,
        owner: str | None = None,
        **extra: Any,
    ) -> JobRecord | None:
        """End the job (only if it has not ended, and, with `owner`, only if that delivery still owns it)."""

        def end(j: JobRecord) -> JobRecord | None:
            if j.finished or (owner is not None and j.run_token != owner):
                return None
            fraction = 1.0 if status == "succeeded" else j.progress.fraction
            progress = JobProgress(stage=status, fraction=fraction, message=message)
            return j.moved(status, finished_at=utc_now_iso(), error=error, progress=progress, **extra)

        done = self.change(job_id, end)
        if done is not None:
            detail = f": {error.message}" if error else ""
            self.event(job_id, "status", stage=status, message=message + detail)
        return done

    def requeue_after_shutdown(self, job_id: str, owner: str) -> bool:
        def back(j: JobRecord) -> JobRecord | None:
            if j.status != "running" or j.run_token != owner:
                return None
            # A clean shutdown is not a worker death: this delivery does not count against the limit.
            return j.moved(
                "queued",
                run_token=None,
                queued_at=time.time(),
                deliveries=max(j.deliveries - 1, 0),
                progress=j.with_message("worker shut down; re-queued"),
            )

        if self.change(job_id, back) is None:
            return False
        self.event(job_id, "status", stage="queued", message="worker shut down mid-run: re-queued")
        return True

    # ---------------- the reaper's transitions ----------------
    def reap(self, job: JobRecord, status: JobStatus, message: str, **changes: Any) -> bool:
        """Move a running job whose worker was lost; only if nothing moved since the reaper looked (a worker
        that revived and beat again keeps its job)."""

        def apply(j: JobRecord) -> JobRecord | None:
            if j.status != "running" or (j.heartbeat_at or 0.0) != (job.heartbeat_at or 0.0):
                return None
            return j.moved(status, progress=j.with_message(message), **changes)

        if self.change(job.id, apply) is None:
            return False
        self.event(job.id, "reaper", stage=status if status != "queued" else "requeued", message=message)
        return True

    def requeue_failed_to_send(self, job_id: str) -> None:
        """The reaper re-queued a job but could not send it: mark it stale-running so the next pass retries."""
        self.change(
            job_id,
            lambda j: j.moved("running", heartbeat_at=0.0) if j.status == "queued" else None,
        )

    def mark_requeued_orphan(self, job_id: str, now: float) -> None:
        self.change(
            job_id, lambda j: j.model_copy(update={"queued_at": now}) if j.status == "queued" else None
        )
        self.event(job_id, "reaper", stage="queued", message="found in no queue: queued again")
