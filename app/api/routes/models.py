"""Calibrated models produced by jobs: list, read, delete, predict."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from app.api import deps
from app.api.deps import ModelDep, SettingsDep, StoreDep, TenantDep
from app.api.routes.common import check_cursor, check_id, page_limit
from app.errors import not_found
from app.schemas import ListResponse, Model, PredictRequest, PredictResponse
from app.services import models as service

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", response_model=ListResponse[Model], summary="List models, newest first")
def list_models(
    settings: SettingsDep,
    store: StoreDep,
    tenant: TenantDep,
    limit: Annotated[int | None, Query(ge=1, description="page size")] = None,
    after: Annotated[str | None, Query(max_length=64)] = None,
) -> ListResponse[Model]:
    docs, more = store.list(
        "model", tenant, page_limit(limit, settings.max_page_size), check_cursor(after, "model")
    )
    return ListResponse[Model](data=[service.to_public(d) for d in docs], has_more=more)


@router.get("/{model_id}", response_model=Model)
async def get_model(model: ModelDep) -> Model:
    return service.to_public(model)


@router.delete("/{model_id}", status_code=204, response_class=Response)
def delete_model(model_id: str, settings: SettingsDep, store: StoreDep, tenant: TenantDep) -> Response:
    if not service.delete_model(settings, store, tenant, check_id(model_id, "model")):
        raise not_found("model")
    return Response(status_code=204)


@router.post(
    "/{model_id}/predict", response_model=PredictResponse, summary="Calibrated P(y | x) for up to 1000 texts"
)
def predict(
    model_id: str, body: PredictRequest, settings: SettingsDep, store: StoreDep, tenant: TenantDep
) -> PredictResponse:
    # Not ModelDep: a dependency would answer 404 before FastAPI validates the body, and a malformed body
    # answers 422 whichever model it names.
    model = deps.get_model(model_id, store, tenant)
    return service.predict(settings, tenant, model["id"], body.texts)
