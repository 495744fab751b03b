"""`sidyp serve`: the API. Without SIDYP_REDIS_URL (embedded mode) it also starts one worker process
(spawned, never forked) that runs jobs from the SQLite store, restarts it if it dies, and creates an API key
under the data dir when none is configured.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys
import threading
from pathlib import Path

from pydantic import SecretStr

API_KEY_FILE = "api_key"
DEFAULT_TENANT = "default"


def add_serve_command(subparsers) -> None:
    serve = subparsers.add_parser("serve", help="run the HTTP API (and, without Redis, an embedded worker)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    serve.add_argument(
        "--no-worker",
        action="store_true",
        help="embedded mode: do not start the worker process (tests, scaling)",
    )
    serve.set_defaults(func=cmd_serve)


def load_settings():
    from pydantic import ValidationError

    from sidyp_core.config import Settings

    try:
        return Settings()
    except ValidationError as exc:
        print(f"sidyp: invalid settings:\n{exc}", file=sys.stderr)
        raise SystemExit(2) from None


def ensure_api_key(settings) -> tuple[object, bool]:
    """Settings with at least one key. Without SIDYP_API_KEYS the key stored under the data dir is used,
    created (0600) on first start. Returns (settings, created)."""
    try:
        if settings.tenant_keys():
            return settings, False
    except ValueError as exc:
        print(f"sidyp: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    path = Path(settings.data_dir) / API_KEY_FILE
    created = False
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pair = f"{DEFAULT_TENANT}:sk-{secrets.token_urlsafe(32)}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(pair + "\n")
        created = True
    pair = path.read_text().strip()
    return settings.model_copy(update={"api_keys": SecretStr(pair)}), created


class EmbeddedWorkerSupervisor:
    """Keeps one spawned worker process running beside the API; restarts it (with back-off) if it dies."""

    def __init__(self, settings):
        import multiprocessing

        self.ctx = multiprocessing.get_context("spawn")
        self.settings_json = settings.model_dump_json()
        self.proc = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="worker-supervisor", daemon=True)

    def _spawn(self) -> None:
        from worker.embedded import worker_process_main

        self.proc = self.ctx.Process(
            target=worker_process_main, args=(self.settings_json, os.getpid()), name="sidyp-embedded-worker"
        )
        self.proc.start()
        logging.getLogger("sidyp").info("embedded worker started (pid %s)", self.proc.pid)

    def start(self) -> None:
        self._spawn()
        self._thread.start()

    def _watch(self) -> None:
        backoff = 1.0
        while not self._stop.wait(1.0):
            if self.proc is not None and not self.proc.is_alive():
                logging.getLogger("sidyp").warning(
                    "embedded worker exited (code %s); restarting in %.0fs", self.proc.exitcode, backoff
                )
                if self._stop.wait(backoff):
                    return
                backoff = min(backoff * 2, 30.0)
                self._spawn()
            else:
                backoff = 1.0

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        if self.proc is not None and self.proc.is_alive():
            self.proc.terminate()  # SIGTERM: a running job is re-queued at its next batch
            self.proc.join(timeout)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join(5)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.main import create_app

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings, created = ensure_api_key(settings)
    if created:
        tenant, _, key = settings.api_keys.get_secret_value().partition(":")
        # Printed once, when it is created; afterwards it is only in the 0600 file.
        print(
            f"sidyp: created an API key for tenant '{tenant}' (stored in {settings.data_dir / API_KEY_FILE}):\n"
            f"    {key}",
            flush=True,
        )
    elif not os.environ.get("SIDYP_API_KEYS"):
        print(f"sidyp: using the API key stored in {settings.data_dir / API_KEY_FILE}", flush=True)
    mode = "embedded (SQLite, worker process)" if settings.embedded else "celery (Redis)"
    print(f"sidyp: {mode}; data dir {settings.data_dir}; http://{args.host}:{args.port}", flush=True)
    app = create_app(settings)
    supervisor = None
    if settings.embedded and not args.no_worker:
        supervisor = EmbeddedWorkerSupervisor(settings)
        supervisor.start()
    try:
        uvicorn.run(
            app,
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            # Access logs carry paths and status codes only; the Authorization header is never logged.
            access_log=args.log_level == "debug",
            reload=False,
        )
    finally:
        if supervisor is not None:
            supervisor.stop()
    return 0
