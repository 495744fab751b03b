"""How a job id reaches a worker: the SQLite queue (embedded) or a Celery task (Redis mode)."""

from __future__ import annotations

from collections.abc import Callable

from app.core.config import Settings
from app.store import JobStore


def make_enqueuer(settings: Settings, store: JobStore) -> Callable[[str], None]:
    if settings.embedded:
        return store.enqueue
    from worker.celery_app import TASK_NAME, make_celery

    celery = make_celery(settings)

    def send(job_id: str) -> None:
        celery.send_task(TASK_NAME, args=[job_id])

    return send
