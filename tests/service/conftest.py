"""Real service processes for the service tests: `sidyp serve` (embedded or Celery mode) and `sidyp worker`.

Every test talks HTTP to a real uvicorn; Celery-mode tests use the real Redis from the `redis_url`
fixture and a real `sidyp worker` subprocess (solo pool). Nothing is faked.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, toy_dataset, write_csv

REPO = Path(__file__).resolve().parents[2]
KEY_1, KEY_2 = "key-one-" + "a" * 24, "key-two-" + "b" * 24
TENANT_KEYS = f"t1:{KEY_1},t2:{KEY_2}"
TINY = "tiny"  # the name service_env registers the tiny backbone under (SIDYP_BACKBONES)


def tiny_params(backbone: str, **overrides) -> dict:
    """Quick job params; `backbone` (the tiny backbone's directory) is what service_env registers as TINY."""
    params = {
        "epochs": 1,
        "branches": 1,
        "diffusion_epochs": 1,
        "backbone": TINY,
        "batch_size": 16,
        "max_length": 32,
        "seed": 0,
    }
    params.update(overrides)
    return params


class Proc:
    """A child process with its output in a log file (read on failure), stopped by SIGTERM then SIGKILL."""

    def __init__(self, args: list[str], env: dict, log_path: Path):
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.popen = subprocess.Popen(
            args, cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 20) -> None:
        if self.alive():
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        self._log.close()


def service_env(data_dir: Path, backbone_dir: str, **extra: str) -> dict:
    env = dict(os.environ)
    env.update(
        {
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": "1",
            "SIDYP_DATA_DIR": str(data_dir),
            "SIDYP_API_KEYS": TENANT_KEYS,
            "SIDYP_BACKBONES": f"{TINY}={backbone_dir}",
            "SIDYP_HEARTBEAT_INTERVAL_SECONDS": "0.5",
            "SIDYP_STALE_AFTER_SECONDS": "5",
            "SIDYP_REAPER_INTERVAL_SECONDS": "1",
            "SIDYP_WORKER_ALIVE_SECONDS": "5",
            "SIDYP_TORCH_THREADS": "1",
        }
    )
    env.pop("SIDYP_REDIS_URL", None)
    env.update(extra)
    return env


class Service:
    def __init__(self, base_url: str, data_dir: Path, procs: list[Proc]):
        self.base_url = base_url
        self.data_dir = data_dir
        self.procs = procs

    def client(self, key: str | None = KEY_1) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=60)

    def logs(self) -> str:
        return "\n".join(f"--- {p.log_path.name}\n{p.log()}" for p in self.procs)


def start_api(
    env: dict, log_dir: Path, name: str = "api", extra_args: tuple[str, ...] = ()
) -> tuple[Proc, str]:
    port = free_port()
    proc = Proc(
        [sys.executable, "-m", "sidyp_cli", "serve", "--port", str(port), *extra_args],
        env,
        log_dir / f"{name}.log",
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        if not proc.alive():
            raise RuntimeError(f"sidyp serve exited:\n{proc.log()}")
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.stop()
    raise RuntimeError(f"sidyp serve did not come up:\n{proc.log()}")


def start_worker(env: dict, log_dir: Path, name: str = "worker") -> Proc:
    return Proc(
        [sys.executable, "-m", "sidyp_cli", "worker", "--loglevel", "INFO"], env, log_dir / f"{name}.log"
    )


def wait_ready(service: Service, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if httpx.get(service.base_url + "/readyz", timeout=2).status_code == 200:
            return
        time.sleep(0.3)
    raise AssertionError(f"service never became ready:\n{service.logs()}")


@pytest.fixture(scope="module")
def embedded_service(tmp_path_factory, tiny_backbone):
    root = tmp_path_factory.mktemp("embedded")
    env = service_env(root / "data", tiny_backbone)
    api, base = start_api(env, root)
    service = Service(base, root / "data", [api])
    try:
        wait_ready(service)
        yield service
    finally:
        api.stop()


@pytest.fixture(scope="module")
def celery_service(tmp_path_factory, tiny_backbone, redis_url):
    root = tmp_path_factory.mktemp("celery")
    # A database of its own, so the store contract tests' keys never mix with the service's.
    url = redis_url.rsplit("/", 1)[0] + "/3"
    import redis

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


def upload_toy(
    client: httpx.Client, tmp_path: Path, n_per_class: int = 20, gold: bool = True, **form
) -> dict:
    texts, noisy, gold_labels, _classes = toy_dataset(n_per_class=n_per_class)
    path = write_csv(tmp_path / f"toy-{n_per_class}.csv", texts, noisy, gold_labels if gold else None)
    with open(path, "rb") as f:
        r = client.post("/v1/datasets", files={"file": (path.name, f, "text/csv")}, data=form)
    assert r.status_code == 201, r.text
    return r.json()


def wait_status(
    client: httpx.Client, job_id: str, statuses: set[str], timeout: float = 180, service=None
) -> dict:
    deadline = time.time() + timeout
    job = None
    while time.time() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job
        time.sleep(0.3)
    logs = service.logs() if service is not None else ""
    raise AssertionError(f"job {job_id} stuck in {job and job['status']}: {job}\n{logs}")
