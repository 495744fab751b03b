"""How a job id reaches a worker: the SQLite queue (embedded) or a Celery task (Redis mode), and how the
reaper can tell whether a queued job is still waiting somewhere.

The Celery configuration lives here because both sides need it: the API sends tasks by name (it never
imports the task code) and the worker runs them (worker.celery_app adds its task module).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence

from celery import Celery

from sidyp_core.config import Settings
from sidyp_core.store import JobStore

TASK_NAME = "sidyp.run_job"
QUEUE = "sidyp-jobs"


def make_celery(settings: Settings, include: Sequence[str] = ()) -> Celery:
    if not settings.redis_url:
        raise RuntimeError("the Celery mode needs SIDYP_REDIS_URL")
    app = Celery("sidyp", broker=settings.redis_url, include=list(include))
    app.conf.update(
        # A task is acknowledged only after it returns, and re-queued when its worker process dies.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # One job at a time per worker process: a job is minutes of CPU/GPU, never prefetch more.
        worker_prefetch_multiplier=1,
        # Redis re-delivers an unacknowledged task after this; it must exceed the longest allowed job,
        # or a healthy long job would be handed to a second worker (the job lock would drop it anyway).
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_seconds},
        task_ignore_result=True,
        result_backend=None,
        task_default_queue=QUEUE,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
    )
    return app


def make_enqueuer(settings: Settings, store: JobStore) -> Callable[[str], None]:
    if settings.embedded:
        return store.enqueue
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

    client = redis.Redis.from_url(settings.redis_url)

    def in_broker(job_id: str) -> bool:
        needle = job_id.encode()
        # Queued messages, then kombu's hash of delivered but unacknowledged ones (a running task's).
        if any(needle in raw for raw in client.lrange(QUEUE, 0, -1)):
            return True
        return any(needle in raw for raw in client.hvals("unacked"))

    return in_broker
