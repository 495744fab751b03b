"""How a job id reaches a worker: the SQLite queue (embedded) or a Celery task (Redis mode), and how the
reaper can tell whether a queued job is still waiting somewhere."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from app.core.config import Settings
from app.store import JobStore


def make_enqueuer(settings: Settings, store: JobStore) -> Callable[[str], None]:
    if settings.embedded:
        return store.enqueue
    from worker.celery_app import TASK_NAME, make_celery

    celery = make_celery(settings)

    def send(job_id: str) -> None:
        # The task id carries the job id, so the broker can be searched for a job's pending message.
        celery.send_task(TASK_NAME, args=[job_id], task_id=f"{job_id}.{uuid.uuid4().hex[:8]}")

    return send


def make_queue_probe(settings: Settings, store: JobStore) -> Callable[[str], bool]:
    """`probe(job_id)`: is a message for this job waiting in (or taken from but not acknowledged by) the queue?"""
    if settings.embedded:
        return store.queue_contains
    import redis

    from worker.celery_app import QUEUE

    client = redis.Redis.from_url(settings.redis_url)

    def in_broker(job_id: str) -> bool:
        needle = job_id.encode()
        # Queued messages, then kombu's hash of delivered but unacknowledged ones (a running task's).
        if any(needle in raw for raw in client.lrange(QUEUE, 0, -1)):
            return True
        return any(needle in raw for raw in client.hvals("unacked"))

    return in_broker
