"""Storing and removing uploaded datasets: the artifact folder first, then the record."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from app.datasets import parse_upload, save_dataset_files
from app.errors import ProblemError
from app.schemas import Dataset
from sidyp_core.artifacts import artifact_dir, remove_artifact, write_artifact
from sidyp_core.config import Settings
from sidyp_core.ids import new_id
from sidyp_core.store import JobStore, utc_now_iso

PUBLIC_FIELDS = set(Dataset.model_fields)


def to_public(record: dict) -> Dataset:
    return Dataset(**{k: v for k, v in record.items() if k in PUBLIC_FIELDS})


def create_dataset(
    settings: Settings,
    store: JobStore,
    tenant: str,
    raw: bytes,
    filename: str | None,
    name: str | None,
    text_column: str,
    label_column: str,
    labels: str | None,
) -> dict:
    parsed = parse_upload(raw, filename, text_column, label_column, labels, settings)
    dataset_id = new_id("dataset")
    record = {
        "id": dataset_id,
        "object": "dataset",
        "tenant": tenant,
        "name": name if name is not None else (filename or None),
        "n_rows": len(parsed.texts),
        "labels": parsed.labels,
        "label_counts": parsed.label_counts,
        "n_missing_labels": parsed.n_missing,
        "has_gold": parsed.has_gold,
        "created_at": utc_now_iso(),
        "format": parsed.format,
        "text_column": text_column,
        "label_column": label_column,
    }
    return store_dataset(settings, store, record, lambda tmp: save_dataset_files(tmp, parsed))


def store_dataset(
    settings: Settings, store: JobStore, record: dict, write_files: Callable[[Path], None]
) -> dict:
    """The files first (atomically), then the record; nothing stays behind when either fails."""
    folder = artifact_dir(settings.data_dir, record["tenant"], "datasets", record["id"])
    try:
        write_artifact(folder, write_files)
    except OSError as exc:
        raise ProblemError(
            503, "The dataset could not be stored; try again later.", slug="storage-error"
        ) from exc
    try:
        store.put("dataset", record)
    except Exception:
        remove_artifact(folder)
        raise
    return record


def delete_dataset(settings: Settings, store: JobStore, tenant: str, dataset_id: str) -> bool:
    if not store.delete("dataset", dataset_id, tenant):
        return False
    remove_artifact(artifact_dir(settings.data_dir, tenant, "datasets", dataset_id))
    return True
