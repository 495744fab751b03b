"""A tqdm bar per job stage for `jobs.wait()`: the server's `progress.fraction` is within the stage, so
one bar per stage (filled when the next stage starts) says more than one bar that jumps back to zero."""

from __future__ import annotations

import sys
from typing import TextIO

from sidyp_client.types import Job

# Stages after which no bar is drawn: the job is over.
_END_STAGES = {"succeeded", "failed", "cancelled"}
# No rate or ETA: a stage's fraction does not advance at a steady pace, so both would mislead.
_BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar}| {elapsed}{postfix}"


class StageBars:
    def __init__(self, enabled: bool = True, file: TextIO | None = None):
        self.enabled = enabled
        self.file = file or sys.stderr
        self._bar = None
        self._stage: str | None = None
        self.stages_seen: list[str] = []

    def update(self, job: Job) -> None:
        stage = job.progress.stage
        if stage != self._stage:
            self._finish_bar(complete=True)
            self._stage = stage
            self.stages_seen.append(stage)
            if self.enabled and stage not in _END_STAGES:
                from tqdm import tqdm

                self._bar = tqdm(
                    total=100,
                    desc=f"{stage:<10}",
                    bar_format=_BAR_FORMAT,
                    file=self.file,
                    leave=True,
                    dynamic_ncols=True,
                )
        if self._bar is not None:
            self._bar.n = round(100 * min(max(job.progress.fraction, 0.0), 1.0))
            self._bar.set_postfix_str(job.progress.message[:60], refresh=False)
            self._bar.refresh()

    def close(self, job: Job | None = None) -> None:
        self._finish_bar(complete=job is not None and job.status == "succeeded")

    def _finish_bar(self, complete: bool) -> None:
        if self._bar is not None:
            if complete:
                self._bar.n = self._bar.total
                self._bar.refresh()
            self._bar.close()
            self._bar = None
