"""The worker's reliability hooks on both stores: the reaper, the delivery limit, the job lock, requeue of
orphans. These run the real runner and reaper against real stores; the paths tested here end before the
engine would be called, so no training happens."""

from __future__ import annotations

import time
import uuid

import pytest

from sidyp_core.config import Settings
from sidyp_core.reaper import reap, requeue_orphans
from sidyp_core.store import job_lock_name
from sidyp_core.store.redis_store import RedisJobStore
from sidyp_core.store.sqlite_store import SqliteJobStore
from worker.runner import JobRunner


@pytest.fixture(params=["redis", "sqlite"])
def store(request, tmp_path):
    if request.param == "redis":
        s = RedisJobStore(request.getfixturevalue("redis_url"), prefix=f"hooks-{uuid.uuid4().hex}:")
    else:
        s = SqliteJobStore(tmp_path / "s.sqlite3")
    yield s
    s.close()


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(data_dir=tmp_path, stale_after_seconds=5, heartbeat_interval_seconds=1, max_deliveries=3)


def _running_job(store, job_id="job_" + "r" * 22, deliveries=1, heartbeat_at=None, **extra) -> str:
    store.put(
        "job",
        {
            "id": job_id,
            "tenant": "t1",
            "status": "running",
            "created_at": "x",
            "deliveries": deliveries,
            "heartbeat_at": time.time() - 60 if heartbeat_at is None else heartbeat_at,
            "progress": {"stage": "classifier", "fraction": 0.5, "message": ""},
            **extra,
        },
    )
    return job_id


def test_reaper_requeues_a_silent_job_without_a_live_lock_and_says_so(store, settings):
    job_id = _running_job(store)
    sent: list[str] = []
    assert reap(store, settings, sent.append) == [(job_id, "requeued")]
    job = store.get("job", job_id, None)
    assert job["status"] == "queued" and sent == [job_id]
    event = store.list_events(job_id)[0][-1]
    assert (
        event["type"] == "reaper" and "re-queued" in event["message"] and "no heartbeat" in event["message"]
    )
    assert reap(store, settings, sent.append) == []  # nothing left to do


def test_reaper_leaves_fresh_or_locked_jobs_alone(store, settings):
    fresh = _running_job(store, "job_" + "f" * 22, heartbeat_at=time.time())
    locked = _running_job(store, "job_" + "l" * 22)
    assert store.acquire_lock(job_lock_name(locked), "live-worker", 10)
    assert reap(store, settings, lambda _id: None) == []
    assert store.get("job", fresh, None)["status"] == "running"
    assert store.get("job", locked, None)["status"] == "running"


def test_reaper_fails_a_job_whose_worker_died_max_deliveries_times(store, settings):
    job_id = _running_job(store, deliveries=3)
    sent: list[str] = []
    assert reap(store, settings, sent.append) == [(job_id, "failed")]
    job = store.get("job", job_id, None)
    assert job["status"] == "failed" and job["error"]["code"] == "worker_lost" and sent == []
    assert "failed" in store.list_events(job_id)[0][-1]["message"]


def test_reaper_finishes_a_pending_cancel_of_a_lost_job(store, settings):
    job_id = _running_job(store)
    store.request_cancel(job_id)
    assert reap(store, settings, lambda _id: None) == [(job_id, "cancelled")]
    assert store.get("job", job_id, None)["status"] == "cancelled"


def test_a_fourth_delivery_fails_with_worker_lost(store, settings):
    job_id = _running_job(store, deliveries=3, heartbeat_at=0.0)
    outcome = JobRunner(settings, store, "w-test").run(job_id)
    job = store.get("job", job_id, None)
    assert outcome == "failed" and job["status"] == "failed" and job["error"]["code"] == "worker_lost"
    assert job["deliveries"] == 4 and "died 3 times" in job["error"]["message"]
    assert store.lock_owner(job_lock_name(job_id)) is None  # released


def test_a_redelivered_task_never_runs_beside_the_live_one(store, settings):
    job_id = _running_job(store, heartbeat_at=time.time())
    assert store.acquire_lock(job_lock_name(job_id), "the-live-worker", 10)
    assert JobRunner(settings, store, "w-dup").run(job_id) == "locked"
    job = store.get("job", job_id, None)
    assert job["status"] == "running" and job["deliveries"] == 1  # untouched


def test_finished_and_cancelled_jobs_are_dropped_on_delivery(store, settings):
    done = _running_job(store, "job_" + "d" * 22)
    store.mutate_job(done, lambda d: {**d, "status": "succeeded"})
    assert JobRunner(settings, store, "w").run(done) == "already-succeeded"
    store.put("job", {"id": "job_" + "c" * 22, "tenant": "t1", "status": "queued", "created_at": "x"})
    store.request_cancel("job_" + "c" * 22)
    assert JobRunner(settings, store, "w").run("job_" + "c" * 22) == "cancelled"
    assert store.get("job", "job_" + "c" * 22, None)["status"] == "cancelled"


def test_orphaned_queued_jobs_go_back_to_the_queue(store, settings):
    old = "job_" + "o" * 22
    new = "job_" + "n" * 22
    store.put(
        "job",
        {"id": old, "tenant": "t1", "status": "queued", "created_at": "x", "queued_at": time.time() - 60},
    )
    store.put(
        "job", {"id": new, "tenant": "t1", "status": "queued", "created_at": "x", "queued_at": time.time()}
    )
    assert requeue_orphans(store, settings, store.enqueue, store.queue_contains) == [old]
    assert store.queue_contains(old) and not store.queue_contains(new)
    assert requeue_orphans(store, settings, store.enqueue, store.queue_contains) == []  # already queued
    assert store.list_events(old)[0][-1]["type"] == "reaper"


def test_a_lost_celery_message_is_sent_again(redis_url, tmp_path):
    """Celery mode: the probe looks for the job's message in the broker; without one the job is re-sent."""
    import redis

    from sidyp_core.dispatch import make_enqueuer, make_queue_probe

    url = redis_url.rsplit("/", 1)[0] + "/7"
    redis.Redis.from_url(url).flushdb()
    settings = Settings(data_dir=tmp_path, redis_url=url, stale_after_seconds=5, heartbeat_interval_seconds=1)
    store = RedisJobStore(url)
    send, probe = make_enqueuer(settings, store), make_queue_probe(settings, store)
    job_id = "job_" + "m" * 22
    store.put(
        "job",
        {"id": job_id, "tenant": "t1", "status": "queued", "created_at": "x", "queued_at": time.time() - 60},
    )
    assert not probe(job_id)
    assert requeue_orphans(store, settings, send, probe) == [job_id]
    assert probe(job_id)
    assert requeue_orphans(store, settings, send, probe) == []  # its message is there now
