"""Artifact folders under the data dir: DATA_DIR/<tenant>/<kind>/<id>/, always written atomically.

A folder is built under a temporary name in the same parent, every file is fsynced, then the folder is
renamed into place: a reader sees either no folder or a complete one, never a half-written artifact.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sidyp_core.config import TENANT_RE
from sidyp_core.ids import is_valid_id

KINDS = {"datasets": "dataset", "jobs": "job", "models": "model"}


def artifact_dir(data_dir: Path, tenant: str, kind: str, resource_id: str) -> Path:
    """The folder of one artifact. Refuses anything that is not a valid tenant name and id of that kind."""
    if kind not in KINDS:
        raise ValueError(f"unknown artifact kind {kind!r}")
    if not TENANT_RE.fullmatch(tenant) or not is_valid_id(resource_id, KINDS[kind]):
        raise ValueError("invalid tenant or id")
    return Path(data_dir) / tenant / kind / resource_id


def job_work_dir(data_dir: Path, tenant: str, job_id: str) -> Path:
    """A job's checkpoint folder: beside its output folder, which is replaced atomically at the end."""
    return artifact_dir(data_dir, tenant, "jobs", job_id).parent.parent / "work" / job_id


def tenant_bytes(data_dir: Path, tenant: str) -> int:
    """Bytes the tenant's files take under the data dir (datasets, job outputs, checkpoints, models)."""
    if not TENANT_RE.fullmatch(tenant):
        raise ValueError("invalid tenant")
    total = 0
    for dirpath, _dirs, files in os.walk(Path(data_dir) / tenant):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except FileNotFoundError:
                pass  # removed while we walked
    return total


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_artifact(final_dir: Path, fill: Callable[[Path], None], replace: bool = False) -> Path:
    """Create `final_dir` atomically: `fill(tmp_dir)` writes the files, then one rename publishes them."""
    final_dir = Path(final_dir)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = final_dir.parent / f".tmp-{final_dir.name}-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        fill(tmp)
        _fsync_tree(tmp)
        if final_dir.exists():
            if not replace:
                raise FileExistsError(str(final_dir))
            old = final_dir.parent / f".old-{final_dir.name}-{uuid.uuid4().hex}"
            os.rename(final_dir, old)
            os.rename(tmp, final_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, final_dir)
        _fsync_dir(final_dir.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final_dir


def write_json(path: Path, obj: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def remove_artifact(path: Path) -> None:
    """Delete by renaming away first, so a concurrent reader never sees a half-deleted folder."""
    if not path.exists():
        return
    trash = path.parent / f".del-{path.name}-{uuid.uuid4().hex}"
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


# File names inside the artifact folders.
DATASET_FILE = (
    "data.json"  # datasets/<id>/: {"text": [...], "noisy_label": [...], "gold_label": [...] | null}
)
LABELS_FILE = "labels.json"  # jobs/<id>/: per-row outputs, in upload order
REPORT_FILE = "report.json"  # jobs/<id>/: the job report
