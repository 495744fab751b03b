"""Prometheus text exposition, written by hand (prometheus_client is not a dependency).

Request counts and latency histograms are kept per method, route template and status in this process;
job and queue gauges are read from the store at scrape time, so every API replica reports the same.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict

from starlette.types import ASGIApp, Message, Receive, Scope, Send

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class RequestMetrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[tuple[str, str, str], int] = defaultdict(int)
        self.hist: dict[tuple[str, str], list[float]] = {}  # bucket counts..., sum, count

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.counts[(method, route, str(status))] += 1
            h = self.hist.get((method, route))
            if h is None:
                h = self.hist[(method, route)] = [0.0] * (len(BUCKETS) + 2)
            for i, b in enumerate(BUCKETS):
                if seconds <= b:
                    h[i] += 1
            h[-2] += seconds
            h[-1] += 1

    def render(self) -> list[str]:
        lines = [
            "# HELP sidyp_http_requests_total HTTP requests by method, route template and status.",
            "# TYPE sidyp_http_requests_total counter",
        ]
        with self._lock:
            counts = dict(self.counts)
            hist = {k: list(v) for k, v in self.hist.items()}
        for (method, route, status), n in sorted(counts.items()):
            lines.append(
                f'sidyp_http_requests_total{{method="{method}",route="{_escape(route)}",status="{status}"}} {n}'
            )
        lines += [
            "# HELP sidyp_http_request_duration_seconds HTTP request latency by method and route template.",
            "# TYPE sidyp_http_request_duration_seconds histogram",
        ]
        for (method, route), h in sorted(hist.items()):
            labels = f'method="{method}",route="{_escape(route)}"'
            for i, b in enumerate(BUCKETS):
                lines.append(f'sidyp_http_request_duration_seconds_bucket{{{labels},le="{b}"}} {int(h[i])}')
            lines.append(f'sidyp_http_request_duration_seconds_bucket{{{labels},le="+Inf"}} {int(h[-1])}')
            lines.append(f"sidyp_http_request_duration_seconds_sum{{{labels}}} {h[-2]:.6f}")
            lines.append(f"sidyp_http_request_duration_seconds_count{{{labels}}} {int(h[-1])}")
        return lines


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


def render_gauges(
    job_counts: dict[str, int], queue_length: int, live_workers: int, store_up: bool
) -> list[str]:
    lines = ["# HELP sidyp_jobs Jobs by status.", "# TYPE sidyp_jobs gauge"]
    for status in ("queued", "running", "succeeded", "failed", "cancelled"):
        lines.append(f'sidyp_jobs{{status="{status}"}} {job_counts.get(status, 0)}')
    lines += [
        "# HELP sidyp_queue_length Jobs accepted and waiting for a worker.",
        "# TYPE sidyp_queue_length gauge",
        f"sidyp_queue_length {queue_length}",
        "# HELP sidyp_workers_live Workers that sent a heartbeat recently.",
        "# TYPE sidyp_workers_live gauge",
        f"sidyp_workers_live {live_workers}",
        "# HELP sidyp_store_up Whether the job store answered.",
        "# TYPE sidyp_store_up gauge",
        f"sidyp_store_up {int(store_up)}",
    ]
    return lines
