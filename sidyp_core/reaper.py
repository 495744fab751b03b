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
from sidyp_core.store import JobStore, job_lock_name, utc_now_iso

log = logging.getLogger("sidyp.reaper")


def reap(
    store: JobStore, settings: Settings, enqueue: Callable[[str], None], now: float | None = None
) -> list[tuple[str, str]]:
    """One pass; returns (job_id, action) for every job it changed."""
    now = time.time() if now is None else now
    actions: list[tuple[str, str]] = []
    for job in store.jobs_with_status("running"):
        job_id = job["id"]
        beat = float(job.get("heartbeat_at") or 0.0)
        silent = now - beat
        if silent < settings.stale_after_seconds or store.lock_owner(job_lock_name(job_id)) is not None:
            continue
        deliveries = int(job.get("deliveries") or 0)
        if job.get("cancel_requested") or store.cancel_requested(job_id):
            action, changes = "cancelled", {"status": "cancelled", "finished_at": utc_now_iso()}
            message = f"worker lost (no heartbeat for {silent:.0f}s) while a cancel was pending: cancelled"
        elif deliveries >= settings.max_deliveries:
            action = "failed"
            message = (
                f"worker lost (no heartbeat for {silent:.0f}s) on delivery {deliveries} of "
                f"{settings.max_deliveries}: failed"
            )
            changes = {
                "status": "failed",
                "finished_at": utc_now_iso(),
                "error": {
                    "code": "worker_lost",
                    "message": f"the job's worker died {deliveries} times; giving up "
                    f"(limit SIDYP_MAX_DELIVERIES={settings.max_deliveries})",
                },
            }
        else:
            action = "requeued"
            message = (
                f"worker lost (no heartbeat for {silent:.0f}s) on delivery {deliveries} of "
                f"{settings.max_deliveries}: re-queued"
            )
            changes = {"status": "queued", "run_token": None, "queued_at": now}

        def apply(
            doc: dict, beat: float = beat, changes: dict = changes, message: str = message
        ) -> dict | None:
            # Only if nothing moved since we looked: a worker that revived and beat again keeps its job.
            if doc.get("status") != "running" or float(doc.get("heartbeat_at") or 0.0) != beat:
                return None
            doc.update(changes)
            doc["progress"] = {**doc.get("progress", {}), "message": message}
            return doc

        if store.mutate_job(job_id, apply) is None:
            continue
        store.add_event(job_id, {"type": "reaper", "at": utc_now_iso(), "stage": action, "message": message})
        log.warning("job %s: %s", job_id, message)
        if action == "requeued":
            try:
                enqueue(job_id)
            except Exception:
                log.exception("job %s: re-queue failed; the next reaper pass retries", job_id)
                store.update_job(job_id, {"status": "running", "heartbeat_at": 0.0}, expect_status={"queued"})
                continue
        actions.append((job_id, action))
    return actions


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
    out = []
    for job in store.jobs_with_status("queued"):
        if now - float(job.get("queued_at") or now) < settings.stale_after_seconds:
            continue
        if store.lock_owner(job_lock_name(job["id"])) is not None or is_enqueued(job["id"]):
            continue
        enqueue(job["id"])
        store.update_job(job["id"], {"queued_at": now}, expect_status={"queued"})
        store.add_event(
            job["id"],
            {
                "type": "reaper",
                "at": utc_now_iso(),
                "stage": "queued",
                "message": "found in no queue: queued again",
            },
        )
        out.append(job["id"])
    return out
