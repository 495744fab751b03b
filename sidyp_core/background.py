"""Background duties, in one daemon thread: say the worker is alive, and reap lost jobs.

Workers run it with the heartbeat; the API process runs it without (beat=False), so lost jobs are handled
even while every worker is busy or gone.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from sidyp_core.config import Settings
from sidyp_core.dispatch import make_queue_probe
from sidyp_core.reaper import reap, requeue_orphans
from sidyp_core.store import JobStore

log = logging.getLogger("sidyp.background")


def make_worker_id(kind: str) -> str:
    return f"{kind}@{socket.gethostname()}:{os.getpid()}"


class BackgroundDuties:
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
