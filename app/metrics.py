"""Prometheus metrics through prometheus_client, one registry per app (tests build many apps).

Kept in this process: HTTP requests by method, route template and status, their latency, and predict
latency. Read from the store at scrape time, so every API replica reports the same: jobs by status, queue
depth, live workers and each worker's heartbeat age, and the job-duration histogram by outcome (from the
finished jobs' start and end times: a scan of the finished jobs per scrape, fine for the thousands of jobs a
store holds, not for millions). Plus the process and platform collectors (CPU, memory, open files).
"""

from __future__ import annotations

import time
from datetime import datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sidyp_core.config import Settings
from sidyp_core.store import JobStore

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
JOB_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)
PREDICT_ROUTE = "/v1/models/{model_id}/predict"
STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
OUTCOMES = ("succeeded", "failed", "cancelled")


class RequestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "sidyp_http_requests", "HTTP requests by method, route template and status.",
            ["method", "route", "status"], registry=registry,
        )  # fmt: skip
        self.latency = Histogram(
            "sidyp_http_request_duration_seconds", "HTTP request latency by method and route template.",
            ["method", "route"], buckets=BUCKETS, registry=registry,
        )  # fmt: skip
        self.predict = Histogram(
            "sidyp_predict_duration_seconds", "Latency of successful predict calls.",
            buckets=BUCKETS, registry=registry,
        )  # fmt: skip

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)
        if route == PREDICT_ROUTE and status == 200:
            self.predict.observe(seconds)


def _seconds(job: dict) -> float | None:
    try:
        start = datetime.fromisoformat(job["started_at"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(job["finished_at"].replace("Z", "+00:00"))
    except (KeyError, AttributeError, ValueError):
        return None  # never started (cancelled while queued) or an old record
    return max((end - start).total_seconds(), 0.0)


class StoreCollector:
    """Gauges and the job-duration histogram, read from the store on each scrape."""

    def __init__(self, store: JobStore, settings: Settings):
        self.store = store
        self.settings = settings

    def collect(self):
        up = GaugeMetricFamily("sidyp_store_up", "Whether the job store answered.")
        try:
            families = list(self._from_store())
        except Exception:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _from_store(self):
        counts = self.store.count_jobs_by_status()
        jobs = GaugeMetricFamily("sidyp_jobs", "Jobs by status.", labels=["status"])
        for status in STATUSES:
            jobs.add_metric([status], counts.get(status, 0))
        queue = GaugeMetricFamily("sidyp_queue_length", "Jobs accepted and waiting for a worker.")
        queue.add_metric([], counts.get("queued", 0))
        alive = self.settings.worker_alive_seconds
        workers = self.store.live_workers(alive * 20)  # recently gone ones too: their age says how long
        now = time.time()
        live = GaugeMetricFamily("sidyp_workers_live", "Workers that sent a heartbeat recently.")
        live.add_metric([], sum(1 for w in workers if now - float(w["last_seen"]) < alive))
        age = GaugeMetricFamily(
            "sidyp_worker_heartbeat_age_seconds",
            "Seconds since each worker's last heartbeat.",
            labels=["worker"],
        )
        for w in workers:
            age.add_metric([w["id"]], max(now - float(w["last_seen"]), 0.0))
        return [jobs, queue, live, age, self._durations()]

    def _durations(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(
            "sidyp_job_duration_seconds",
            "Run time of finished jobs (start to end) by outcome.",
            labels=["outcome"],
        )
        for outcome in OUTCOMES:
            seconds = [s for s in map(_seconds, self.store.jobs_with_status(outcome)) if s is not None]
            buckets = [(str(float(b)), sum(1 for s in seconds if s <= b)) for b in JOB_BUCKETS]
            family.add_metric([outcome], buckets + [("+Inf", len(seconds))], sum(seconds))
        return family


def make_registry(store: JobStore, settings: Settings) -> tuple[CollectorRegistry, RequestMetrics]:
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    registry.register(StoreCollector(store, settings))
    return registry, RequestMetrics(registry)


class MetricsMiddleware:
    """Times every HTTP request and labels it with the matched route template (never the raw path,
    which would carry ids and explode the series count)."""

    def __init__(self, app: ASGIApp, metrics: RequestMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            self.metrics.observe(
                scope.get("method", "?"), template, status["code"], time.perf_counter() - started
            )
