"""The FastAPI application: routes, problem+json errors, body limits, metrics, background reaper."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.api.routes import console, datasets, health, jobs, labels, models, reports
from app.errors import install_error_handlers
from app.limits import BodyLimitMiddleware
from app.metrics import MetricsMiddleware, RequestMetrics
from sidyp_core.background import BackgroundDuties, make_worker_id
from sidyp_core.config import Settings, get_settings
from sidyp_core.dispatch import make_enqueuer
from sidyp_core.store import JobStore, make_store

log = logging.getLogger("sidyp.api")


def create_app(settings: Settings | None = None, store: JobStore | None = None) -> FastAPI:
    settings = settings or get_settings()
    tenant_keys = settings.tenant_keys()
    if not tenant_keys:
        raise RuntimeError(
            "no API keys configured (SIDYP_API_KEYS); `sidyp serve` creates one in embedded mode"
        )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = store or make_store(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.enqueue = make_enqueuer(settings, store)
        # The API reaps too, so lost jobs are handled even while every worker is busy or gone.
        reaper = BackgroundDuties(settings, store, make_worker_id("api"), app.state.enqueue, beat=False)
        reaper.start()
        try:
            yield
        finally:
            reaper.stop()
            store.close()

    app = FastAPI(
        title="sidyp",
        version="0.1.0",
        description="Turn LLM-labelled text datasets into calibrated classifiers (SiDyP).",
        lifespan=lifespan,
        debug=settings.debug,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.tenant_keys = tenant_keys
    app.state.request_metrics = RequestMetrics()
    install_error_handlers(app)
    for router in (datasets.router, jobs.router, reports.router, models.router, health.router):
        app.include_router(router)
    app.include_router(labels.router)
    app.include_router(console.router)
    app.add_middleware(
        BodyLimitMiddleware,
        upload_limit=settings.max_upload_bytes,
        json_limit=settings.max_json_body_bytes,
        upload_paths=("/v1/datasets",),
    )
    app.add_middleware(MetricsMiddleware, metrics=app.state.request_metrics)
    return app
