"""A finished job's labels for review: filtered, ordered pages and CSV exports, reviewers' decisions, and
"save as dataset" (the corrected labels as a new dataset, the reviewed rows marked trusted)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from app.api.deps import JobDep, SettingsDep, StoreDep, TenantDep
from app.api.routes.common import page_limit
from app.schemas import (
    Dataset,
    LabelItem,
    LabelPage,
    ListResponse,
    Review,
    ReviewedDatasetRequest,
    ReviewRequest,
    ReviewResult,
)
from app.services.datasets import store_dataset
from app.services.datasets import to_public as public_dataset
from app.services.labels import (
    LabelFilter,
    LabelsView,
    Order,
    corrected_labels,
    decide,
    key_id,
    load_view,
    reviewed_dataset_columns,
    reviewed_dataset_record,
    select_page,
)
from app.services.outputs import output_path, require_succeeded
from sidyp_core.artifacts import DATASET_FILE, LABELS_FILE, artifact_dir, read_json, write_json
from sidyp_core.ids import new_id
from sidyp_core.jobs import JobRecord
from sidyp_core.store import utc_now_iso
from sidyp_engine.labels import iter_labels_csv, label_item

router = APIRouter(prefix="/v1/jobs", tags=["labels"])

Flag = Annotated[bool | None, Query(description="only rows flagged (true) or not flagged (false)")]
ClassName = Annotated[str | None, Query(max_length=200)]


def _view(settings, job: JobRecord) -> LabelsView:
    # Checked here, not in a dependency, so a bad query parameter is still a 422 whatever the job's state.
    require_succeeded(job)
    return load_view(output_path(settings, job, LABELS_FILE))


@router.get(
    "/{job_id}/labels",
    response_model=LabelPage,
    summary="Per-row labels (every uploaded row), filtered and ordered; JSON pages or a CSV export",
    responses={200: {"content": {"text/csv": {}}}},
)
def job_labels(
    job: JobDep,
    settings: SettingsDep,
    store: StoreDep,
    tenant: TenantDep,
    limit: Annotated[int | None, Query(ge=1, description="page size")] = None,
    after: Annotated[int, Query(ge=-1, le=2**31 - 1, description="next_cursor of the previous page")] = -1,
    order: Annotated[
        Order,
        Query(
            description="label_quality: worst first; random: one fixed shuffle (a random sample to review)"
        ),
    ] = "index",
    is_label_issue: Flag = None,
    given_label: ClassName = None,
    suggested_label: ClassName = None,
    q: Annotated[str | None, Query(max_length=200, description="case-insensitive text search")] = None,
    reviewed: Annotated[bool | None, Query(description="only rows with (true) or without a decision")] = None,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
    corrected: Annotated[bool, Query(description="CSV: add the reviewers' decisions as corrected_label")] = (
        False
    ),
):
    job_id = job.id
    view = _view(settings, job)
    decided = store.reviewed_rows(tenant, job_id) if reviewed is not None else set()
    keep = LabelFilter(is_label_issue, given_label, suggested_label, q, reviewed).mask(view, decided)
    if format == "csv":
        rows = select_page(view, keep, order, after, None).indices
        decisions = corrected_labels(store.list_reviews(tenant, job_id)) if corrected else None
        return StreamingResponse(
            iter_labels_csv(view.table, rows, decisions),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{job_id}-labels.csv"'},
        )
    page = select_page(view, keep, order, after, page_limit(limit, settings.max_page_size, default=100))
    reviews = {r["index"]: r for r in store.list_reviews(tenant, job_id, page.indices)}
    items = [LabelItem(**label_item(view.table, i), review=reviews.get(i)) for i in page.indices]
    return LabelPage(
        data=items,
        has_more=page.has_more,
        next_cursor=page.indices[-1] if page.has_more else None,
        total=page.total,
    )


@router.post(
    "/{job_id}/reviews",
    response_model=ReviewResult,
    summary="Save review decisions (accept the suggestion, keep the given label, or set a class); "
    "a row reviewed again keeps only its latest decision",
)
def save_reviews(
    job: JobDep,
    body: ReviewRequest,
    request: Request,
    settings: SettingsDep,
    store: StoreDep,
    tenant: TenantDep,
) -> ReviewResult:
    job_id = job.id
    view = _view(settings, job)
    saved = decide(view, body.reviews, utc_now_iso(), key_id(request.headers.get("authorization", "")))
    store.put_reviews(tenant, job_id, saved)
    return ReviewResult(
        data=[Review(**r) for r in saved], n_reviewed=len(store.reviewed_rows(tenant, job_id))
    )


@router.get("/{job_id}/reviews", response_model=ListResponse[Review], summary="Review decisions, by row")
def list_reviews(
    job: JobDep,
    settings: SettingsDep,
    store: StoreDep,
    tenant: TenantDep,
    limit: Annotated[int | None, Query(ge=1, description="page size")] = None,
    after: Annotated[int, Query(ge=-1, le=2**31 - 1, description="index of the last row already seen")] = -1,
) -> ListResponse[Review]:
    job_id = job.id
    size = page_limit(limit, settings.max_page_size, default=100)
    later = [r for r in store.list_reviews(tenant, job_id) if r["index"] > after]
    return ListResponse[Review](data=[Review(**r) for r in later[:size]], has_more=len(later) > size)


@router.post(
    "/{job_id}/reviews/dataset",
    status_code=201,
    response_model=Dataset,
    summary="Save as dataset: the corrected labels as a new dataset, reviewed rows marked trusted",
)
def save_reviewed_dataset(
    job: JobDep,
    body: ReviewedDatasetRequest,
    response: Response,
    settings: SettingsDep,
    store: StoreDep,
    tenant: TenantDep,
) -> Dataset:
    job_id = job.id
    view = _view(settings, job)
    reviews = store.list_reviews(tenant, job_id)
    columns = reviewed_dataset_columns(view, reviews, _source_gold(settings, store, tenant, job))
    dataset_id = new_id("dataset")
    name = body.name if body.name is not None else f"{job_id} reviewed"
    record = reviewed_dataset_record(view, columns, dataset_id, tenant, name, job_id, len(reviews))
    store_dataset(settings, store, record, lambda tmp: write_json(tmp / DATASET_FILE, columns))
    response.headers["Location"] = f"/v1/datasets/{dataset_id}"
    return public_dataset(record)


def _source_gold(settings, store, tenant: str, job: JobRecord) -> list[str | None] | None:
    """The gold labels of the job's dataset, when it still exists (gold is never changed by a review)."""
    if store.get("dataset", job.dataset_id, tenant) is None:
        return None
    try:
        data = read_json(artifact_dir(settings.data_dir, tenant, "datasets", job.dataset_id) / DATASET_FILE)
    except FileNotFoundError:
        return None
    return data.get("gold_label")
