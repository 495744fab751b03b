"""`sidyp worker`: with SIDYP_REDIS_URL, a Celery worker (solo pool by default: no fork, so a GPU worker never
inherits a CUDA context); without, the embedded worker loop in the foreground.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time

from sidyp_cli.serve import load_settings


def add_worker_command(subparsers) -> None:
    parser = subparsers.add_parser("worker", help="run a worker (Celery with SIDYP_REDIS_URL, else embedded)")
    parser.add_argument("--pool", default="solo", choices=["solo", "prefork", "threads"])
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--loglevel", default="INFO")
    parser.set_defaults(func=cmd_worker)


def cmd_worker(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.loglevel.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings()
    if settings.embedded:
        import signal

        from worker.embedded import run_worker_loop

        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        run_worker_loop(settings, stop=stop)
        return 0
    from sidyp_core.dispatch import QUEUE
    from worker.priority import lower_priority
    from worker.tasks import celery_app

    lower_priority(settings)

    name = f"sidyp-{os.getpid()}-{int(time.time())}@%h"
    celery_app.worker_main(
        [
            "worker",
            f"--pool={args.pool}",
            f"--concurrency={args.concurrency}",
            f"--loglevel={args.loglevel}",
            "-n",
            name,
            "-Q",
            QUEUE,
            "--without-gossip",
            "--without-mingle",
        ]
    )
    return 0
