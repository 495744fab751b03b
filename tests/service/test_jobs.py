"""The job record and its one owner of status transitions (sidyp_core.jobs), on the SQLite store."""

from __future__ import annotations

import pytest

from sidyp_core.jobs import InvalidTransition, JobError, JobLedger, JobRecord, new_job_record
from sidyp_core.store.sqlite_store import SqliteJobStore

# A record as the service stored it before the typed record existed: every key the API and runner wrote.
LEGACY_RECORD = {
    "id": "job_" + "L" * 22,
    "object": "job",
    "tenant": "t1",
    "status": "running",
    "dataset_id": "ds_" + "d" * 22,
    "validation_dataset_id": None,
    "eval_dataset_id": None,
    "params": {"seed": 1},
    "created_at": "2026-01-01T00:00:00.000Z",
    "started_at": "2026-01-01T00:00:01.000Z",
    "finished_at": None,
    "progress": {"stage": "classifier", "fraction": 0.5, "message": "epoch 1"},
    "metrics": {"classifier.loss": 0.7},
    "error": None,
    "model_id": None,
    "reserved_model_id": "mdl_" + "m" * 22,
    "deliveries": 1,
    "cancel_requested": False,
    "queued_at": 1.0,
    "run_token": "w1:abc",
    "worker_id": "w1",
    "heartbeat_at": 2.0,
}


@pytest.fixture
def ledger(tmp_path):
    store = SqliteJobStore(tmp_path / "s.sqlite3")
    yield JobLedger(store)
    store.close()


def _statuses(ledger: JobLedger, job_id: str) -> list[str]:
    events, _ = ledger.store.list_events(job_id)
    return [e["stage"] for e in events if e["type"] == "status"]


def test_a_stored_record_round_trips_with_the_same_keys_and_values():
    record = JobRecord.model_validate(LEGACY_RECORD)
    assert record.model_dump(mode="json") == LEGACY_RECORD
    extra = JobRecord.model_validate({**LEGACY_RECORD, "review_count": 3})
    assert extra.model_dump(mode="json")["review_count"] == 3  # keys added elsewhere survive a rewrite


def test_the_lifecycle_refuses_edges_it_does_not_have():
    done = JobRecord.model_validate({**LEGACY_RECORD, "status": "succeeded"})
    for target in ("running", "queued", "failed", "cancelled"):
        with pytest.raises(InvalidTransition):
            done.moved(target)
    with pytest.raises(InvalidTransition):
        JobRecord.model_validate({**LEGACY_RECORD, "status": "queued"}).moved("succeeded")


def test_start_finish_only_once_and_only_by_the_owning_delivery(ledger):
    job = new_job_record("t1", "ds_" + "d" * 22, None, None, {})
    ledger.create(job)
    assert ledger.get(job.id, "t2") is None  # another tenant never sees it
    started = ledger.start(job.id, owner="w1:a", worker_id="w1", deliveries=1)
    assert started.status == "running" and started.run_token == "w1:a" and started.started_at
    assert ledger.update_running(job.id, "w2:b", heartbeat_at=9.0) is None  # not the owner
    assert ledger.finish(job.id, "succeeded", "done", owner="w2:b") is None
    done = ledger.finish(job.id, "succeeded", "done", owner="w1:a", model_id=job.reserved_model_id)
    assert done.status == "succeeded" and done.model_id == job.reserved_model_id
    assert done.progress.fraction == 1.0 and done.finished_at
    assert ledger.finish(job.id, "failed", "late", error=JobError(code="x", message="y")) is None
    assert ledger.get(job.id).status == "succeeded"
    assert _statuses(ledger, job.id) == ["queued", "running", "succeeded"]


def test_cancel_ends_a_queued_job_at_once_and_flags_a_running_one(ledger):
    queued = new_job_record("t1", "ds_" + "d" * 22, None, None, {})
    ledger.create(queued)
    ledger.store.enqueue(queued.id)
    cancelled = ledger.cancel(queued)
    assert cancelled.status == "cancelled" and cancelled.cancel_requested
    assert not ledger.store.queue_contains(queued.id)

    running = new_job_record("t1", "ds_" + "d" * 22, None, None, {})
    ledger.create(running)
    ledger.start(running.id, "w1:a", "w1", 1)
    flagged = ledger.cancel(ledger.get(running.id))
    assert flagged.status == "running" and flagged.cancel_requested
    assert ledger.store.cancel_requested(running.id)


def test_a_shutdown_requeue_gives_the_delivery_back(ledger):
    job = new_job_record("t1", "ds_" + "d" * 22, None, None, {})
    ledger.create(job)
    assert ledger.count_delivery(job.id) == 1
    ledger.start(job.id, "w1:a", "w1", 1)
    assert not ledger.requeue_after_shutdown(job.id, "w2:b")
    assert ledger.requeue_after_shutdown(job.id, "w1:a")
    back = ledger.get(job.id)
    assert back.status == "queued" and back.run_token is None and back.deliveries == 0


def test_an_enqueue_failure_keeps_the_broker_error_out_of_the_record(ledger):
    job = new_job_record("t1", "ds_" + "d" * 22, None, None, {})
    ledger.create(job)
    ledger.fail_enqueue(job.id)
    failed = ledger.get(job.id)
    assert failed.status == "failed" and failed.error.code == "enqueue_failed"
    assert "redis" not in failed.error.message.lower()
