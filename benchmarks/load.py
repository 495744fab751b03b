"""Load benchmark: the service as deployed (Celery mode), on loopback, under three loads.

    python -m benchmarks.load [--duration 120] [--workers 1] [--out benchmarks/results/load.json]

It starts a redis-server (AOF on, fsync every second, as in docker-compose.yml), `sidyp worker` process(es)
and one `sidyp serve`, all in a temporary folder, then measures for `--duration` seconds each:

1. predict: 32 concurrent clients, each calling POST /v1/models/{id}/predict with 16 texts, back to back,
   on a model trained through the service with the bundled all-MiniLM-L6-v2 (the default backbone).
   Throughput, latency p50/p95/p99/max, errors (anything but 200).
2. burst: 200 job submissions at once (tiny jobs on a tiny random backbone), repeated until the duration is
   spent: every answer must be 202 or 429 (the queue limit, SIDYP_MAX_QUEUED_JOBS), every accepted job must
   reach `succeeded` (none lost) and the queue must drain.
3. status reads: GET /v1/jobs/{id} at a steady 200 requests/s (open loop: requests are sent on schedule,
   not after the previous answer) while a job trains. Latency p50/p95/p99; target p99 < 50 ms.

The load generator (asyncio + httpx, one process) shares the CPU with the service: on a small machine the
figures are a lower bound of what the service does alone. Prints a table and writes the JSON results.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sentence(rng: random.Random, topic: str, n_words: int) -> str:
    words = [rng.choice(TOPICS[topic]) if rng.random() < 0.5 else rng.choice(FILLER) for _ in range(n_words)]
    return " ".join(words).capitalize() + "."


def _dataset_csv(path: Path, n_per_class: int, seed: int, noise: float = 0.3) -> Path:
    rng = random.Random(seed)
    topics = list(TOPICS)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "noisy_label"])
        for t in topics:
            for _ in range(n_per_class):
                label = rng.choice([o for o in topics if o != t]) if rng.random() < noise else t
                w.writerow([_sentence(rng, t, rng.randint(6, 20)), label])
    return path


def _tiny_backbone(out: Path) -> Path:
    """A random 2-layer hidden-32 BERT with the bundled tokenizer: jobs that train in about a second."""
    from sidyp_engine.synthetic import make_tiny_backbone

    return Path(make_tiny_backbone(out))


def _percentiles(values: list[float]) -> dict:
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


def _machine() -> dict:
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
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
        redis_port, api_port = _free_port(), _free_port()
        redis_dir = root / "redis"
        redis_dir.mkdir()
        exe = shutil.which("redis-server")
        if exe is None:
            raise SystemExit("redis-server is not installed (make redis-server)")
        self._spawn(
            [exe, "--port", str(redis_port), "--bind", "127.0.0.1", "--dir", str(redis_dir)]
            + ["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""],
            "redis",
            os.environ.copy(),
        )
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


def _client(base: str, **kw) -> httpx.Client:
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"}, timeout=120, **kw)


def _async_client(base: str, connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {KEY}"}, timeout=120, limits=limits
    )


def _upload(c: httpx.Client, path: Path) -> str:
    r = c.post("/v1/datasets", files={"file": (path.name, path.read_bytes(), "text/csv")})
    r.raise_for_status()
    return r.json()["id"]


def _wait_final(c: httpx.Client, job_id: str, timeout: float) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        job = c.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in FINAL:
            return job
        time.sleep(0.5)
    raise SystemExit(f"job {job_id} did not finish in {timeout:.0f}s")


# ---------------------------------------------------------------------------------------------- phase 1
async def _predict_phase(base: str, model_id: str, duration: float, clients: int, batch: int) -> dict:
    rng = random.Random(1)
    pool = [_sentence(rng, rng.choice(list(TOPICS)), rng.randint(5, 40)) for _ in range(2000)]
    latencies: list[float] = []
    errors: dict[str, int] = {}
    texts_done = 0
    stop_at = time.perf_counter() + duration

    async def one_client(c: httpx.AsyncClient, seed: int) -> None:
        nonlocal texts_done
        local = random.Random(seed)
        while time.perf_counter() < stop_at:
            texts = local.sample(pool, batch)
            t0 = time.perf_counter()
            try:
                r = await c.post(f"/v1/models/{model_id}/predict", json={"texts": texts})
                status = str(r.status_code)
                ok = r.status_code == 200 and len(r.json()["predictions"]) == batch
            except httpx.HTTPError as exc:
                status, ok = type(exc).__name__, False
            latencies.append(time.perf_counter() - t0)
            if ok:
                texts_done += batch
            else:
                errors[status] = errors.get(status, 0) + 1

    async with _async_client(base, clients) as c:
        started = time.perf_counter()
        await asyncio.gather(*(one_client(c, i) for i in range(clients)))
        elapsed = time.perf_counter() - started
    n = len(latencies)
    return {
        "clients": clients,
        "texts_per_request": batch,
        "seconds": round(elapsed, 1),
        "requests": n,
        "errors": sum(errors.values()),
        "errors_by_kind": errors,
        "requests_per_s": round(n / elapsed, 2),
        "texts_per_s": round(texts_done / elapsed, 1),
        **_percentiles(latencies),
    }


# ---------------------------------------------------------------------------------------------- phase 2
async def _submit_burst(
    base: str, dataset_id: str, params: dict, n: int
) -> tuple[list[str], dict, list[float]]:
    statuses: dict[str, int] = {}
    accepted: list[str] = []
    latencies: list[float] = []

    async with _async_client(base, 64) as c:

        async def submit() -> None:
            t0 = time.perf_counter()
            try:
                r = await c.post("/v1/jobs", json={"dataset_id": dataset_id, "params": params})
                key = str(r.status_code)
                if r.status_code == 202:
                    accepted.append(r.json()["id"])
                elif r.status_code == 429:
                    assert r.headers.get("retry-after"), "429 without Retry-After"
            except httpx.HTTPError as exc:
                key = type(exc).__name__
            latencies.append(time.perf_counter() - t0)
            statuses[key] = statuses.get(key, 0) + 1

        await asyncio.gather(*(submit() for _ in range(n)))
    return accepted, statuses, latencies


def _burst_phase(base: str, dataset_id: str, params: dict, duration: float, burst: int) -> dict:
    rounds = []
    started = time.perf_counter()
    with _client(base) as c:
        while True:
            t0 = time.perf_counter()
            accepted, statuses, latencies = asyncio.run(_submit_burst(base, dataset_id, params, burst))
            submitted_s = time.perf_counter() - t0
            # Drain: every accepted job must end, and end succeeded.
            pending = set(accepted)
            finals: dict[str, str] = {}
            deadline = time.perf_counter() + max(600.0, duration * 3)
            while pending and time.perf_counter() < deadline:
                page = c.get("/v1/jobs", params={"limit": 1000}).json()["data"]
                for job in page:
                    if job["id"] in pending and job["status"] in FINAL:
                        finals[job["id"]] = job["status"]
                        pending.discard(job["id"])
                time.sleep(0.5)
            drained_s = time.perf_counter() - t0
            listed = set()
            after = None
            while True:
                q = {"limit": 1000} | ({"after": after} if after else {})
                page = c.get("/v1/jobs", params=q).json()
                listed |= {j["id"] for j in page["data"]}
                if not page["has_more"]:
                    break
                after = page["data"][-1]["id"]
            queue_after = c.get("/metrics").text
            queued_gauge = next(
                (
                    int(float(ln.split()[-1]))
                    for ln in queue_after.splitlines()
                    if ln.startswith('sidyp_jobs{status="queued"}')
                ),
                None,
            )
            rounds.append(
                {
                    "submitted": burst,
                    "answers": statuses,
                    "accepted": len(accepted),
                    "refused_429": statuses.get("429", 0),
                    "other_answers": sum(v for k, v in statuses.items() if k not in ("202", "429")),
                    "submit_seconds": round(submitted_s, 2),
                    "submit_latency": _percentiles(latencies),
                    "succeeded": sum(1 for s in finals.values() if s == "succeeded"),
                    "not_succeeded": {
                        s: sum(1 for v in finals.values() if v == s)
                        for s in set(finals.values())
                        if s != "succeeded"
                    },
                    "lost": len(set(accepted) - listed),
                    "unfinished_at_deadline": len(pending),
                    "drain_seconds": round(drained_s, 1),
                    "queued_after_drain": queued_gauge,
                }
            )
            if time.perf_counter() - started >= duration:
                break
    total_accepted = sum(r["accepted"] for r in rounds)
    return {
        "burst_size": burst,
        "rounds": rounds,
        "seconds": round(time.perf_counter() - started, 1),
        "accepted": total_accepted,
        "refused_429": sum(r["refused_429"] for r in rounds),
        "other_answers": sum(r["other_answers"] for r in rounds),
        "succeeded": sum(r["succeeded"] for r in rounds),
        "lost": sum(r["lost"] for r in rounds),
        "unfinished": sum(r["unfinished_at_deadline"] for r in rounds),
        "jobs_per_s_drained": round(total_accepted / sum(r["drain_seconds"] for r in rounds), 2),
    }


# ---------------------------------------------------------------------------------------------- phase 3
async def _paced_reads(base: str, current: dict, rate: float, duration: float) -> dict:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    seen: dict[str, int] = {}
    lateness: list[float] = []

    async with _async_client(base, 64) as c:

        async def read(job_id: str) -> None:
            t0 = time.perf_counter()
            try:
                r = await c.get(f"/v1/jobs/{job_id}")
                if r.status_code == 200:
                    s = r.json()["status"]
                    seen[s] = seen.get(s, 0) + 1
                else:
                    errors[str(r.status_code)] = errors.get(str(r.status_code), 0) + 1
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            latencies.append(time.perf_counter() - t0)

        tasks = []
        start = time.perf_counter()
        i = 0
        while True:
            due = start + i / rate
            if due - start >= duration:
                break
            now = time.perf_counter()
            if due > now:
                await asyncio.sleep(due - now)
            lateness.append(max(0.0, time.perf_counter() - due))
            tasks.append(asyncio.create_task(read(current["id"])))
            i += 1
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return {
        "target_rate_per_s": rate,
        "achieved_rate_per_s": round(len(latencies) / elapsed, 1),
        "seconds": round(elapsed, 1),
        "requests": len(latencies),
        "errors": sum(errors.values()),
        "errors_by_kind": errors,
        "statuses_seen": seen,
        "share_while_running": round(seen.get("running", 0) / max(1, sum(seen.values())), 3),
        "send_lateness_p99_ms": round(float(np.percentile(np.asarray(lateness) * 1000, 99)), 2)
        if lateness
        else None,
        **_percentiles(latencies),
    }


def _server_histogram(base: str, method: str, route: str) -> dict[str, float]:
    """The API's own latency histogram for one route (cumulative counts by upper bound, from /metrics)."""
    text = httpx.get(base + "/metrics", timeout=10).text
    prefix = f'sidyp_http_request_duration_seconds_bucket{{method="{method}",route="{route}",le="'
    out = {}
    for line in text.splitlines():
        if line.startswith(prefix):
            le = line[len(prefix) :].split('"', 1)[0]
            out[le] = float(line.split()[-1])
    return out


def _status_phase(base: str, dataset_id: str, params: dict, duration: float, rate: float) -> dict:
    """Keep one job training for the whole window (a new one starts when the last ends) and read its status."""
    import threading

    current: dict = {}
    stop = threading.Event()
    jobs_run = []

    def keep_training() -> None:
        with _client(base) as c:
            while not stop.is_set():
                job = c.post("/v1/jobs", json={"dataset_id": dataset_id, "params": params}).json()
                current["id"] = job["id"]
                jobs_run.append(job["id"])
                while not stop.is_set():
                    if c.get(f"/v1/jobs/{job['id']}").json()["status"] in FINAL:
                        break
                    stop.wait(0.5)

    t = threading.Thread(target=keep_training, daemon=True)
    t.start()
    with _client(base) as c:
        deadline = time.time() + 120
        while "id" not in current or c.get(f"/v1/jobs/{current['id']}").json()["status"] != "running":
            if time.time() > deadline:
                raise SystemExit("the status-phase job never started running")
            time.sleep(0.2)
    before = _server_histogram(base, "GET", "/v1/jobs/{job_id}")
    try:
        result = asyncio.run(_paced_reads(base, current, rate, duration))
    finally:
        stop.set()
        t.join(10)
    after = _server_histogram(base, "GET", "/v1/jobs/{job_id}")
    total = after.get("+Inf", 0.0) - before.get("+Inf", 0.0)
    # Time inside the API (route handler and middleware) as the API measures it; the rest of the client's
    # latency is the network stack, the accept queue and the CPU scheduler.
    result["server_side_share_within_ms"] = {
        f"{float(le) * 1000:g}": round((after[le] - before.get(le, 0.0)) / total, 4)
        for le in after
        if le != "+Inf" and total
    }
    with _client(base) as c:
        for job_id in jobs_run:
            c.post(f"/v1/jobs/{job_id}/cancel")
    result["training_jobs_during_window"] = len(jobs_run)
    return result


# ---------------------------------------------------------------------------------------------- main
def _table(results: dict) -> str:
    p, b, s = results["predict"], results["burst"], results["status_reads"]
    rows = [("phase", "load", "throughput", "p50 ms", "p95 ms", "p99 ms", "errors / outcome")]
    if p:
        rows.append(
            (
                "predict",
                f"{p['clients']} clients x {p['texts_per_request']} texts",
                f"{p['requests_per_s']} req/s ({p['texts_per_s']} texts/s)",
                p["p50_ms"],
                p["p95_ms"],
                p["p99_ms"],
                f"{p['errors']} errors / {p['requests']} requests",
            )
        )
    if b:
        first = b["rounds"][0]["submit_latency"]
        rows.append(
            (
                "burst",
                f"{len(b['rounds'])} x {b['burst_size']} submissions",
                f"{b['jobs_per_s_drained']} jobs/s drained",
                first["p50_ms"],
                first["p95_ms"],
                first["p99_ms"],
                f"{b['accepted']} accepted, {b['refused_429']} x 429, {b['other_answers']} other, "
                f"{b['succeeded']} succeeded, {b['lost']} lost",
            )
        )
    if s:
        rows.append(
            (
                "status reads",
                f"{s['target_rate_per_s']:.0f} req/s while training",
                f"{s['achieved_rate_per_s']} req/s",
                s["p50_ms"],
                s["p95_ms"],
                s["p99_ms"],
                f"{s['errors']} errors; {s['share_while_running']:.0%} saw 'running'",
            )
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=120.0, help="seconds per phase (default 120)")
    ap.add_argument("--workers", type=int, default=1, help="sidyp worker processes (default 1)")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--burst", type=int, default=200)
    ap.add_argument("--read-rate", type=float, default=200.0)
    ap.add_argument("--max-queued-jobs", type=int, default=100, help="SIDYP_MAX_QUEUED_JOBS for the run")
    ap.add_argument(
        "--phases", default="predict,burst,status", help="comma-separated subset of predict,burst,status"
    )
    ap.add_argument("--worker-torch-threads", type=int, default=1, help="SIDYP_TORCH_THREADS of the workers")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "load.json")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, data)")
    args = ap.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="sidyp-load-"))
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    machine = _machine()
    backbones = root / "backbones"
    tiny = _tiny_backbone(backbones / "tiny")
    stack = Stack(
        root,
        args.workers,
        {
            "SIDYP_BACKBONES": f"tiny={tiny}",
            "SIDYP_MAX_QUEUED_JOBS": str(args.max_queued_jobs),
            # The worker shares the cores with the API and the load generator: one torch thread keeps it from
            # busy-waiting against them (a tiny job took 7 s with the default 2 threads, 0.8 s with 1).
            "SIDYP_TORCH_THREADS": str(args.worker_torch_threads),
        },
    )
    try:
        stack.wait_ready()
        print(
            f"service up at {stack.base} (Celery mode, {args.workers} worker(s)); data in {root}", flush=True
        )
        with _client(stack.base) as c:
            # The served model: trained through the service on the bundled MiniLM, as a client would.
            t0 = time.perf_counter()
            ds = _upload(c, _dataset_csv(root / "train.csv", 40, seed=0))
            minilm = {"epochs": 1, "branches": 1, "diffusion_epochs": 2, "max_length": 64, "batch_size": 16}
            job = c.post("/v1/jobs", json={"dataset_id": ds, "params": minilm}).json()
            job = _wait_final(c, job["id"], 900)
            if job["status"] != "succeeded":
                raise SystemExit(f"setup job failed: {job}\n{stack.tail()}")
            model_id = job["model_id"]
            setup_s = time.perf_counter() - t0
            c.post(f"/v1/models/{model_id}/predict", json={"texts": ["warm up"]}).raise_for_status()
            tiny_ds = _upload(c, _dataset_csv(root / "tiny.csv", 10, seed=1))
            slow_ds = _upload(c, _dataset_csv(root / "slow.csv", 150, seed=2))
        print(f"model {model_id} trained with MiniLM in {setup_s:.0f}s", flush=True)
        phases = set(args.phases.split(","))
        predict = burst = reads = None
        if "predict" in phases:
            print("predict phase ...", flush=True)
            predict = asyncio.run(
                _predict_phase(stack.base, model_id, args.duration, args.clients, args.batch)
            )
            print(f"  {predict['requests_per_s']} req/s, p99 {predict['p99_ms']} ms", flush=True)
        tiny_params = {"epochs": 1, "branches": 1, "diffusion_epochs": 1, "max_length": 32, "batch_size": 16}
        tiny_params["backbone"] = "tiny"
        if "burst" in phases:
            print("burst phase ...", flush=True)
            burst = _burst_phase(stack.base, tiny_ds, tiny_params, args.duration, args.burst)
            print(f"  {burst['accepted']} accepted, {burst['lost']} lost", flush=True)
        slow_params = {
            "epochs": 50,
            "branches": 1,
            "diffusion_epochs": 100,
            "max_length": 32,
            "batch_size": 4,
        }
        slow_params["backbone"] = "tiny"
        if "status" in phases:
            print("status-read phase ...", flush=True)
            reads = _status_phase(stack.base, slow_ds, slow_params, args.duration, args.read_rate)
    except BaseException:
        print(stack.tail(), file=sys.stderr)
        raise
    finally:
        stack.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    results = {
        "benchmark": "load",
        "date": started_at,
        "mode": f"celery: redis-server (AOF, everysec) + {args.workers} sidyp worker (solo pool) + 1 sidyp serve "
        "(uvicorn, 1 process), all on loopback; load generator in the same machine",
        "duration_per_phase_s": args.duration,
        "machine": machine,
        "setup": {
            "predict_model": "bundled all-MiniLM-L6-v2, trained through the service",
            "setup_seconds": round(setup_s, 1),
        },
        "settings": {
            "SIDYP_MAX_QUEUED_JOBS": args.max_queued_jobs,
            "SIDYP_TORCH_THREADS": args.worker_torch_threads,
            "SIDYP_PREDICT_CONCURRENCY": "0 (one forward pass per core, one torch thread each)",
        },
        "predict": predict,
        "burst": burst,
        "status_reads": reads,
    }
    targets = {}
    if predict is not None:
        targets["predict_zero_errors"] = predict["errors"] == 0
    if burst is not None:
        targets["burst_only_202_or_429"] = burst["other_answers"] == 0
        targets["burst_none_lost_all_succeeded"] = (
            burst["lost"] == 0 and burst["unfinished"] == 0 and burst["succeeded"] == burst["accepted"]
        )
    if reads is not None:
        targets["status_reads_p99_under_50ms"] = reads["p99_ms"] is not None and reads["p99_ms"] < 50.0
        targets["status_reads_zero_errors"] = reads["errors"] == 0
    results["targets"] = targets
    print()
    print(_table(results))
    print("targets:", json.dumps(results["targets"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0 if all(results["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
