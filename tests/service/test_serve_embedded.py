"""`sidyp serve` in its embedded default: creates and prints an API key once when none is configured,
keeps everything across a restart, and brings its worker process back if it dies."""

from __future__ import annotations

import os
import signal
import stat
import time

import httpx
import pytest

from sidyp_core.store.sqlite_store import SqliteJobStore
from tests.service.conftest import service_env, start_api

pytestmark = pytest.mark.slow  # starts servers or trains through the service: not in `make test-fast`


def _key_from_output(log: str) -> str:
    lines = log.splitlines()
    for i, line in enumerate(lines):
        if "created an API key" in line:
            return lines[i + 1].strip()
    raise AssertionError(f"no key printed:\n{log}")


def _live_worker_ids(data_dir) -> list[str]:
    store = SqliteJobStore(data_dir / "sidyp.sqlite3")
    try:
        return [w["id"] for w in store.live_workers(3)]
    finally:
        store.close()


def test_generated_key_restart_and_worker_respawn(tmp_path, tiny_backbone):
    data = tmp_path / "data"
    env = service_env(data, tiny_backbone)
    env.pop("SIDYP_API_KEYS")
    api, base = start_api(env, tmp_path, "api-1")
    try:
        time.sleep(0.5)
        key = _key_from_output(api.log())
        key_file = data / "api_key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert key_file.read_text().strip() == f"default:{key}"
        h = {"Authorization": f"Bearer {key}"}
        # Trainable on purpose: under load the worker may pick the job up before the cancel lands, and a
        # dataset the engine rejects would then end as `failed` before the cancel is ever checked.
        rows = "".join(f"alpha word {i},x\nbeta word {i},y\n" for i in range(12))
        r = httpx.post(
            base + "/v1/datasets",
            headers=h,
            files={"file": ("d.csv", ("text,noisy_label\n" + rows).encode())},
        )
        assert r.status_code == 201, r.text
        ds_id = r.json()["id"]
        job = httpx.post(
            base + "/v1/jobs", headers=h, json={"dataset_id": ds_id, "params": {"epochs": 1}}
        ).json()
        httpx.post(base + f"/v1/jobs/{job['id']}/cancel", headers=h)
        # Wait for the embedded worker, then kill it: the server starts a new one.
        deadline = time.time() + 60
        while httpx.get(base + "/readyz").status_code != 200:
            assert time.time() < deadline, api.log()
            time.sleep(0.2)
        first = _live_worker_ids(data)
        assert len(first) == 1
        pid = int(first[0].rsplit(":", 1)[1])
        os.kill(pid, signal.SIGKILL)
        deadline = time.time() + 60
        while True:
            if any(i not in first for i in _live_worker_ids(data)):
                break
            assert time.time() < deadline, f"worker not restarted:\n{api.log()}"
            time.sleep(0.3)
    finally:
        api.stop()

    api, base = start_api(env, tmp_path, "api-2")
    try:
        time.sleep(0.5)
        assert "created an API key" not in api.log() and key not in api.log()
        h = {"Authorization": f"Bearer {key}"}
        assert httpx.get(base + f"/v1/datasets/{ds_id}", headers=h).status_code == 200
        # The job was cancelled while queued or running; if its worker was the one killed mid-run, the
        # reaper of the restarted service finishes the pending cancel once the heartbeat is stale.
        deadline = time.time() + 30
        while (got := httpx.get(base + f"/v1/jobs/{job['id']}", headers=h).json())["status"] == "running":
            assert time.time() < deadline, api.log()
            time.sleep(0.3)
        assert got["status"] == "cancelled", got
    finally:
        api.stop()
