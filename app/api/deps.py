"""Request dependencies: settings, the job store, the tenant behind the bearer key, and the resource a
path names (`JobDep`, `ModelDep`, `DatasetDep`: loaded for that tenant, or 404)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from app.api.routes.common import check_id
from app.errors import ProblemError, not_found
from sidyp_core.config import Settings
from sidyp_core.jobs import JobLedger, JobRecord
from sidyp_core.store import JobStore


# These dependencies only read app state (and compare a few keys): `async def` runs them on the event loop. As
# plain `def`, FastAPI sent each to the thread pool: two extra thread hops per request, a large share of a
# status read's API CPU (docs/method.md, "Measurements behind code constants").
async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_store(request: Request) -> JobStore:
    return request.app.state.store


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(
        401, detail, slug="unauthorized", headers={"WWW-Authenticate": 'Bearer realm="sidyp"'}
    )


async def get_tenant(request: Request) -> str:
    """The tenant owning the presented key. Every configured key is compared, in constant time each,
    so the answer's timing says nothing about which key (or how much of it) matched."""
    header = request.headers.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise _unauthorized("Missing bearer key: send 'Authorization: Bearer <key>'.")
    presented_b = presented.strip().encode("utf-8", "surrogateescape")
    tenant: str | None = None
    for key, owner in request.app.state.tenant_keys.items():
        if hmac.compare_digest(presented_b, key.encode("utf-8")):
            tenant = owner
    if tenant is None:
        raise _unauthorized("Invalid API key.")
    request.state.tenant = tenant
    return tenant


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[JobStore, Depends(get_store)]
TenantDep = Annotated[str, Depends(get_tenant)]


# The loaders below read the store, so they are plain `def`: FastAPI runs them in its thread pool, never
# blocking the event loop on SQLite or Redis. A wrong-shaped id answers 404 before the store is asked.
def get_job(job_id: str, store: StoreDep, tenant: TenantDep) -> JobRecord:
    job = JobLedger(store).get(check_id(job_id, "job"), tenant)
    if job is None:
        raise not_found("job")
    return job


def get_model(model_id: str, store: StoreDep, tenant: TenantDep) -> dict:
    record = store.get("model", check_id(model_id, "model"), tenant)
    if record is None:
        raise not_found("model")
    return record


def get_dataset(dataset_id: str, store: StoreDep, tenant: TenantDep) -> dict:
    record = store.get("dataset", check_id(dataset_id, "dataset"), tenant)
    if record is None:
        raise not_found("dataset")
    return record


JobDep = Annotated[JobRecord, Depends(get_job)]
ModelDep = Annotated[dict, Depends(get_model)]
DatasetDep = Annotated[dict, Depends(get_dataset)]
