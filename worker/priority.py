"""Workers yield the CPU to the API they share a host with."""

from __future__ import annotations

import logging
import os

from sidyp_core.config import Settings

log = logging.getLogger("sidyp.worker")


def lower_priority(settings: Settings) -> None:
    """Training is batch work: when a worker shares the CPU with the API (always so in the embedded mode), the
    scheduler should prefer the API's short requests over the next training batch."""
    if settings.worker_nice and hasattr(os, "nice"):
        try:
            os.nice(settings.worker_nice)
        except OSError:
            log.warning("could not lower the worker's CPU priority", exc_info=True)
