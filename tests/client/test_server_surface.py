"""The server side of what the client sends: Idempotency-Key on creates, job filters and DELETE, against a
real `sidyp serve` (embedded mode)."""

from __future__ import annotations

import pytest

from sidyp_client.errors import ConflictError, NotFoundError
from tests.service.conftest import tiny_params

pytestmark = pytest.mark.slow


def test_a_retried_create_with_the_same_key_makes_one_dataset_and_one_job(client, toy_csv, tiny_backbone):
    first = client.datasets.create(toy_csv["path"], name="idem", idempotency_key="ds-retry-1")
    again = client.datasets.create(toy_csv["path"], name="idem", idempotency_key="ds-retry-1")
    assert again.id == first.id
    assert [d.id for d in client.datasets.list() if d.name == "idem"] == [first.id]
    params = tiny_params(tiny_backbone, epochs=40, batch_size=2)
    job = client.jobs.create(first.id, params, idempotency_key="job-retry-1")
    assert client.jobs.create(first.id, params, idempotency_key="job-retry-1").id == job.id
    assert [j.id for j in client.jobs.list(dataset_id=first.id)] == [job.id]
    with pytest.raises(ConflictError):
        client.jobs.delete(job.id)  # queued or running: cancel first
    client.jobs.cancel(job.id)
    ended = client.jobs.wait(job.id, timeout=120, progress=False)
    assert ended.status == "cancelled"
    assert job.id in [j.id for j in client.jobs.list(status="cancelled")]
    client.jobs.delete(job.id)
    with pytest.raises(NotFoundError):
        client.jobs.get(job.id)


def test_list_by_status_finds_the_finished_job(client, finished_job):
    assert finished_job.id in [j.id for j in client.jobs.list(status="succeeded")]
    assert finished_job.id not in [j.id for j in client.jobs.list(status="failed")]
