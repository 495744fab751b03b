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
import json
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.load_phases import burst_phase, predict_phase, status_phase
from benchmarks.load_report import table, targets
from benchmarks.load_stack import (
    REPO,
    Stack,
    client,
    dataset_csv,
    machine_info,
    tiny_backbone,
    upload,
    wait_final,
)

# The served model of the predict phase: the bundled MiniLM, trained through the service as a client would.
SETUP_PARAMS = {"epochs": 1, "branches": 1, "diffusion_epochs": 2, "max_length": 64, "batch_size": 16}
# Burst jobs on the tiny backbone: about a second each.
TINY_PARAMS = {"epochs": 1, "branches": 1, "diffusion_epochs": 1, "max_length": 32, "batch_size": 16}
# The status-read phase's job on the tiny backbone: long enough to stay `running` while it is read.
SLOW_PARAMS = {"epochs": 50, "branches": 1, "diffusion_epochs": 100, "max_length": 32, "batch_size": 4}


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
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
    return ap.parse_args(argv)


def _start_stack(root: Path, args: argparse.Namespace, tiny: Path) -> Stack:
    env = {
        "SIDYP_BACKBONES": f"tiny={tiny}",
        "SIDYP_MAX_QUEUED_JOBS": str(args.max_queued_jobs),
        # The worker shares the cores with the API and the load generator: one torch thread keeps it from
        # busy-waiting against them (docs/method.md, "Measurements behind code constants").
        "SIDYP_TORCH_THREADS": str(args.worker_torch_threads),
    }
    return Stack(root, args.workers, env)


def _setup(stack: Stack, root: Path) -> dict:
    """Train the served model and upload the phases' datasets; returns their ids and the setup time."""
    with client(stack.base) as c:
        t0 = time.perf_counter()
        ds = upload(c, dataset_csv(root / "train.csv", 40, seed=0))
        job = c.post("/v1/jobs", json={"dataset_id": ds, "params": SETUP_PARAMS}).json()
        job = wait_final(c, job["id"], 900)
        if job["status"] != "succeeded":
            raise SystemExit(f"setup job failed: {job}\n{stack.tail()}")
        model_id = job["model_id"]
        setup_s = time.perf_counter() - t0
        c.post(f"/v1/models/{model_id}/predict", json={"texts": ["warm up"]}).raise_for_status()
        tiny_ds = upload(c, dataset_csv(root / "tiny.csv", 10, seed=1))
        slow_ds = upload(c, dataset_csv(root / "slow.csv", 150, seed=2))
    print(f"model {model_id} trained with MiniLM in {setup_s:.0f}s", flush=True)
    return {"model_id": model_id, "setup_s": setup_s, "tiny_ds": tiny_ds, "slow_ds": slow_ds}


def _run_phases(stack: Stack, args: argparse.Namespace, setup: dict, tiny: Path) -> dict:
    phases = set(args.phases.split(","))
    out: dict = {"predict": None, "burst": None, "status_reads": None}
    if "predict" in phases:
        print("predict phase ...", flush=True)
        out["predict"] = p = asyncio.run(
            predict_phase(stack.base, setup["model_id"], args.duration, args.clients, args.batch)
        )
        print(f"  {p['requests_per_s']} req/s, p99 {p['p99_ms']} ms", flush=True)
    if "burst" in phases:
        print("burst phase ...", flush=True)
        params = {**TINY_PARAMS, "backbone": "tiny"}
        out["burst"] = b = burst_phase(stack.base, setup["tiny_ds"], params, args.duration, args.burst)
        print(f"  {b['accepted']} accepted, {b['lost']} lost", flush=True)
    if "status" in phases:
        print("status-read phase ...", flush=True)
        params = {**SLOW_PARAMS, "backbone": "tiny"}
        out["status_reads"] = status_phase(
            stack.base, setup["slow_ds"], params, args.duration, args.read_rate
        )
    return out


def _results(args: argparse.Namespace, started_at: str, machine: dict, setup: dict, phases: dict) -> dict:
    return {
        "benchmark": "load",
        "date": started_at,
        "mode": f"celery: redis-server (AOF, everysec) + {args.workers} sidyp worker (solo pool) + 1 sidyp serve "
        "(uvicorn, 1 process), all on loopback; load generator in the same machine",
        "duration_per_phase_s": args.duration,
        "machine": machine,
        "setup": {
            "predict_model": "bundled all-MiniLM-L6-v2, trained through the service",
            "setup_seconds": round(setup["setup_s"], 1),
        },
        "settings": {
            "SIDYP_MAX_QUEUED_JOBS": args.max_queued_jobs,
            "SIDYP_TORCH_THREADS": args.worker_torch_threads,
            "SIDYP_PREDICT_CONCURRENCY": "0 (one forward pass per core, one torch thread each)",
        },
        **phases,
        "targets": targets(phases["predict"], phases["burst"], phases["status_reads"]),
    }


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="sidyp-load-"))
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    machine = machine_info()
    backbones = root / "backbones"
    tiny = tiny_backbone(backbones / "tiny")
    stack = _start_stack(root, args, tiny)
    try:
        stack.wait_ready()
        print(
            f"service up at {stack.base} (Celery mode, {args.workers} worker(s)); data in {root}", flush=True
        )
        setup = _setup(stack, root)
        phases = _run_phases(stack, args, setup, tiny)
    except BaseException:
        print(stack.tail(), file=sys.stderr)
        raise
    finally:
        stack.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    results = _results(args, started_at, machine, setup, phases)
    print()
    print(table(results))
    print("targets:", json.dumps(results["targets"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0 if all(results["targets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
