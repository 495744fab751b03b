"""The one job-store interface: resource records, job state, events, cancel flags, queue, locks, workers.

Records are plain JSON-able dicts with at least `id`, `tenant` and `created_at`; job records are read and
changed through `sidyp_core.jobs.JobLedger`, which owns their status transitions. Two implementations:
`RedisJobStore` (Celery mode, shared by API and workers) and `SqliteJobStore` (embedded mode, one file
under the data dir shared by the API process and its worker process). Both pass
tests/service/test_store_contract.py.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

RESOURCE_KINDS = ("dataset", "job", "model")
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})

Record = dict[str, Any]
Mutation = Callable[[Record], Record | None]


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JobStore(ABC):
    # ---------------- resource records (datasets, jobs, models) ----------------
    @abstractmethod
    def put(self, kind: str, record: Record) -> None:
        """Insert a new record; its position in lists is after every record inserted before it."""

    @abstractmethod
    def get(self, kind: str, resource_id: str, tenant: str | None) -> Record | None:
        """The record, or None when missing or owned by another tenant (tenant None = any, for workers)."""

    @abstractmethod
    def list(self, kind: str, tenant: str, limit: int, after: str | None = None) -> tuple[list[Record], bool]:
        """Newest first; `after` is the id of the last record of the previous page. Returns (page, has_more)."""

    @abstractmethod
    def delete(self, kind: str, resource_id: str, tenant: str) -> bool:
        """Remove the record (and, for jobs, its events, flag and queue entry). False when not found."""

    # ---------------- job state ----------------
    @abstractmethod
    def mutate_job(self, job_id: str, fn: Mutation) -> Record | None:
        """Atomically read the job, apply `fn` to a copy and write the result.

        `fn` returns the new record, or None to leave it unchanged (then None is returned). Concurrent
        mutations from any process are serialised; `fn` may run more than once, so it must be pure.
        """

    @abstractmethod
    def jobs_with_status(self, status: str) -> list[Record]:
        """Every job in that status, over all tenants (for the reaper and the queue limit)."""

    @abstractmethod
    def count_jobs_by_status(self) -> dict[str, int]: ...

    # ---------------- events ----------------
    @abstractmethod
    def add_event(self, job_id: str, event: Record) -> int:
        """Append an event; returns its sequence number (0, 1, 2, ... per job)."""

    @abstractmethod
    def list_events(self, job_id: str, after: int = -1, limit: int = 100) -> tuple[list[Record], bool]:
        """Events with seq > after, in order, each with its `seq`. Returns (page, has_more)."""

    # ---------------- cancel flags ----------------
    @abstractmethod
    def request_cancel(self, job_id: str) -> None: ...

    @abstractmethod
    def cancel_requested(self, job_id: str) -> bool: ...

    # ---------------- queue (embedded worker) ----------------
    @abstractmethod
    def enqueue(self, job_id: str) -> None:
        """Append to the FIFO of jobs waiting for an embedded worker (a job is in it at most once)."""

    @abstractmethod
    def claim_next(self) -> str | None:
        """Pop the oldest queued job id, or None. Two claimers never get the same id."""

    @abstractmethod
    def dequeue(self, job_id: str) -> bool:
        """Remove a job from the queue; False when it was not in it."""

    @abstractmethod
    def queue_length(self) -> int: ...

    @abstractmethod
    def queue_contains(self, job_id: str) -> bool: ...

    # ---------------- locks ----------------
    @abstractmethod
    def acquire_lock(self, name: str, owner: str, ttl_seconds: float) -> bool:
        """Take the lock if free or expired."""

    @abstractmethod
    def renew_lock(self, name: str, owner: str, ttl_seconds: float) -> bool:
        """Extend the lock if `owner` still holds it."""

    @abstractmethod
    def release_lock(self, name: str, owner: str) -> None:
        """Release only if `owner` holds it."""

    @abstractmethod
    def lock_owner(self, name: str) -> str | None: ...

    # ---------------- workers ----------------
    @abstractmethod
    def worker_beat(self, worker_id: str, info: Record | None = None) -> None: ...

    @abstractmethod
    def worker_gone(self, worker_id: str) -> None: ...

    @abstractmethod
    def live_workers(self, max_age_seconds: float) -> list[Record]: ...

    # ---------------- label reviews ----------------
    @abstractmethod
    def put_reviews(self, tenant: str, job_id: str, reviews: list[Record]) -> None:
        """Store review decisions ({index, action, label, reviewed_at, key_id}), one per row `index`: a row
        reviewed again replaces its earlier decision."""

    @abstractmethod
    def list_reviews(self, tenant: str, job_id: str, rows: Sequence[int] | None = None) -> list[Record]:
        """The tenant's decisions for the job (only those of `rows` when given), ordered by row index; none
        for another tenant's job."""

    @abstractmethod
    def reviewed_rows(self, tenant: str, job_id: str) -> set[int]:
        """The indices of the rows with a decision: cheaper than `list_reviews` when only they are needed."""

    # ---------------- lifecycle ----------------
    @abstractmethod
    def ping(self) -> bool: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    @staticmethod
    def now() -> float:
        return time.time()


def job_lock_name(job_id: str) -> str:
    return f"job:{job_id}"
