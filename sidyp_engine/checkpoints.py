"""Stage checkpoints in a work dir, so that a re-delivered job resumes where it stopped.

Each stage is stored as `<stage>.safetensors` + `<stage>.json`; the JSON names the hash of the call's
inputs and config (`call_key`) and is written last, so a stage counts as done only once it is complete
and only for the call that wrote it. `Checkpoints.run` wraps a stage: stages themselves know nothing of
checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

CHECKPOINT_FORMAT = 1
T = TypeVar("T")
Stored = tuple[dict[str, torch.Tensor], dict[str, Any]]


def call_key(parts: dict[str, Any]) -> str:
    """A short stable hash of everything that determines a call's results."""
    h = hashlib.sha256()
    h.update(json.dumps(parts, sort_keys=True, default=str).encode())
    return h.hexdigest()[:32]


class Checkpoints:
    """Stage results in `work_dir` (None: nothing is stored), valid only for the call hashing to `key`.

    `stage_keys` gives a stage its own key when it depends on less than the whole call (stage 1 does not
    read the refiner's settings): a call that changes only later settings then reuses it.
    """

    def __init__(
        self, work_dir: str | os.PathLike | None, key: str, stage_keys: dict[str, str] | None = None
    ):
        self.dir = Path(work_dir) if work_dir is not None else None
        self.key = key
        self.stage_keys = dict(stage_keys or {})
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)

    def run(
        self,
        stage: str,
        compute: Callable[[], T],
        encode: Callable[[T], Stored],
        decode: Callable[[dict[str, torch.Tensor], dict[str, Any]], T | None],
    ) -> tuple[T, bool]:
        """(result, reused): the stored result when there is a valid one, else `compute()`, then stored.

        `encode` turns a result into (tensors, JSON data); `decode` turns them back, or returns None when
        the stored result cannot be used (the stage is then computed again).
        """
        stored = self.load(stage)
        if stored is not None:
            restored = decode(*stored)
            if restored is not None:
                return restored, True
        result = compute()
        if self.dir is not None:
            self.save(stage, *encode(result))
        return result, False

    def load(self, stage: str) -> Stored | None:
        if self.dir is None:
            return None
        meta_path, tensor_path = self.dir / f"{stage}.json", self.dir / f"{stage}.safetensors"
        if not (meta_path.is_file() and tensor_path.is_file()):
            return None
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if meta.get("key") != self.key_of(stage) or meta.get("format") != CHECKPOINT_FORMAT:
            return None
        from safetensors.torch import load_file

        return load_file(str(tensor_path)), meta.get("data", {})

    def save(self, stage: str, tensors: dict[str, torch.Tensor], data: dict[str, Any]) -> None:
        if self.dir is None:
            return
        from safetensors.torch import save_file

        tensor_path = self.dir / f"{stage}.safetensors"
        tmp = tensor_path.with_suffix(".safetensors.tmp")
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
        os.replace(tmp, tensor_path)
        # the JSON is written last: a stage counts as done only once its metadata names the key
        meta_path = self.dir / f"{stage}.json"
        meta_tmp = meta_path.with_suffix(".json.tmp")
        meta_tmp.write_text(
            json.dumps({"key": self.key_of(stage), "format": CHECKPOINT_FORMAT, "data": data})
        )
        os.replace(meta_tmp, meta_path)

    def key_of(self, stage: str) -> str:
        return self.stage_keys.get(stage, self.key)

    def served_dir(self, stage: str = "served") -> Path | None:
        """Where a stage that stores a served model keeps it (its checkpoint is only a marker)."""
        return None if self.dir is None else self.dir / stage
