"""Per-tenant limits, so one tenant cannot fill the queue or the disk for everyone: queued + running jobs
(SIDYP_TENANT_MAX_ACTIVE_JOBS) and stored bytes (SIDYP_TENANT_MAX_BYTES), both answered 429 + Retry-After."""

from __future__ import annotations

from app.errors import ProblemError
from sidyp_core.artifacts import tenant_bytes
from sidyp_core.config import Settings
from sidyp_core.store import JobStore

ACTIVE_RETRY_AFTER_SECONDS = 30
# Stored bytes only go down when the tenant deletes something; the header still tells a client's retry
# loop to back off rather than hammer.
BYTES_RETRY_AFTER_SECONDS = 300


def active_jobs(store: JobStore, tenant: str) -> int:
    return sum(
        1
        for status in ("queued", "running")
        for doc in store.jobs_with_status(status)
        if doc["tenant"] == tenant
    )


def check_active_jobs(store: JobStore, settings: Settings, tenant: str) -> None:
    active = active_jobs(store, tenant)
    if active >= settings.tenant_max_active_jobs:
        raise ProblemError(
            429,
            f"You have {active} queued or running jobs, the most one tenant may have "
            f"({settings.tenant_max_active_jobs}); wait for one to end or cancel one.",
            slug="tenant-job-limit",
            headers={"Retry-After": str(ACTIVE_RETRY_AFTER_SECONDS)},
        )


def check_stored_bytes(settings: Settings, tenant: str, adding: int = 0) -> None:
    used = tenant_bytes(settings.data_dir, tenant)
    if used + adding > settings.tenant_max_bytes:
        raise ProblemError(
            429,
            f"Your stored files take {used} bytes{f' and this upload adds {adding}' if adding else ''}; "
            f"the limit per tenant is {settings.tenant_max_bytes}. Delete datasets, jobs or models first.",
            slug="tenant-storage-limit",
            headers={"Retry-After": str(BYTES_RETRY_AFTER_SECONDS)},
        )
