"""The embedded worker: claims queued jobs from the SQLite store and runs them, one at a time.

`sidyp serve` starts one in a spawned process (no fork: a GPU worker must not inherit a CUDA context);
`sidyp worker` without SIDYP_REDIS_URL runs the same loop in the foreground.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

from sidyp_core.background import BackgroundDuties, make_worker_id
from sidyp_core.config import Settings
from sidyp_core.store import make_store
from worker.priority import lower_priority
from worker.runner import JobRunner

log = logging.getLogger("sidyp.worker")


def run_worker_loop(
    settings: Settings, parent_pid: int | None = None, stop: threading.Event | None = None
) -> None:
    stop = stop or threading.Event()
    lower_priority(settings)
    store = make_store(settings)
    worker_id = make_worker_id("embedded")
    runner = JobRunner(settings, store, worker_id, shutdown=stop, requeue=store.enqueue)
    background = BackgroundDuties(settings, store, worker_id, store.enqueue, info={"kind": "embedded"})
    background.start()
    log.info("embedded worker %s polling %s", worker_id, settings.data_dir)
    try:
        while not stop.is_set():
            if parent_pid is not None and os.getppid() != parent_pid:
                log.warning("the server that started this worker is gone; exiting")
                break
            job_id = store.claim_next()
            if job_id is None:
                stop.wait(0.3)
                continue
            outcome = runner.run(job_id)
            log.info("job %s: %s", job_id, outcome)
    finally:
        background.stop()
        store.close()


def worker_process_main(settings_json: str, parent_pid: int) -> None:
    """Entry of the spawned process started by `sidyp serve`."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.model_validate_json(settings_json)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server handles Ctrl-C and stops us with SIGTERM
    run_worker_loop(settings, parent_pid=parent_pid, stop=stop)
