"""Faults in the Celery mode, with real processes: one AOF-persistent redis-server, one `sidyp serve`, several
`sidyp worker`s. Workers, the API and Redis are killed with SIGKILL at chosen moments of a job (the test
watches the job's progress stage to time the kill) and the outcome is checked through the HTTP API.

Timing: the jobs use the tiny backbone but enough rows and epochs that each stage lasts a few seconds, so a
kill lands inside the intended stage. The reaper's limits are short (heartbeat 0.5 s, stale after 5 s).
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import toy_dataset, write_csv
from tests.reliability.conftest import Cluster, all_events, sigkill, wait_job
from tests.service.conftest import KEY_2, tiny_params, wait_ready

FINAL = ("succeeded", "failed", "cancelled")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, tiny_backbone):
    root = tmp_path_factory.mktemp("cluster")
    c = Cluster(root, tiny_backbone)
    try:
        c.start_worker()
        c.start_worker()
        c.start_api()
        wait_ready(c)
        c.wait_workers(2)
        yield c
    finally:
        c.close()


def _upload(client: httpx.Client, tmp_path, n_per_class: int, name: str) -> str:
    texts, noisy, gold, _ = toy_dataset(n_per_class=n_per_class, seed=n_per_class)
    path = write_csv(tmp_path / f"{name}.csv", texts, noisy, gold)
    r = client.post("/v1/datasets", files={"file": (path.name, path.read_bytes(), "text/csv")})
    assert r.status_code == 201, r.text
    return r.json()["id"]


@pytest.fixture(scope="module")
def slow_dataset(cluster, tmp_path_factory) -> str:
    """450 rows: with batch 4 and 16 epochs stage 1 lasts several seconds, as does a 100-epoch refiner."""
    with cluster.client() as c:
        return _upload(c, tmp_path_factory.mktemp("slow"), 150, "slow")


def slow_params(backbone: str) -> dict:
    return tiny_params(backbone, epochs=16, batch_size=4, diffusion_epochs=100)


def in_stage(stage: str, delivery: int):
    def pred(job: dict) -> bool:
        p = job["progress"]
        return (
            job["status"] == "running"
            and job["deliveries"] == delivery
            and p["stage"] == stage
            and 0.0 < p["fraction"] < 0.75
        )

    return pred


def _deliveries(events: list[dict]) -> list[list[dict]]:
    """Split a job's events at each 'started' / 'resumed' status event: one list per delivery."""
    out: list[list[dict]] = []
    for e in events:
        if e["type"] == "status" and e["stage"] == "running":
            out.append([])
        if out:
            out[-1].append(e)
    return out


def _trained(segment: list[dict], stage: str) -> bool:
    """Did this delivery train the stage (progress strictly between 0 and 1), rather than load it?"""
    return any(e["stage"] == stage and 0.0 < (e["fraction"] or 0.0) < 1.0 for e in segment)


def test_worker_killed_in_stage1_then_in_the_refiner_job_succeeds_without_redoing_stage1(
    cluster, slow_dataset, tiny_backbone
):
    with cluster.client() as c:
        job_id = c.post("/v1/jobs", json={"dataset_id": slow_dataset, "params": slow_params(tiny_backbone)})
        job_id = job_id.json()["id"]
        # The kill lands where the job's own progress says it is (stage, 0 < fraction < 0.75).
        wait_job(c, job_id, in_stage("classifier", 1), 120, "the middle of stage 1", cluster.logs)
        first = cluster.kill_worker_running(job_id)
        cluster.start_worker()  # keep two workers; the idle one takes the re-queued job
        wait_job(c, job_id, in_stage("refiner", 2), 180, "the middle of the refiner", cluster.logs)
        assert (cluster.data_dir / "t1" / "work" / job_id / "stage1.json").is_file()  # checkpointed
        second = cluster.kill_worker_running(job_id)
        cluster.start_worker()
        done = wait_job(c, job_id, lambda j: j["status"] in FINAL, 240, "a final status", cluster.logs)
        events = all_events(c, job_id)

    assert done["status"] == "succeeded", (done, cluster.logs())
    assert done["deliveries"] == 3 and done["model_id"]
    assert len({first, second}) == 2  # each delivery was on a different worker process
    reaper = [e for e in events if e["type"] == "reaper"]
    assert len(reaper) == 2 and all("re-queued" in e["message"] for e in reaper), reaper
    d1, d2, d3 = _deliveries(events)
    # 1: killed in stage 1. 2: stage 1 retrained (never checkpointed), killed in the refiner.
    # 3: stage 1 loaded from its checkpoint, only the refiner (killed before its checkpoint) is retrained.
    assert not any(e["stage"] == "refiner" for e in d1)
    assert _trained(d2, "classifier") and any(e["stage"] == "refiner" for e in d2)
    assert not _trained(d3, "classifier") and _trained(d3, "refiner")
    assert any(e["stage"] == "classifier" and e["message"] == "reused checkpoint" for e in d3)
    assert done["metrics"]["classifier.reused"] == 1.0
    assert not (cluster.data_dir / "t1" / "work" / job_id).exists()  # checkpoints cleaned up on success


def test_a_job_whose_worker_dies_three_times_fails_with_worker_lost(cluster, slow_dataset, tiny_backbone):
    with cluster.client() as c:
        r = c.post("/v1/jobs", json={"dataset_id": slow_dataset, "params": slow_params(tiny_backbone)})
        job_id = r.json()["id"]
        killed = []
        for delivery in (1, 2, 3):
            wait_job(c, job_id, in_stage("classifier", delivery), 120, f"delivery {delivery}", cluster.logs)
            killed.append(cluster.kill_worker_running(job_id))
            cluster.start_worker()
        done = wait_job(c, job_id, lambda j: j["status"] in FINAL, 60, "a final status", cluster.logs)
        events = all_events(c, job_id)
        time.sleep(2)  # no further delivery happens after the job failed
        again = c.get(f"/v1/jobs/{job_id}").json()

    assert done["status"] == "failed" and done["error"]["code"] == "worker_lost", done
    assert "died 3 times" in done["error"]["message"] and done["model_id"] is None
    assert done["deliveries"] == 3 and again["deliveries"] == 3 and again["status"] == "failed"
    assert len(set(killed)) == 3
    reaper = [e["message"] for e in events if e["type"] == "reaper"]
    assert len(reaper) == 3 and all("re-queued" in m for m in reaper[:2]) and "failed" in reaper[2], reaper
    assert "delivery 3 of 3" in reaper[2]


def test_a_frozen_worker_loses_its_job_and_cannot_overwrite_it_when_it_thaws(
    cluster, slow_dataset, tiny_backbone
):
    """A worker that stops beating (SIGSTOP: alive but silent) is treated as lost after the stale limit; when
    it wakes up it finds the job taken over and stops without touching it."""
    import os
    import signal

    with cluster.client() as c:
        r = c.post("/v1/jobs", json={"dataset_id": slow_dataset, "params": slow_params(tiny_backbone)})
        job_id = r.json()["id"]
        wait_job(c, job_id, in_stage("classifier", 1), 120, "stage 1", cluster.logs)
        frozen_pid = int(cluster.store.get("job", job_id, None)["worker_id"].rsplit(":", 1)[1])
        os.kill(frozen_pid, signal.SIGSTOP)
        try:
            wait_job(c, job_id, lambda j: j["deliveries"] == 2, 60, "re-delivery", cluster.logs)
        finally:
            os.kill(frozen_pid, signal.SIGCONT)
        done = wait_job(c, job_id, lambda j: j["status"] in FINAL, 240, "a final status", cluster.logs)
        time.sleep(3)  # the thawed worker notices it lost the lock at its next heartbeat
        after = c.get(f"/v1/jobs/{job_id}").json()
        events = all_events(c, job_id)

    assert done["status"] == "succeeded" and done["deliveries"] == 2, done
    assert after["status"] == "succeeded" and after["model_id"] == done["model_id"]
    assert after["finished_at"] == done["finished_at"]
    reaper = [e for e in events if e["type"] == "reaper"]
    assert len(reaper) == 1 and "no heartbeat" in reaper[0]["message"]
    # The frozen worker wrote nothing after the job finished.
    assert [e["stage"] for e in events if e["type"] == "status"][-1] == "succeeded"
    assert "lock lost" in next(w for w in cluster.workers if w.popen.pid == frozen_pid).log()


def _snapshot(c: httpx.Client) -> dict:
    return {
        kind: c.get(f"/v1/{kind}", params={"limit": 1000}).json()["data"] for kind in ("datasets", "models")
    }


def test_api_killed_and_restarted_keeps_every_dataset_job_and_model(cluster, tmp_path, tiny_backbone):
    with cluster.client() as c:
        ds = _upload(c, tmp_path, 20, "api-restart")
        fast = tiny_params(tiny_backbone)
        finished = c.post("/v1/jobs", json={"dataset_id": ds, "params": fast}).json()["id"]
        cancelled = c.post("/v1/jobs", json={"dataset_id": ds, "params": fast}).json()["id"]
        c.post(f"/v1/jobs/{cancelled}/cancel")
        wait_job(c, finished, lambda j: j["status"] == "succeeded", 120, "success", cluster.logs)
        slow = {"dataset_id": ds, "params": tiny_params(tiny_backbone, epochs=40, batch_size=2)}
        running = c.post("/v1/jobs", json=slow).json()["id"]
        wait_job(c, running, lambda j: j["status"] == "running", 60, "running", cluster.logs)
        before = _snapshot(c)
        jobs_before = {j["id"]: j for j in c.get("/v1/jobs", params={"limit": 1000}).json()["data"]}
    with cluster.client(KEY_2) as c2:
        other_before = _snapshot(c2)

    sigkill(cluster.api)
    with pytest.raises(httpx.TransportError):
        httpx.get(cluster.base_url + "/healthz", timeout=2)
    cluster.start_api()
    wait_ready(cluster)

    with cluster.client() as c:
        assert _snapshot(c) == before
        jobs_after = {j["id"]: j for j in c.get("/v1/jobs", params={"limit": 1000}).json()["data"]}
        assert set(jobs_after) == set(jobs_before)
        for job_id, job in jobs_before.items():
            if job["status"] in FINAL:
                assert jobs_after[job_id] == job  # finished jobs are exactly as they were
        assert jobs_after[cancelled]["status"] == "cancelled"
        model_id = jobs_after[finished]["model_id"]
        r = c.post(f"/v1/models/{model_id}/predict", json={"texts": ["pizza pasta dinner"]})
        assert r.status_code == 200 and len(r.json()["predictions"]) == 1
        assert c.get(f"/v1/jobs/{finished}/labels", params={"limit": 5}).status_code == 200
        # The job that was training kept going on its worker: the API's death did not touch it.
        done = wait_job(c, running, lambda j: j["status"] in FINAL, 180, "a final status", cluster.logs)
        assert done["status"] == "succeeded" and done["deliveries"] == 1, done
    with cluster.client(KEY_2) as c2:
        assert _snapshot(c2) == other_before


def test_redis_killed_and_restarted_loses_no_accepted_job(cluster, tmp_path, tiny_backbone):
    params = tiny_params(tiny_backbone, epochs=12, batch_size=4, diffusion_epochs=60)
    with cluster.client() as c:
        ds = _upload(c, tmp_path, 40, "redis-restart")
        accepted = []
        for _ in range(4):
            r = c.post("/v1/jobs", json={"dataset_id": ds, "params": params})
            assert r.status_code == 202
            accepted.append(r.json()["id"])
        # Two workers: two jobs training, two waiting in the broker's queue.
        deadline = time.time() + 120
        while True:
            states = [c.get(f"/v1/jobs/{j}").json()["status"] for j in accepted]
            if states.count("running") >= 1 and states.count("queued") >= 1:
                break
            assert time.time() < deadline, (states, cluster.logs())
            time.sleep(0.1)
        late = _upload(c, tmp_path, 5, "just-before")  # answered 201 a moment before Redis dies

        cluster.redis.kill()
        down = c.get("/v1/jobs")
        assert down.status_code == 503 and down.headers["content-type"] == "application/problem+json"
        assert down.json()["type"] == "/problems/store-unavailable"
        assert c.get("/healthz").status_code == 200 and c.get("/readyz").status_code == 503
        time.sleep(2)
        cluster.redis.start()

        assert c.get(f"/v1/datasets/{late}").status_code == 200
        finals = {
            j: wait_job(c, j, lambda x: x["status"] in FINAL, 240, "a final status", cluster.logs)
            for j in accepted
        }
        listed = {j["id"] for j in c.get("/v1/jobs", params={"limit": 1000}).json()["data"]}
    assert set(accepted) <= listed
    assert all(j["status"] == "succeeded" for j in finals.values()), (finals, cluster.logs())
    # Running jobs either rode out the outage or were re-queued by the reaper; the events say which.
    for j in finals.values():
        assert j["deliveries"] in (1, 2)


def test_unwritable_models_dir_fails_the_job_cleanly_and_nothing_half_written_is_served(
    cluster, tmp_path, tiny_backbone
):
    """The worker cannot create the model folder (its parent is a file, so even root cannot write there):
    the job fails with storage_error, no model record or folder appears, and the service recovers."""
    blocker = cluster.data_dir / "t2" / "models"
    with cluster.client(KEY_2) as c:
        ds = _upload(c, tmp_path, 20, "unwritable")
        assert not blocker.exists()
        blocker.write_text("not a directory")
        try:
            job_id = c.post("/v1/jobs", json={"dataset_id": ds, "params": tiny_params(tiny_backbone)})
            job_id = job_id.json()["id"]
            done = wait_job(c, job_id, lambda j: j["status"] in FINAL, 120, "a final status", cluster.logs)
            assert done["status"] == "failed" and done["error"]["code"] == "storage_error", done
            assert "could not write" in done["error"]["message"] and done["model_id"] is None
            assert c.get("/v1/models").json()["data"] == []
            assert c.get(f"/v1/jobs/{job_id}/labels").status_code == 409
            assert not (cluster.data_dir / "t2" / "jobs").exists()
        finally:
            blocker.unlink()
        again = c.post("/v1/jobs", json={"dataset_id": ds, "params": tiny_params(tiny_backbone)}).json()
        ok = wait_job(c, again["id"], lambda j: j["status"] in FINAL, 120, "a final status", cluster.logs)
        assert ok["status"] == "succeeded", ok
        [model] = c.get("/v1/models").json()["data"]
        assert model["id"] == ok["model_id"]
    leftovers = [p.name for p in (cluster.data_dir / "t2").rglob(".tmp-*")]
    assert leftovers == []
