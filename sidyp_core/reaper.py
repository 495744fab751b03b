"""The reaper: no job stays `running` forever, and none stays `queued` without a way to be picked up.

A running job whose heartbeat is older than SIDYP_STALE_AFTER_SECONDS and whose lock nobody holds has
lost its worker. It is re-queued (its stage checkpoints make the next delivery cheap), or failed with
`worker_lost` once it has been delivered SIDYP_MAX_DELIVERIES times, or marked cancelled if a cancel
was pending. Every decision is written as a job event saying which and why.

A queued job that is in no queue (its embedded claimer died between claim and start, or its Celery
message was lost) is queued again. Run periodically by the API process and by every worker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sidyp_core.config import Settings
from sidyp_core.jobs import JobError, JobLedger, JobRecord
from sidyp_core.store import JobStore, job_lock_name, utc_now_iso

log = logging.getLogger("sidyp.reaper")


def reap(
    store: JobStore, settings: Settings, enqueue: Callable[[str], None], now: float | None = None
) -> list[tuple[str, str]]:
    """One pass; returns (job_id, action) for every job it changed."""
    now = time.time() if now is None else now
    ledger = JobLedger(store)
    actions: list[tuple[str, str]] = []
    for job in ledger.with_status("running"):
        silent = now - (job.heartbeat_at or 0.0)
        if silent < settings.stale_after_seconds or store.lock_owner(job_lock_name(job.id)) is not None:
            continue
        action = _reap_one(ledger, settings, job, silent, now)
        if action is None:
            continue
        if action == "requeued":
            try:
                enqueue(job.id)
            except Exception:
                log.exception("job %s: re-queue failed; the next reaper pass retries", job.id)
                ledger.requeue_failed_to_send(job.id)
                continue
        actions.append((job.id, action))
    return actions


def _reap_one(ledger: JobLedger, settings: Settings, job: JobRecord, silent: float, now: float) -> str | None:
    """Cancel, fail or re-queue one running job whose worker is gone; None when it moved meanwhile."""
    lost = f"worker lost (no heartbeat for {silent:.0f}s)"
    of_limit = f"on delivery {job.deliveries} of {settings.max_deliveries}"
    if job.cancel_requested or ledger.store.cancel_requested(job.id):
        message = f"{lost} while a cancel was pending: cancelled"
        done = ledger.reap(job, "cancelled", message, finished_at=utc_now_iso())
        action = "cancelled"
    elif job.deliveries >= settings.max_deliveries:
        message = f"{lost} {of_limit}: failed"
        error = JobError(
            code="worker_lost",
            message=f"the job's worker died {job.deliveries} times; giving up "
            f"(limit SIDYP_MAX_DELIVERIES={settings.max_deliveries})",
        )
        done = ledger.reap(job, "failed", message, finished_at=utc_now_iso(), error=error)
        action = "failed"
    else:
        message = f"{lost} {of_limit}: re-queued"
        done = ledger.reap(job, "queued", message, run_token=None, queued_at=now)
        action = "requeued"
    if not done:
        return None
    log.warning("job %s: %s", job.id, message)
    return action


def requeue_orphans(
    store: JobStore,
    settings: Settings,
    enqueue: Callable[[str], None],
    is_enqueued: Callable[[str], bool],
    now: float | None = None,
) -> list[str]:
    """A queued job that waits in no queue goes back: in the embedded mode its claimer died before
    starting it; in the Celery mode its message was lost (a Redis restart between the job record and the
    message reaching disk). Only jobs queued longer than the stale limit are considered, so a job between
    its creation and its enqueue is never touched; a duplicate message is harmless anyway (the lock and
    status checks drop it).
    """
    now = time.time() if now is None else now
    ledger = JobLedger(store)
    out = []
    for job in ledger.with_status("queued"):
        if now - (job.queued_at or now) < settings.stale_after_seconds:
            continue
        if store.lock_owner(job_lock_name(job.id)) is not None or is_enqueued(job.id):
            continue
        enqueue(job.id)
        ledger.mark_requeued_orphan(job.id, now)
        out.append(job.id)
    return out
