"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from app.metrics import render_gauges

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
def metrics(request: Request) -> PlainTextResponse:
    settings = request.app.state.settings
    store = request.app.state.store
    lines = request.app.state.request_metrics.render()
    try:
        counts = store.count_jobs_by_status()
        workers = len(store.live_workers(settings.worker_alive_seconds))
        store_up = True
    except Exception:
        counts, workers, store_up = {}, 0, False
    lines += render_gauges(counts, counts.get("queued", 0), workers, store_up)
    return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4; charset=utf-8")
