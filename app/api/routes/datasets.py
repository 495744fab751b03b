"""Datasets: upload (CSV or JSON Lines), read, list, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Header, Query, Response, UploadFile

from app.api.deps import DatasetDep, SettingsDep, StoreDep, TenantDep
from app.api.routes.common import check_cursor, check_id, page_limit
from app.errors import not_found, problems
from app.schemas import Dataset, ListResponse
from app.services import datasets as service
from app.services import idempotency

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


@router.post(
    "",
    status_code=201,
    response_model=Dataset,
    summary="Upload a dataset labelled by an LLM",
    responses=problems(413, 422, 429, 503),
)
def upload_dataset(
    settings: SettingsDep,
    store: StoreDep,
    tenant: TenantDep,
    file: Annotated[
        UploadFile,
        File(description="CSV (comma, semicolon or tab separated) with a header row, or JSON Lines"),
    ],
    name: Annotated[str | None, Form(max_length=200)] = None,
    text_column: Annotated[str, Form(min_length=1, max_length=200)] = "text",
    label_column: Annotated[str, Form(min_length=1, max_length=200)] = "noisy_label",
    labels: Annotated[str | None, Form(max_length=100_000, description="JSON array of class names")] = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            pattern=idempotency.KEY_PATTERN,
            description="retrying with the same key and upload returns the first answer and stores nothing new",
        ),
    ] = None,
):
    raw = file.file.read(settings.max_upload_bytes + 1)

    def run() -> idempotency.Answer:
        record = service.create_dataset(
            settings, store, tenant, raw, file.filename, name, text_column, label_column, labels
        )
        body = service.to_public(record).model_dump(mode="json")
        return 201, body, {"Location": f"/v1/datasets/{record['id']}"}

    request_print = idempotency.fingerprint(raw, file.filename, name, text_column, label_column, labels)
    return idempotency.respond(store, tenant, "datasets", idempotency_key, request_print, run)


@router.get(
    "", response_model=ListResponse[Dataset], summary="List datasets, newest first", responses=problems(422)
)
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
    return ListResponse[Dataset](data=[service.to_public(d) for d in docs], has_more=more)


@router.get("/{dataset_id}", response_model=Dataset, responses=problems(404))
async def get_dataset(dataset: DatasetDep) -> Dataset:
    return service.to_public(dataset)


@router.delete(
    "/{dataset_id}",
    status_code=204,
    response_class=Response,
    summary="Delete a dataset; the labels of finished jobs trained on it go too (409 while one runs)",
    responses=problems(404, 409),
)
def delete_dataset(dataset_id: str, settings: SettingsDep, store: StoreDep, tenant: TenantDep) -> Response:
    if not service.delete_dataset(settings, store, tenant, check_id(dataset_id, "dataset")):
        raise not_found("dataset")
    return Response(status_code=204)
