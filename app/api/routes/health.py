"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The API process is up")
def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz", summary="The store answers and at least one worker is alive")
def readyz(request: Request) -> JSONResponse:
    settings = request.app.state.settings
    store = request.app.state.store
    store_ok = store.ping()
    workers = []
    if store_ok:
        try:
            workers = store.live_workers(settings.worker_alive_seconds)
        except Exception:
            store_ok = False
    ready = store_ok and len(workers) > 0
    body = {
        "status": "ready" if ready else "not ready",
        "checks": {
            "store": store_ok,
            "workers": len(workers),
            "mode": "embedded" if settings.embedded else "celery",
        },
    }
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST)
