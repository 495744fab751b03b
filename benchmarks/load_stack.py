"""What `benchmarks.load` runs against: the service's processes, its clients and the synthetic data."""

from __future__ import annotations

import csv
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
KEY = "sk-bench-" + "k" * 32
FINAL = ("succeeded", "failed", "cancelled")
TOPICS = {
    "sports": ["football", "match", "goal", "team", "coach", "league", "score", "player", "season", "final"],
    "food": ["pizza", "pasta", "recipe", "cheese", "bake", "kitchen", "flavor", "dinner", "sauce", "oven"],
    "tech": ["laptop", "software", "chip", "server", "code", "network", "robot", "cloud", "update", "app"],
}
FILLER = ["the", "a", "this", "that", "really", "today", "with", "and", "for", "new", "about", "our"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sentence(rng: random.Random, topic: str, n_words: int) -> str:
    words = [rng.choice(TOPICS[topic]) if rng.random() < 0.5 else rng.choice(FILLER) for _ in range(n_words)]
    return " ".join(words).capitalize() + "."


def dataset_csv(path: Path, n_per_class: int, seed: int, noise: float = 0.3) -> Path:
    rng = random.Random(seed)
    topics = list(TOPICS)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "noisy_label"])
        for t in topics:
            for _ in range(n_per_class):
                label = rng.choice([o for o in topics if o != t]) if rng.random() < noise else t
                w.writerow([sentence(rng, t, rng.randint(6, 20)), label])
    return path


def tiny_backbone(out: Path) -> Path:
    """A random 2-layer hidden-32 BERT with the bundled tokenizer: jobs that train in about a second."""
    from sidyp_engine.synthetic import make_tiny_backbone

    return Path(make_tiny_backbone(out))


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None, "mean_ms": None}
    a = np.asarray(values) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 2),
        "p95_ms": round(float(np.percentile(a, 95)), 2),
        "p99_ms": round(float(np.percentile(a, 99)), 2),
        "max_ms": round(float(a.max()), 2),
        "mean_ms": round(float(a.mean()), 2),
    }


def _proc_field(path: str, key: str) -> str | None:
    """The value after `key` in a /proc file of `key: value` lines (None off Linux)."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine_info() -> dict:
    import torch

    mem_kib = _proc_field("/proc/meminfo", "MemTotal")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpu": _proc_field("/proc/cpuinfo", "model name") or platform.processor(),
        "cores": os.cpu_count(),
        "memory_gib": round(int(mem_kib.split()[0]) / 1024 / 1024, 1) if mem_kib else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "git_commit": commit or None,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


class Stack:
    """redis-server + worker(s) + API, as child processes in their own sessions."""

    def __init__(self, root: Path, workers: int, env_extra: dict[str, str]):
        self.root = root
        self.procs: list[subprocess.Popen] = []
        self.logs: list[Path] = []
        redis_port, api_port = free_port(), free_port()
        self._start_redis(redis_port)
        self.env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "SIDYP_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "SIDYP_API_KEYS": f"bench:{KEY}",
            "SIDYP_DATA_DIR": str(root / "data"),
            **env_extra,
        }
        for i in range(workers):
            self._spawn(
                [sys.executable, "-m", "sidyp_cli", "worker", "--loglevel", "WARNING"],
                f"worker-{i}",
                self.env,
            )
        self._spawn(
            [sys.executable, "-m", "sidyp_cli", "serve", "--port", str(api_port), "--log-level", "warning"],
            "api",
            self.env,
        )
        self.base = f"http://127.0.0.1:{api_port}"

    def _start_redis(self, port: int) -> None:
        redis_dir = self.root / "redis"
        redis_dir.mkdir()
        exe = shutil.which("redis-server")
        if exe is None:
            raise SystemExit("redis-server is not installed (make redis-server)")
        self._spawn(
            [exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(redis_dir)]
            + ["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""],
            "redis",
            os.environ.copy(),
        )

    def _spawn(self, args: list[str], name: str, env: dict) -> None:
        log = self.root / f"{name}.log"
        self.logs.append(log)
        self.procs.append(
            subprocess.Popen(
                args,
                cwd=REPO,
                env=env,
                stdout=open(log, "wb"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if httpx.get(self.base + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            for p, log in zip(self.procs, self.logs, strict=True):
                if p.poll() is not None:
                    raise SystemExit(f"{log.name} exited:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        raise SystemExit("the service never became ready:\n" + self.tail())

    def tail(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}" for log in self.logs)

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p in reversed(self.procs):
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)


def client(base: str, **kw) -> httpx.Client:
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"}, timeout=120, **kw)


def async_client(base: str, connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {KEY}"}, timeout=120, limits=limits
    )


def upload(c: httpx.Client, path: Path) -> str:
    r = c.post("/v1/datasets", files={"file": (path.name, path.read_bytes(), "text/csv")})
    r.raise_for_status()
    return r.json()["id"]


def wait_final(c: httpx.Client, job_id: str, timeout: float) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = c.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in FINAL:
            return job
        time.sleep(0.5)
    raise SystemExit(f"job {job_id} did not finish in {timeout:.0f}s")
