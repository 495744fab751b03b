"""Datasets: upload (CSV or JSON Lines), read, list, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Response, UploadFile

from app.api.deps import SettingsDep, StoreDep, TenantDep
from app.api.routes.common import check_cursor, check_id, page_limit
from app.datasets import parse_upload, save_dataset_files
from app.errors import ProblemError, not_found
from app.schemas import Dataset, ListResponse
from sidyp_core.artifacts import artifact_dir, remove_artifact, write_artifact
from sidyp_core.ids import new_id
from sidyp_core.store import utc_now_iso

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

PUBLIC_FIELDS = set(Dataset.model_fields)


def to_public(record: dict) -> Dataset:
    return Dataset(**{k: v for k, v in record.items() if k in PUBLIC_FIELDS})


@router.post("", status_code=201, response_model=Dataset, summary="Upload a dataset labelled by an LLM")
def upload_dataset(
    settings: SettingsDep,
    store: StoreDep,
    tenant: TenantDep,
    response: Response,
    file: Annotated[UploadFile, File(description="CSV with a header row, or JSON Lines")],
    name: Annotated[str | None, Form(max_length=200)] = None,
    text_column: Annotated[str, Form(min_length=1, max_length=200)] = "text",
    label_column: Annotated[str, Form(min_length=1, max_length=200)] = "noisy_label",
    labels: Annotated[str | None, Form(max_length=100_000, description="JSON array of class names")] = None,
) -> Dataset:
    raw = file.file.read(settings.max_upload_bytes + 1)
    parsed = parse_upload(raw, file.filename, text_column, label_column, labels, settings)
    dataset_id = new_id("dataset")
    record = {
        "id": dataset_id,
        "object": "dataset",
        "tenant": tenant,
        "name": name if name is not None else (file.filename or None),
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
    folder = artifact_dir(settings.data_dir, tenant, "datasets", dataset_id)
    try:
        write_artifact(folder, lambda tmp: save_dataset_files(tmp, parsed))
    except OSError as exc:
        raise ProblemError(
            503, "The dataset could not be stored; try again later.", slug="storage-error"
        ) from exc
    try:
        store.put("dataset", record)
    except Exception:
        remove_artifact(folder)  # nothing stays behind when the record cannot be written
        raise
    response.headers["Location"] = f"/v1/datasets/{dataset_id}"
    return to_public(record)


@router.get("", response_model=ListResponse[Dataset], summary="List datasets, newest first")
def list_datasets(
    settings: SettingsDep,
    store: StoreDep,
    tenant: TenantDep,
    limit: Annotated[int | None, Query(ge=1, description="page size")] = None,
    after: Annotated[str | None, Query(max_length=64)] = None,
) -> ListResponse[Dataset]:
    docs, more = store.list(
        "dataset", tenant, page_limit(limit, settings.max_page_size), check_cursor(after, "dataset")
    )
    return ListResponse[Dataset](data=[to_public(d) for d in docs], has_more=more)


@router.get("/{dataset_id}", response_model=Dataset)
def get_dataset(dataset_id: str, store: StoreDep, tenant: TenantDep) -> Dataset:
    record = store.get("dataset", check_id(dataset_id, "dataset"), tenant)
    if record is None:
        raise not_found("dataset")
    return to_public(record)


@router.delete("/{dataset_id}", status_code=204, response_class=Response)
def delete_dataset(dataset_id: str, settings: SettingsDep, store: StoreDep, tenant: TenantDep) -> Response:
    check_id(dataset_id, "dataset")
    if not store.delete("dataset", dataset_id, tenant):
        raise not_found("dataset")
    remove_artifact(artifact_dir(settings.data_dir, tenant, "datasets", dataset_id))
    return Response(status_code=204)
