"""Celery application for the Redis mode. Job state lives in our own Redis keys, not a result backend.

`celery -A worker.celery_app worker` works, but `sidyp worker` is the supported way to start one.
"""

from __future__ import annotations

from celery import Celery

from app.core.config import Settings, get_settings

TASK_NAME = "sidyp.run_job"
QUEUE = "sidyp-jobs"


def make_celery(settings: Settings) -> Celery:
    if not settings.redis_url:
        raise RuntimeError("the Celery mode needs SIDYP_REDIS_URL")
    app = Celery("sidyp", broker=settings.redis_url, include=["worker.tasks"])
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


_app: Celery | None = None


def get_celery() -> Celery:
    global _app
    if _app is None:
        _app = make_celery(get_settings())
    return _app


def __getattr__(name: str):
    # `celery -A worker.celery_app` looks for `app`/`celery`; build it lazily from the environment.
    if name in ("app", "celery"):
        return get_celery()
    raise AttributeError(name)
