"""`sidyp healthcheck api|worker`: the container healthchecks (Dockerfile HEALTHCHECK, compose).

`api` asks GET /healthz on SIDYP_URL (default http://127.0.0.1:8000). `worker` reads the worker
heartbeats in the store: exit 0 when a worker on this host (or any worker, with --any) beat within
SIDYP_WORKER_ALIVE_SECONDS. Unlike Celery's `inspect ping`, a heartbeat keeps coming while a solo-pool
worker runs a job (its own thread writes it), so a busy worker stays healthy.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys

DEFAULT_URL = "http://127.0.0.1:8000"


def add_healthcheck_command(subparsers) -> None:
    p = subparsers.add_parser("healthcheck", help="exit 0 when the API answers or a worker beats")
    which = p.add_subparsers(dest="target", required=True)
    api = which.add_parser("api", help="GET /healthz on SIDYP_URL (or --url)")
    api.add_argument("--url", default=None, help=f"base URL (default: SIDYP_URL or {DEFAULT_URL})")
    api.add_argument("--timeout", type=float, default=5.0)
    api.set_defaults(func=check_api)
    worker = which.add_parser("worker", help="a fresh worker heartbeat in the store")
    worker.add_argument("--any", action="store_true", help="any worker's heartbeat, not only this host's")
    worker.set_defaults(func=check_worker)


def check_api(args: argparse.Namespace) -> int:
    import httpx

    base = (args.url or os.environ.get("SIDYP_URL") or DEFAULT_URL).rstrip("/")
    try:
        status = httpx.get(base + "/healthz", timeout=args.timeout).status_code
    except httpx.HTTPError as exc:
        print(f"sidyp healthcheck api: {base} did not answer ({type(exc).__name__})", file=sys.stderr)
        return 1
    if status != 200:
        print(f"sidyp healthcheck api: {base}/healthz answered {status}", file=sys.stderr)
        return 1
    print(f"sidyp healthcheck api: ok ({base})")
    return 0


def on_host(worker_id: str, host: str) -> bool:
    # Worker ids are '<kind>@<hostname>:<pid>' (sidyp_core.background.make_worker_id).
    return worker_id.partition("@")[2].rpartition(":")[0] == host


def check_worker(args: argparse.Namespace) -> int:
    from sidyp_cli.serve import load_settings
    from sidyp_core.store import make_store

    settings = load_settings()
    try:
        store = make_store(settings)
        workers = store.live_workers(settings.worker_alive_seconds)
        store.close()
    except Exception as exc:  # noqa: BLE001 - any store failure means unhealthy, said in one line
        print(f"sidyp healthcheck worker: the store did not answer ({type(exc).__name__})", file=sys.stderr)
        return 1
    host = socket.gethostname()
    fresh = [w["id"] for w in workers if args.any or on_host(w["id"], host)]
    if not fresh:
        where = "any host" if args.any else f"host {host}"
        print(
            f"sidyp healthcheck worker: no worker on {where} beat in the last "
            f"{settings.worker_alive_seconds:g} s",
            file=sys.stderr,
        )
        return 1
    print(f"sidyp healthcheck worker: ok ({', '.join(sorted(fresh))})")
    return 0
