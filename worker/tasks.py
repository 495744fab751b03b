"""The Celery task: a thin shell around worker.runner.JobRunner, plus the worker's heartbeat thread."""

from __future__ import annotations

import logging
import threading

from celery import signals

from sidyp_core.background import BackgroundDuties, make_worker_id
from sidyp_core.config import get_settings
from sidyp_core.dispatch import TASK_NAME, make_enqueuer
from sidyp_core.store import make_store
from worker.celery_app import get_celery
from worker.runner import JobRunner

log = logging.getLogger("sidyp.worker")
celery_app = get_celery()

_state: dict = {}
# Set when the worker is told to stop (SIGTERM: Celery's warm shutdown). The running job then stops at its
# next batch and is sent to the queue again, to resume from its stage checkpoints on the next worker,
# instead of holding this one until it finishes.
_shutting_down = threading.Event()


def _runtime() -> tuple[JobRunner, BackgroundDuties | None]:
    if "runner" not in _state:
        settings = get_settings()
        store = make_store(settings)
        worker_id = make_worker_id("celery")
        _state["store"] = store
        _state["worker_id"] = worker_id
        _state["runner"] = JobRunner(
            settings, store, worker_id, shutdown=_shutting_down, requeue=make_enqueuer(settings, store)
        )
    return _state["runner"], _state.get("background")


@signals.worker_ready.connect
def _start_background(**_kwargs) -> None:
    runner, _ = _runtime()
    settings = runner.settings
    background = BackgroundDuties(
        settings,
        runner.store,
        runner.worker_id,
        make_enqueuer(settings, runner.store),
        info={"kind": "celery"},
    )
    background.start()
    _state["background"] = background
    log.info("sidyp worker %s ready", runner.worker_id)


@signals.worker_shutting_down.connect
def _stop_running_job(**_kwargs) -> None:
    log.info("shutting down: a running job is re-queued at its next batch")
    _shutting_down.set()


@signals.worker_shutdown.connect
def _stop_background(**_kwargs) -> None:
    background = _state.get("background")
    if background is not None:
        background.stop()


@celery_app.task(name=TASK_NAME, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run_job(job_id: str) -> str:
    runner, _ = _runtime()
    outcome = runner.run(job_id)
    log.info("job %s: %s", job_id, outcome)
    return outcome
