"""One contract, two stores: every JobStore behaviour the service relies on, on real Redis and on SQLite."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from sidyp_core.store.base import JobStore
from sidyp_core.store.redis_store import RedisJobStore
from sidyp_core.store.sqlite_store import SqliteJobStore


@pytest.fixture(params=["redis", "sqlite"])
def store(request, tmp_path) -> JobStore:
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        s: JobStore = RedisJobStore(url, prefix=f"contract-{uuid.uuid4().hex}:")
    else:
        s = SqliteJobStore(tmp_path / "store.sqlite3")
    yield s
    s.close()


def _job(i: int, tenant: str = "t1", status: str = "queued") -> dict:
    return {"id": f"job_{i:022d}", "tenant": tenant, "status": status, "created_at": "2026-01-01T00:00:00Z"}


def test_records_are_tenant_scoped_and_listed_newest_first_with_paging(store):
    for i in range(5):
        store.put("dataset", {"id": f"ds_{i}", "tenant": "a", "created_at": "x", "n": i})
    store.put("dataset", {"id": "ds_other", "tenant": "b", "created_at": "x"})
    assert store.get("dataset", "ds_3", "a")["n"] == 3
    assert store.get("dataset", "ds_3", "b") is None
    assert store.get("dataset", "ds_3", None)["n"] == 3
    assert store.get("model", "ds_3", "a") is None

    page, more = store.list("dataset", "a", limit=2)
    assert [d["id"] for d in page] == ["ds_4", "ds_3"] and more
    page, more = store.list("dataset", "a", limit=2, after="ds_3")
    assert [d["id"] for d in page] == ["ds_2", "ds_1"] and more
    page, more = store.list("dataset", "a", limit=2, after="ds_1")
    assert [d["id"] for d in page] == ["ds_0"] and not more
    # Another tenant's id as a cursor reveals nothing.
    assert store.list("dataset", "b", limit=10, after="ds_3") == ([], False)

    assert not store.delete("dataset", "ds_2", "b")
    assert store.delete("dataset", "ds_2", "a")
    assert store.get("dataset", "ds_2", "a") is None
    assert [d["id"] for d in store.list("dataset", "a", limit=10)[0]] == ["ds_4", "ds_3", "ds_1", "ds_0"]


def test_duplicate_id_is_refused(store):
    store.put("model", {"id": "mdl_1", "tenant": "a", "created_at": "x"})
    with pytest.raises(Exception):  # noqa: B017 - each backend raises its own integrity error
        store.put("model", {"id": "mdl_1", "tenant": "a", "created_at": "x"})


def _set_if(store, job_id: str, changes: dict, expect: set[str] | None = None):
    def apply(doc):
        if expect is not None and doc.get("status") not in expect:
            return None
        return {**doc, **changes}

    return store.mutate_job(job_id, apply)


def _bump(store, job_id: str) -> int:
    doc = store.mutate_job(job_id, lambda d: {**d, "deliveries": int(d.get("deliveries") or 0) + 1})
    return doc["deliveries"] if doc else 0


def test_job_transitions_are_conditional_and_counted_by_status(store):
    store.put("job", _job(1))
    store.put("job", _job(2))
    assert store.count_jobs_by_status() == {"queued": 2}
    assert _set_if(store, _job(1)["id"], {"status": "running"}, {"queued"})["status"] == "running"
    # A second claimer loses: the job is no longer queued.
    assert _set_if(store, _job(1)["id"], {"status": "running"}, {"queued"}) is None
    assert store.count_jobs_by_status() == {"queued": 1, "running": 1}
    assert [j["id"] for j in store.jobs_with_status("running")] == [_job(1)["id"]]
    assert _set_if(store, "job_missing", {"status": "failed"}) is None
    assert _bump(store, _job(1)["id"]) == 1
    assert _bump(store, _job(1)["id"]) == 2
    assert store.get("job", _job(1)["id"], "t1")["deliveries"] == 2
    assert store.delete("job", _job(2)["id"], "t1")
    assert store.count_jobs_by_status() == {"running": 1}


def test_concurrent_mutations_lose_no_update(store):
    store.put("job", _job(7))
    job_id = _job(7)["id"]

    def bump_many():
        for _ in range(25):
            _bump(store, job_id)

    threads = [threading.Thread(target=bump_many) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get("job", job_id, None)["deliveries"] == 100


def test_events_are_ordered_and_paged(store):
    for i in range(5):
        assert store.add_event("job_x", {"type": "progress", "i": i}) == i
    page, more = store.list_events("job_x", after=-1, limit=3)
    assert [e["i"] for e in page] == [0, 1, 2] and [e["seq"] for e in page] == [0, 1, 2] and more
    page, more = store.list_events("job_x", after=2, limit=3)
    assert [e["i"] for e in page] == [3, 4] and not more
    assert store.list_events("job_y") == ([], False)


def test_cancel_flags(store):
    assert not store.cancel_requested("job_a")
    store.request_cancel("job_a")
    assert store.cancel_requested("job_a")
    assert not store.cancel_requested("job_b")


def test_queue_is_fifo_without_duplicates_and_each_id_is_claimed_once(store):
    for name in ["a", "b", "c"]:
        store.enqueue(name)
    store.enqueue("a")
    assert store.queue_length() == 3
    assert store.queue_contains("b") and not store.queue_contains("z")
    assert store.dequeue("b") and not store.dequeue("b")
    claimed: list[str | None] = []
    threads = [threading.Thread(target=lambda: claimed.append(store.claim_next())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(x for x in claimed if x) == ["a", "c"] and claimed.count(None) == 2
    assert store.queue_length() == 0 and not store.queue_contains("a")
    store.enqueue("a")  # re-queueing after a claim works
    assert store.claim_next() == "a"


def test_locks_exclude_others_until_released_or_expired(store):
    assert store.acquire_lock("job:1", "w1", 0.5)
    assert not store.acquire_lock("job:1", "w2", 0.5)
    assert store.lock_owner("job:1") == "w1"
    assert store.renew_lock("job:1", "w1", 0.5)
    assert not store.renew_lock("job:1", "w2", 0.5)
    store.release_lock("job:1", "w2")  # not the owner: no effect
    assert store.lock_owner("job:1") == "w1"
    store.release_lock("job:1", "w1")
    assert store.lock_owner("job:1") is None
    assert store.acquire_lock("job:1", "w2", 0.3)
    time.sleep(0.45)
    assert store.lock_owner("job:1") is None
    assert not store.renew_lock("job:1", "w2", 0.3)
    assert store.acquire_lock("job:1", "w3", 5)


def test_worker_liveness(store):
    store.worker_beat("w1", {"kind": "celery"})
    store.worker_beat("w2")
    assert sorted(w["id"] for w in store.live_workers(5)) == ["w1", "w2"]
    assert store.live_workers(5)[0].get("kind") in ("celery", None)
    store.worker_gone("w2")
    assert [w["id"] for w in store.live_workers(5)] == ["w1"]
    time.sleep(0.3)
    assert store.live_workers(0.2) == []
    assert store.ping()


def test_idempotency_claims_are_exclusive_scoped_and_expire(store):
    assert store.claim_idempotency("t1:jobs", "k", {"state": "pending"}, 5) is None
    assert store.claim_idempotency("t1:jobs", "k", {"state": "other"}, 5) == {"state": "pending"}
    assert store.claim_idempotency("t2:jobs", "k", {"state": "t2"}, 5) is None  # another tenant's key
    store.complete_idempotency("t1:jobs", "k", {"state": "done", "status": 202}, 5)
    assert store.claim_idempotency("t1:jobs", "k", {}, 5) == {"state": "done", "status": 202}
    store.release_idempotency("t1:jobs", "k")
    assert store.claim_idempotency("t1:jobs", "k", {"state": "again"}, 0.2) is None
    time.sleep(0.3)
    assert store.claim_idempotency("t1:jobs", "k", {"state": "after expiry"}, 5) is None


def test_concurrent_idempotency_claims_let_exactly_one_through(store):
    winners = []

    def claim(i: int) -> None:
        if store.claim_idempotency("t1:datasets", "same", {"by": i}, 5) is None:
            winners.append(i)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1


def test_list_where_filters_across_pages(store):
    for i in range(7):
        store.put("job", {**_job(i), "status": "failed" if i % 2 else "queued", "dataset_id": f"d{i % 3}"})
    page, more = store.list_where("job", "t1", 2, None, {"status": "failed"})
    assert [d["id"][-1] for d in page] == ["5", "3"] and more
    page, more = store.list_where("job", "t1", 2, page[-1]["id"], {"status": "failed"})
    assert [d["id"][-1] for d in page] == ["1"] and not more
    page, _ = store.list_where("job", "t1", 10, None, {"status": "queued", "dataset_id": "d0"})
    assert [d["id"][-1] for d in page] == ["6", "0"]
