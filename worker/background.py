"""A worker's background duties, in one daemon thread: say it is alive, and reap lost jobs."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from app.core.config import Settings
from app.store import JobStore
from worker.dispatch import make_queue_probe
from worker.reaper import reap, requeue_orphans

log = logging.getLogger("sidyp.worker")


def lower_priority(settings: Settings) -> None:
    """Training is batch work: when a worker shares the CPU with the API (always so in the embedded mode), the
    scheduler should prefer the API's short requests over the next training batch."""
    if settings.worker_nice and hasattr(os, "nice"):
        try:
            os.nice(settings.worker_nice)
        except OSError:
            log.warning("could not lower the worker's CPU priority", exc_info=True)


def make_worker_id(kind: str) -> str:
    return f"{kind}@{socket.gethostname()}:{os.getpid()}"


class WorkerBackground:
    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        worker_id: str,
        enqueue: Callable[[str], None],
        info: dict | None = None,
        beat: bool = True,
    ):
        self.settings = settings
        self.store = store
        self.worker_id = worker_id
        self.enqueue = enqueue
        self.info = info or {}
        self.beat = beat
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._probe: Callable[[str], bool] | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="sidyp-background", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.beat:
            try:
                self.store.worker_gone(self.worker_id)
            except Exception:
                pass

    def _loop(self) -> None:
        next_reap = 0.0
        while not self._stop.is_set():
            try:
                if self.beat:
                    self.store.worker_beat(self.worker_id, self.info)
                if time.monotonic() >= next_reap:
                    next_reap = time.monotonic() + self.settings.reaper_interval_seconds
                    reap(self.store, self.settings, self.enqueue)
                    if self._probe is None:
                        self._probe = make_queue_probe(self.settings, self.store)
                    requeue_orphans(self.store, self.settings, self.enqueue, self._probe)
            except Exception:
                log.exception("background pass failed; retrying")
            self._stop.wait(
                min(self.settings.heartbeat_interval_seconds, self.settings.reaper_interval_seconds)
            )
