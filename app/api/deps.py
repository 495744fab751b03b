"""Request dependencies: settings, the job store, and the tenant behind the bearer key."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from app.core.config import Settings
from app.errors import ProblemError
from app.store import JobStore


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_store(request: Request) -> JobStore:
    return request.app.state.store


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(
        401, detail, slug="unauthorized", headers={"WWW-Authenticate": 'Bearer realm="sidyp"'}
    )


def get_tenant(request: Request) -> str:
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
