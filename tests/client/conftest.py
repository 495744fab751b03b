"""A real `sidyp serve` per mode for the client tests, started once per session.

The processes are started with the service tests' own helpers (tests/service/conftest.py), so the client
meets exactly what those tests meet. Session scope (theirs is per module) keeps the client tests inside
their time budget; the Celery mode uses Redis database 5, apart from the service tests' database 3.
"""

from __future__ import annotations

import pytest

from sidyp_client import Client
from tests.conftest import toy_dataset, write_csv
from tests.service.conftest import (
    KEY_1,
    Service,
    service_env,
    start_api,
    start_worker,
    tiny_params,
    wait_ready,
)


@pytest.fixture(scope="session")
def client_embedded_service(tmp_path_factory, tiny_backbone):
    root = tmp_path_factory.mktemp("client-embedded")
    env = service_env(root / "data", tiny_backbone)
    api, base = start_api(env, root)
    service = Service(base, root / "data", [api])
    try:
        wait_ready(service)
        yield service
    finally:
        api.stop()


@pytest.fixture(scope="session")
def client_celery_service(tmp_path_factory, tiny_backbone, redis_url):
    import redis

    root = tmp_path_factory.mktemp("client-celery")
    url = redis_url.rsplit("/", 1)[0] + "/12"  # its own db: its Celery worker outlives a test
    redis.Redis.from_url(url).flushdb()
    env = service_env(root / "data", tiny_backbone, SIDYP_REDIS_URL=url)
    worker = start_worker(env, root)
    api, base = start_api(env, root)
    service = Service(base, root / "data", [api, worker])
    try:
        wait_ready(service)
        yield service
    finally:
        api.stop()
        worker.stop()


@pytest.fixture(scope="session", params=["embedded", "celery"])
def any_service(request) -> Service:
    return request.getfixturevalue(f"client_{request.param}_service")


@pytest.fixture
def client(client_embedded_service):
    with Client(client_embedded_service.base_url, KEY_1, timeout=30) as c:
        yield c


@pytest.fixture(scope="session")
def toy_csv(tmp_path_factory):
    texts, noisy, gold, classes = toy_dataset(n_per_class=20)
    path = write_csv(tmp_path_factory.mktemp("client-data") / "toy.csv", texts, noisy, gold)
    return {"path": path, "texts": texts, "noisy": noisy, "classes": classes}


@pytest.fixture(scope="session")
def finished_job(client_embedded_service, tiny_backbone, toy_csv):
    """One succeeded job on the embedded service, shared by the read-side tests."""
    with Client(client_embedded_service.base_url, KEY_1) as c:
        dataset = c.datasets.create(toy_csv["path"], name="toy")
        job = c.jobs.wait(
            c.jobs.create(dataset.id, tiny_params(tiny_backbone)).id, timeout=180, progress=False
        )
    assert job.status == "succeeded", (job, client_embedded_service.logs())
    return job
