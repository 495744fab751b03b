"""Faults in the embedded mode (SQLite store, `sidyp serve` with its spawned worker), and a disk that fills
up while a model is being written."""

from __future__ import annotations

import errno
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from sidyp_core.config import Settings
from tests.conftest import toy_dataset, write_csv
from tests.reliability.conftest import all_events, report, sigkill, wait_job
from tests.service.conftest import (
    KEY_1,
    TENANT_KEYS,
    Service,
    service_env,
    start_api,
    tiny_params,
    wait_ready,
)

pytestmark = pytest.mark.slow  # starts servers or trains through the service: not in `make test-fast`

FINAL = ("succeeded", "failed", "cancelled")


def _upload(client, tmp_path: Path, n_per_class: int) -> str:
    texts, noisy, gold, _ = toy_dataset(n_per_class=n_per_class, seed=3)
    path = write_csv(tmp_path / f"d{n_per_class}.csv", texts, noisy, gold)
    r = client.post("/v1/datasets", files={"file": (path.name, path.read_bytes(), "text/csv")})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_serve_killed_with_its_worker_mid_job_restarts_with_everything_and_finishes_the_job(
    tmp_path, tiny_backbone
):
    env = service_env(tmp_path / "data", tiny_backbone)
    api, base = start_api(env, tmp_path, "serve-1")
    service = Service(base, tmp_path / "data", [api])
    try:
        wait_ready(service)
        with service.client() as c:
            ds = _upload(c, tmp_path, 20)
            done = c.post("/v1/jobs", json={"dataset_id": ds, "params": tiny_params(tiny_backbone)}).json()
            done = wait_job(
                c, done["id"], lambda j: j["status"] in FINAL, 120, "a final status", service.logs
            )
            assert done["status"] == "succeeded"
            big = _upload(c, tmp_path, 150)
            params = tiny_params(tiny_backbone, epochs=16, batch_size=4, diffusion_epochs=100)
            job_id = c.post("/v1/jobs", json={"dataset_id": big, "params": params}).json()["id"]

            def mid_stage1(j):
                return j["status"] == "running" and j["progress"]["stage"] == "classifier"

            wait_job(c, job_id, mid_stage1, 120, "stage 1", service.logs)
            before = {
                k: c.get(f"/v1/{k}", params={"limit": 100}).json()["data"] for k in ("datasets", "models")
            }
    finally:
        sigkill(api)  # the API and its embedded worker: one process group

    killed_at = time.time()
    api, base = start_api(env, tmp_path, "serve-2")
    service = Service(base, tmp_path / "data", [api])
    try:
        with service.client() as c:
            after = {
                k: c.get(f"/v1/{k}", params={"limit": 100}).json()["data"] for k in ("datasets", "models")
            }
            assert after == before
            assert c.get(f"/v1/jobs/{done['id']}").json() == done
            r = c.post(f"/v1/models/{done['model_id']}/predict", json={"texts": ["goal match team"]})
            assert r.status_code == 200
            # The interrupted job is still 'running' with a silent heartbeat: the new service's reaper
            # re-queues it and the new worker resumes it.
            final = wait_job(c, job_id, lambda j: j["status"] in FINAL, 240, "a final status", service.logs)
            report(
                "embedded serve + worker SIGKILLed mid stage 1, restarted",
                status=final["status"],
                deliveries=final["deliveries"],
                seconds_from_kill_to_succeeded=round(time.time() - killed_at, 1),
            )
            assert final["status"] == "succeeded" and final["deliveries"] == 2, (final, service.logs())
            reaper = [e for e in all_events(c, job_id) if e["type"] == "reaper"]
            assert len(reaper) == 1 and "re-queued" in reaper[0]["message"]
    finally:
        api.stop()


def test_disk_full_while_writing_the_model_fails_the_job_and_publishes_nothing(
    tmp_path, tiny_backbone, monkeypatch, caplog
):
    """The model's weights get half-written, then the disk is full (ENOSPC). The job fails with a clear
    storage error; the half-written folder never appears under its final name, no record points at it."""
    from sidyp_engine.served import ServedClassifier
    from worker.runner import JobRunner

    real_save = ServedClassifier.save

    def save_until_disk_full(self, directory):
        if not Path(directory).name.startswith(".tmp-mdl_"):
            return real_save(self, directory)  # the engine's own checkpoint of the served model
        (Path(directory) / "model.safetensors").write_bytes(b"\x00" * 4096)  # partial write
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ServedClassifier, "save", save_until_disk_full)
    settings = Settings(
        data_dir=tmp_path / "data",
        api_keys=TENANT_KEYS,
        backbones=f"tiny={tiny_backbone}",
    )
    with TestClient(create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {KEY_1}"
        ds = _upload(client, tmp_path, 10)
        job = client.post("/v1/jobs", json={"dataset_id": ds, "params": tiny_params(tiny_backbone)}).json()
        store = client.app.state.store
        assert store.claim_next() == job["id"]
        outcome = JobRunner(settings, store, "w-disk-full").run(job["id"])
        got = client.get(f"/v1/jobs/{job['id']}").json()
        report("disk full (ENOSPC) while writing the model", status=got["status"], error=got["error"])
        assert outcome == "failed" and got["status"] == "failed"
        # The tenant gets the code and an error id; the log line with that id has the OS's words.
        error = got["error"]
        assert error["code"] == "storage_error" and error["error_id"] in error["message"]
        assert "No space left" not in error["message"] and str(settings.data_dir) not in error["message"]
        logged = [r for r in caplog.records if error["error_id"] in r.getMessage()]
        assert logged and "No space left" in str(logged[0].exc_info[1])
        assert got["model_id"] is None and client.get("/v1/models").json()["data"] == []
        assert client.get(f"/v1/jobs/{job['id']}/report").status_code == 409
        reserved = store.get("job", job["id"], None)["reserved_model_id"]
        assert client.get(f"/v1/models/{reserved}").status_code == 404
        assert client.post(f"/v1/models/{reserved}/predict", json={"texts": ["a"]}).status_code == 404
    tenant_dir = settings.data_dir / "t1"
    assert not (tenant_dir / "models").exists() or list((tenant_dir / "models").iterdir()) == []
    assert not (tenant_dir / "jobs").exists() or list((tenant_dir / "jobs").iterdir()) == []


def test_an_artifact_is_never_seen_half_written(tmp_path):
    """Readers racing writers see either no folder or a complete one: each is built under a hidden temp
    name and renamed into place, so a listing of the parent never shows a partial artifact."""
    import threading

    from sidyp_core.artifacts import write_artifact

    parent = tmp_path / "t1" / "models"
    parent.mkdir(parents=True)
    files = {f"part{i}.bin": bytes([i]) * 20000 for i in range(8)}
    seen: list[int] = []
    stop = threading.Event()

    def read_loop():
        while not stop.is_set():
            for folder in parent.iterdir():
                if not folder.name.startswith("."):
                    seen.append(len(list(folder.iterdir())))

    def fill(tmp: Path):
        for name, data in files.items():
            (tmp / name).write_bytes(data)
            time.sleep(0.002)

    threads = [threading.Thread(target=read_loop) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for i in range(10):
            write_artifact(parent / f"mdl_{i:022d}", fill)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert seen and set(seen) == {len(files)}
    assert sorted(p.name for p in parent.iterdir()) == [f"mdl_{i:022d}" for i in range(10)]
