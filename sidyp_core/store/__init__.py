"""Job stores: one interface (`JobStore`), a Redis and a SQLite implementation, chosen by the settings."""

from __future__ import annotations

from sidyp_core.config import Settings
from sidyp_core.store.base import TERMINAL_STATUSES, JobStore, job_lock_name, utc_now_iso

__all__ = ["JobStore", "TERMINAL_STATUSES", "job_lock_name", "make_store", "sqlite_path", "utc_now_iso"]


def sqlite_path(settings: Settings):
    return settings.data_dir / "sidyp.sqlite3"


def make_store(settings: Settings) -> JobStore:
    """Redis when SIDYP_REDIS_URL is set (Celery mode), else the SQLite file under the data dir."""
    if settings.redis_url:
        from sidyp_core.store.redis_store import RedisJobStore

        return RedisJobStore(settings.redis_url)
    from sidyp_core.store.sqlite_store import SqliteJobStore

    return SqliteJobStore(sqlite_path(settings))
