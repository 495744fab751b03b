"""A Celery worker SIGKILLed mid-job: the reaper notices the silent job, re-queues it, a fresh worker
finishes it from the stage-1 checkpoint, and the events say what happened."""

from __future__ import annotations

import os
import signal
import time

import pytest
import redis

from tests.service.conftest import (
    Service,
    service_env,
    start_api,
    start_worker,
    tiny_params,
    upload_toy,
    wait_ready,
)

pytestmark = pytest.mark.slow  # starts servers or trains through the service: not in `make test-fast`


def test_killed_worker_job_is_requeued_and_resumes_from_checkpoint(tmp_path, tiny_backbone, redis_url):
    url = redis_url.rsplit("/", 1)[0] + "/5"
    redis.Redis.from_url(url).flushdb()
    env = service_env(tmp_path / "data", tiny_backbone, SIDYP_REDIS_URL=url)
    worker = start_worker(env, tmp_path, "worker-1")
    api, base = start_api(env, tmp_path)
    service = Service(base, tmp_path / "data", [api, worker])
    second = None
    try:
        wait_ready(service)
        with service.client() as c:
            ds = upload_toy(c, tmp_path, n_per_class=20, gold=False)
            job = c.post(
                "/v1/jobs",
                json={"dataset_id": ds["id"], "params": tiny_params(tiny_backbone, diffusion_epochs=30)},
            ).json()
            deadline = time.time() + 120
            while time.time() < deadline:
                cur = c.get(f"/v1/jobs/{job['id']}").json()
                if cur["progress"]["stage"] in ("prior", "refiner"):  # stage 1 is done and checkpointed
                    break
                assert cur["status"] in ("queued", "running"), cur
                time.sleep(0.1)
            else:
                raise AssertionError(f"job never reached stage 2: {cur}\n{service.logs()}")
            os.killpg(worker.popen.pid, signal.SIGKILL)
            worker.popen.wait(5)
            second = start_worker(env, tmp_path, "worker-2")
            service.procs.append(second)
            deadline = time.time() + 180
            while time.time() < deadline:
                cur = c.get(f"/v1/jobs/{job['id']}").json()
                if cur["status"] in ("succeeded", "failed", "cancelled"):
                    break
                time.sleep(0.3)
            assert cur["status"] == "succeeded", (cur, service.logs())
            assert cur["deliveries"] == 2
            events = c.get(f"/v1/jobs/{job['id']}/events", params={"limit": 1000}).json()["data"]
            reaper = [e for e in events if e["type"] == "reaper"]
            assert len(reaper) == 1 and "re-queued" in reaper[0]["message"]
            assert any("delivery 2" in e["message"] for e in events)
            # The classifier stage was not redone: its checkpoint was reused on the second delivery.
            assert cur["metrics"].get("classifier.reused") == 1.0
    finally:
        api.stop()
        worker.stop()
        if second is not None:
            second.stop()
