"""Faults in the Celery mode, with real processes: one AOF-persistent redis-server, one `sidyp serve`, several
`sidyp worker`s. Workers, the API and Redis are killed with SIGKILL at chosen moments of a job (the test
watches the job's progress stage to time the kill) and the outcome is checked through the HTTP API.

Timing: the jobs use the tiny backbone but enough rows and epochs that each stage lasts a few seconds, so a
kill lands inside the intended stage. The reaper's limits are short (heartbeat 0.5 s, stale after 5 s).
"""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from sidyp_core.artifacts import job_work_dir
from tests.conftest import toy_dataset, write_csv
from tests.reliability.conftest import Cluster, all_events, report, sigkill, wait_job
from tests.service.conftest import KEY_2, tiny_params, wait_ready

pytestmark = pytest.mark.slow  # starts servers or trains through the service: not in `make test-fast`

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


def in_stage(stage: str, delivery: int, low: float = 0.1):
    def pred(job: dict) -> bool:
        p = job["progress"]
        return (
            job["status"] == "running"
            and job["deliveries"] == delivery
            and p["stage"] == stage
            and low < p["fraction"] < 0.75
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
        # The kill lands where the job's own progress says it is (stage, 0.1 < fraction < 0.75).
        at1 = wait_job(c, job_id, in_stage("classifier", 1), 120, "the middle of stage 1", cluster.logs)
        first = cluster.kill_worker_running(job_id)
        killed1 = time.time()
        cluster.start_worker()  # keep two workers; the idle one takes the re-queued job
        wait_job(c, job_id, lambda j: j["deliveries"] == 2, 60, "re-delivery", cluster.logs)
        back1 = time.time() - killed1
        at2 = wait_job(c, job_id, in_stage("refiner", 2), 180, "the middle of the refiner", cluster.logs)
        assert (cluster.data_dir / "t1" / "work" / job_id / "stage1.json").is_file()  # checkpointed
        second = cluster.kill_worker_running(job_id)
        killed2 = time.time()
        cluster.start_worker()
        wait_job(c, job_id, lambda j: j["deliveries"] == 3, 60, "re-delivery", cluster.logs)
        back2 = time.time() - killed2
        done = wait_job(c, job_id, lambda j: j["status"] in FINAL, 240, "a final status", cluster.logs)
        events = all_events(c, job_id)
        timings = c.get(f"/v1/jobs/{job_id}/report").json().get("timings")
    report(
        "worker killed in stage 1, then in the refiner",
        killed_at=[
            f"classifier {at1['progress']['fraction']:.2f}",
            f"refiner {at2['progress']['fraction']:.2f}",
        ],
        seconds_from_kill_to_redelivery=[round(back1, 1), round(back2, 1)],
        status=done["status"],
        deliveries=done["deliveries"],
        stage1_reused_on_delivery_3=done["metrics"].get("classifier.reused"),
        report_timings=timings,
    )

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
    # checkpoints cleaned up on success (just after the status is written: give the worker a moment)
    work = cluster.data_dir / "t1" / "work" / job_id
    deadline = time.time() + 10
    while work.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert not work.exists()


def test_a_worker_stopped_with_sigterm_requeues_its_job_which_resumes_from_its_checkpoint(
    cluster, slow_dataset, tiny_backbone
):
    with cluster.client() as c:
        r = c.post("/v1/jobs", json={"dataset_id": slow_dataset, "params": slow_params(tiny_backbone)})
        job_id = r.json()["id"]
        wait_job(c, job_id, in_stage("refiner", 1), 180, "the middle of the refiner", cluster.logs)
        doc = cluster.store.get("job", job_id, None)
        pid = int(doc["worker_id"].rsplit(":", 1)[1])
        proc = next(w for w in cluster.workers if w.popen.pid == pid)
        stopped = time.time()
        os.kill(pid, signal.SIGTERM)  # what `docker stop` sends
        proc.popen.wait(60)  # Celery's warm shutdown ends once the job is handed back, not when it finishes
        exit_seconds = time.time() - stopped
        cluster.workers.remove(proc)
        cluster.dead.append(proc)
        cluster.start_worker()
        done = wait_job(c, job_id, lambda j: j["status"] in FINAL, 240, "a final status", cluster.logs)
        events = all_events(c, job_id)
    reaper = [e["message"] for e in events if e["type"] == "reaper"]
    report(
        "worker stopped with SIGTERM in the refiner", seconds_to_exit=round(exit_seconds, 1), reaper=reaper
    )
    assert done["status"] == "succeeded", (done, cluster.logs())
    assert proc.popen.returncode == 0
    assert done["deliveries"] == 1  # a clean shutdown does not count against SIDYP_MAX_DELIVERIES
    requeued = [e["message"] for e in events if e["stage"] == "queued"]
    assert "worker shut down mid-run: re-queued" in requeued, events
    _before, after = _deliveries(events)
    assert not _trained(after, "classifier")  # stage 1 came from its checkpoint
    assert any(e["stage"] == "classifier" and e["message"] == "reused checkpoint" for e in after)
    assert not any("worker lost" in m for m in reaper), reaper  # handed back, not found lost


def test_a_job_whose_worker_dies_three_times_fails_with_worker_lost(cluster, slow_dataset, tiny_backbone):
    with cluster.client() as c:
        r = c.post("/v1/jobs", json={"dataset_id": slow_dataset, "params": slow_params(tiny_backbone)})
        job_id = r.json()["id"]
        killed = []
        for delivery in (1, 2, 3):
            at = in_stage("classifier", delivery, low=0.0)
            wait_job(c, job_id, at, 120, f"delivery {delivery}", cluster.logs)
            killed.append(cluster.kill_worker_running(job_id))
            last_kill = time.time()
            cluster.start_worker()
        done = wait_job(c, job_id, lambda j: j["status"] in FINAL, 60, "a final status", cluster.logs)
        report(
            "worker dies three times",
            status=done["status"],
            error=done["error"],
            deliveries=done["deliveries"],
            seconds_from_third_kill_to_failed=round(time.time() - last_kill, 1),
        )
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
        frozen_at = time.time()
        try:
            wait_job(c, job_id, lambda j: j["deliveries"] == 2, 60, "re-delivery", cluster.logs)
            taken_over = time.time() - frozen_at
        finally:
            os.kill(frozen_pid, signal.SIGCONT)
        done = wait_job(c, job_id, lambda j: j["status"] in FINAL, 240, "a final status", cluster.logs)
        time.sleep(3)  # the thawed worker notices it lost the lock at its next heartbeat
        after = c.get(f"/v1/jobs/{job_id}").json()
        events = all_events(c, job_id)

    report(
        "frozen worker (SIGSTOP)",
        seconds_from_freeze_to_redelivery=round(taken_over, 1),
        status=done["status"],
        deliveries=done["deliveries"],
        status_after_thaw=after["status"],
    )
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
    down_at = time.time()
    with pytest.raises(httpx.TransportError):
        httpx.get(cluster.base_url + "/healthz", timeout=2)
    cluster.start_api()
    wait_ready(cluster)
    restart_s = time.time() - down_at

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
        report(
            "API SIGKILLed and restarted",
            seconds_until_ready_again=round(restart_s, 1),
            datasets=len(before["datasets"]),
            jobs=len(jobs_before),
            models=len(before["models"]),
            job_running_during_restart={"status": done["status"], "deliveries": done["deliveries"]},
        )
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

        states_at_kill = {"running": states.count("running"), "queued": states.count("queued")}
        cluster.redis.kill()
        killed_at = time.time()
        down = c.get("/v1/jobs")
        assert down.status_code == 503 and down.headers["content-type"] == "application/problem+json"
        assert down.json()["type"] == "/problems/store-unavailable"
        assert c.get("/healthz").status_code == 200 and c.get("/readyz").status_code == 503
        # Longer than the stale limit (5 s): the running jobs' locks expire in Redis, so they are re-queued
        # by the reaper unless their worker renews first; either way they must end succeeded.
        time.sleep(7)
        cluster.redis.start()
        outage_s = time.time() - killed_at

        assert c.get(f"/v1/datasets/{late}").status_code == 200
        finals = {
            j: wait_job(c, j, lambda x: x["status"] in FINAL, 240, "a final status", cluster.logs)
            for j in accepted
        }
        listed = {j["id"] for j in c.get("/v1/jobs", params={"limit": 1000}).json()["data"]}
    report(
        "Redis SIGKILLed and restarted (AOF, appendfsync always)",
        jobs_at_kill=states_at_kill,
        outage_seconds=round(outage_s, 1),
        answer_during_outage=down.status_code,
        final={j: (x["status"], x["deliveries"]) for j, x in finals.items()},
        seconds_from_restart_to_all_final=round(time.time() - killed_at - outage_s, 1),
    )
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
            report("models dir unwritable", status=done["status"], error=done["error"])
            assert done["status"] == "failed" and done["error"]["code"] == "storage_error", done
            error = done["error"]
            assert error["error_id"] in error["message"] and done["model_id"] is None
            assert "Not a directory" not in error["message"] and str(cluster.data_dir) not in error["message"]
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
    # the worker removes the job's checkpoint folder just after it publishes the final status: a scan
    # while that is under way reads a folder that vanishes, so wait for it to go first
    work_dir = job_work_dir(cluster.data_dir, "t2", again["id"])
    deadline = time.monotonic() + 30
    while work_dir.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not work_dir.exists(), "the finished job's checkpoint folder was not removed"
    leftovers = [p.name for p in (cluster.data_dir / "t2").rglob(".tmp-*")]
    assert leftovers == []
