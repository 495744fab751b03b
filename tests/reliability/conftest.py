"""Real processes for the fault tests: a restartable redis-server with AOF persistence (as in
docker-compose), `sidyp serve` and any number of `sidyp worker` processes, each killable with SIGKILL."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import redis

from sidyp_core.store.redis_store import RedisJobStore
from tests.conftest import free_port
from tests.service.conftest import KEY_1, Proc, service_env, start_api, start_worker


class RedisServer:
    """A redis-server with appendonly + fsync on every write, so a SIGKILL loses nothing acknowledged."""

    def __init__(self, workdir: Path):
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail("redis-server is not installed: run 'make test' or 'apt-get install redis-server'")
        self.starts += 1
        log = open(self.dir / f"redis-{self.starts}.log", "wb")
        self.proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        client = redis.Redis(port=self.port)
        deadline = time.time() + 20
        while True:
            try:
                if client.ping():
                    return
            except (redis.ConnectionError, redis.BusyLoadingError):
                pass
            if time.time() > deadline or self.proc.poll() is not None:
                raise RuntimeError(
                    f"redis-server did not start: {(self.dir / f'redis-{self.starts}.log').read_text()}"
                )
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def sigkill(proc: Proc) -> None:
    """SIGKILL a service process (its whole process group: `sidyp serve` includes its embedded worker)."""
    try:
        os.killpg(proc.popen.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.popen.wait(10)


class Cluster:
    """Celery mode, as deployed: one Redis, one API process, several worker processes."""

    def __init__(self, root: Path, backbone: str, **env: str):
        self.root = root
        self.redis = RedisServer(root / "redis")
        self.redis.start()
        self.env = service_env(root / "data", backbone, SIDYP_REDIS_URL=self.redis.url, **env)
        self.data_dir = root / "data"
        self.api: Proc | None = None
        self.base_url = ""
        self.workers: list[Proc] = []
        self.dead: list[Proc] = []
        self._n = 0
        self.store = RedisJobStore(self.redis.url)

    def start_api(self) -> None:
        self._n += 1
        self.api, self.base_url = start_api(self.env, self.root, f"api-{self._n}")

    def start_worker(self) -> Proc:
        self._n += 1
        proc = start_worker(self.env, self.root, f"worker-{self._n}")
        self.workers.append(proc)
        return proc

    def live_worker_pids(self) -> set[int]:
        pids = set()
        for w in self.store.live_workers(3):
            pids.add(int(w["id"].rsplit(":", 1)[1]))
        return pids & {w.popen.pid for w in self.workers if w.alive()}

    def wait_workers(self, n: int, timeout: float = 90) -> None:
        deadline = time.time() + timeout
        while len(self.live_worker_pids()) < n:
            if time.time() > deadline:
                raise AssertionError(f"fewer than {n} live workers:\n{self.logs()}")
            time.sleep(0.2)

    def kill_worker_running(self, job_id: str) -> int:
        """SIGKILL the worker process that holds the job; returns its pid."""
        doc = self.store.get("job", job_id, None)
        pid = int(doc["worker_id"].rsplit(":", 1)[1])
        proc = next(w for w in self.workers if w.popen.pid == pid)
        sigkill(proc)
        self.workers.remove(proc)
        self.dead.append(proc)
        return pid

    def client(self, key: str | None = KEY_1) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=60)

    def logs(self) -> str:
        procs = ([self.api] if self.api else []) + self.workers + self.dead
        return "\n".join(f"--- {p.log_path.name}\n{p.log()[-3000:]}" for p in procs)

    def close(self) -> None:
        for p in ([self.api] if self.api else []) + self.workers:
            p.stop(timeout=5)
        for p in self.dead:
            p.stop(timeout=1)
        self.store.close()
        self.redis.stop()


def wait_job(client: httpx.Client, job_id: str, pred, timeout: float, what: str, logs=lambda: "") -> dict:
    """Poll a job every 50 ms until `pred(job)`; fail if it reaches a final status first."""
    deadline = time.time() + timeout
    job: dict = {}
    while time.time() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if pred(job):
            return job
        if job.get("status") in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {what}: {job}\n{logs()}")


def all_events(client: httpx.Client, job_id: str) -> list[dict]:
    return client.get(f"/v1/jobs/{job_id}/events", params={"limit": 1000}).json()["data"]


def report(test: str, **figures) -> None:
    """Print what a fault test observed (run with -s to see it); also appended, as JSON lines, to the file
    named by SIDYP_RELIABILITY_LOG when set. docs/reliability.md quotes these figures."""
    import json

    line = json.dumps({"test": test, **figures}, default=str)
    print(f"\nRELIABILITY {line}")
    target = os.environ.get("SIDYP_RELIABILITY_LOG")
    if target:
        with open(target, "a") as f:
            f.write(line + "\n")
