"""Request dependencies: settings, the job store, the tenant behind the bearer key, and the resource a
path names (`JobDep`, `ModelDep`, `DatasetDep`: loaded for that tenant, or 404)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.api.routes.common import check_id
from app.errors import ProblemError, not_found
from sidyp_core.config import Settings, key_digest
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


# Declares the scheme in the OpenAPI document (the /docs page's Authorize button); get_tenant below does the
# checking itself, so a missing or malformed header gets our 401 problem+json rather than FastAPI's 403.
bearer_scheme = HTTPBearer(auto_error=False, description="an API key from SIDYP_API_KEYS")


async def get_tenant(
    request: Request, _declared: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)]
) -> str:
    """The tenant owning the presented key. Keys are held as SHA-256 digests; the presented key's digest is
    compared with every configured one, in constant time each, so the answer's timing says nothing about
    which key matched."""
    header = request.headers.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise _unauthorized("Missing bearer key: send 'Authorization: Bearer <key>'.")
    presented_digest = key_digest(presented.strip()).encode()
    tenant: str | None = None
    for digest, owner in request.app.state.tenant_keys.items():
        if hmac.compare_digest(presented_digest, digest.encode()):
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
