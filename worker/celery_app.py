"""The Celery application a worker runs: core's configuration plus this package's task.

`celery -A worker.celery_app worker` works (compose's health check uses it), but `sidyp worker` is the
supported way to start one.
"""

from __future__ import annotations

from celery import Celery

from sidyp_core.config import get_settings
from sidyp_core.dispatch import make_celery

_app: Celery | None = None


def get_celery() -> Celery:
    global _app
    if _app is None:
        _app = make_celery(get_settings(), include=["worker.tasks"])
    return _app


def __getattr__(name: str):
    # `celery -A worker.celery_app` looks for `app`/`celery`; build it lazily from the environment.
    if name in ("app", "celery"):
        return get_celery()
    raise AttributeError(name)
