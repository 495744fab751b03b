"""The three measured phases of `benchmarks.load`: predict, burst, status reads."""

from __future__ import annotations

import asyncio
import random
import threading
import time

import httpx
import numpy as np

from benchmarks.load_stack import FINAL, TOPICS, async_client, client, percentiles, sentence


def _count(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


# ---------------------------------------------------------------------------------------------- phase 1
async def predict_phase(base: str, model_id: str, duration: float, clients: int, batch: int) -> dict:
    rng = random.Random(1)
    pool = [sentence(rng, rng.choice(list(TOPICS)), rng.randint(5, 40)) for _ in range(2000)]
    latencies: list[float] = []
    errors: dict[str, int] = {}
    texts_done = 0
    stop_at = time.perf_counter() + duration

    async def one_client(c: httpx.AsyncClient, seed: int) -> None:
        nonlocal texts_done
        local = random.Random(seed)
        while time.perf_counter() < stop_at:
            texts = local.sample(pool, batch)
            t0 = time.perf_counter()
            try:
                r = await c.post(f"/v1/models/{model_id}/predict", json={"texts": texts})
                status = str(r.status_code)
                ok = r.status_code == 200 and len(r.json()["predictions"]) == batch
            except httpx.HTTPError as exc:
                status, ok = type(exc).__name__, False
            latencies.append(time.perf_counter() - t0)
            if ok:
                texts_done += batch
            else:
                _count(errors, status)

    async with async_client(base, clients) as c:
        started = time.perf_counter()
        await asyncio.gather(*(one_client(c, i) for i in range(clients)))
        elapsed = time.perf_counter() - started
    n = len(latencies)
    return {
        "clients": clients,
        "texts_per_request": batch,
        "seconds": round(elapsed, 1),
        "requests": n,
        "errors": sum(errors.values()),
        "errors_by_kind": errors,
        "requests_per_s": round(n / elapsed, 2),
        "texts_per_s": round(texts_done / elapsed, 1),
        **percentiles(latencies),
    }


# ---------------------------------------------------------------------------------------------- phase 2
async def _submit_burst(
    base: str, dataset_id: str, params: dict, n: int
) -> tuple[list[str], dict, list[float]]:
    statuses: dict[str, int] = {}
    accepted: list[str] = []
    latencies: list[float] = []

    async with async_client(base, 64) as c:

        async def submit() -> None:
            t0 = time.perf_counter()
            try:
                r = await c.post("/v1/jobs", json={"dataset_id": dataset_id, "params": params})
                key = str(r.status_code)
                if r.status_code == 202:
                    accepted.append(r.json()["id"])
                elif r.status_code == 429:
                    assert r.headers.get("retry-after"), "429 without Retry-After"
            except httpx.HTTPError as exc:
                key = type(exc).__name__
            latencies.append(time.perf_counter() - t0)
            _count(statuses, key)

        await asyncio.gather(*(submit() for _ in range(n)))
    return accepted, statuses, latencies


def _drain(c: httpx.Client, accepted: list[str], timeout: float) -> tuple[dict[str, str], set[str]]:
    """Wait until every accepted job has ended: (final status by job id, the ids still pending at timeout)."""
    pending = set(accepted)
    finals: dict[str, str] = {}
    deadline = time.perf_counter() + timeout
    while pending and time.perf_counter() < deadline:
        for job in c.get("/v1/jobs", params={"limit": 1000}).json()["data"]:
            if job["id"] in pending and job["status"] in FINAL:
                finals[job["id"]] = job["status"]
                pending.discard(job["id"])
        time.sleep(0.5)
    return finals, pending


def _listed_ids(c: httpx.Client) -> set[str]:
    """Every job id the API lists, all pages."""
    listed: set[str] = set()
    after = None
    while True:
        q = {"limit": 1000} | ({"after": after} if after else {})
        page = c.get("/v1/jobs", params=q).json()
        listed |= {j["id"] for j in page["data"]}
        if not page["has_more"]:
            return listed
        after = page["data"][-1]["id"]


def _queued_gauge(c: httpx.Client) -> int | None:
    lines = c.get("/metrics").text.splitlines()
    prefix = 'sidyp_jobs{status="queued"}'
    return next((int(float(ln.split()[-1])) for ln in lines if ln.startswith(prefix)), None)


def _burst_round(c: httpx.Client, base: str, dataset_id: str, params: dict, burst: int, duration: float):
    t0 = time.perf_counter()
    accepted, statuses, latencies = asyncio.run(_submit_burst(base, dataset_id, params, burst))
    submitted_s = time.perf_counter() - t0
    # Drain: every accepted job must end, and end succeeded.
    finals, pending = _drain(c, accepted, max(600.0, duration * 3))
    drained_s = time.perf_counter() - t0
    listed = _listed_ids(c)
    return {
        "submitted": burst,
        "answers": statuses,
        "accepted": len(accepted),
        "refused_429": statuses.get("429", 0),
        "other_answers": sum(v for k, v in statuses.items() if k not in ("202", "429")),
        "submit_seconds": round(submitted_s, 2),
        "submit_latency": percentiles(latencies),
        "succeeded": sum(1 for s in finals.values() if s == "succeeded"),
        "not_succeeded": {
            s: sum(1 for v in finals.values() if v == s) for s in set(finals.values()) if s != "succeeded"
        },
        "lost": len(set(accepted) - listed),
        "unfinished_at_deadline": len(pending),
        "drain_seconds": round(drained_s, 1),
        "queued_after_drain": _queued_gauge(c),
    }


def burst_phase(base: str, dataset_id: str, params: dict, duration: float, burst: int) -> dict:
    rounds = []
    started = time.perf_counter()
    with client(base) as c:
        while True:
            rounds.append(_burst_round(c, base, dataset_id, params, burst, duration))
            if time.perf_counter() - started >= duration:
                break
    total_accepted = sum(r["accepted"] for r in rounds)
    return {
        "burst_size": burst,
        "rounds": rounds,
        "seconds": round(time.perf_counter() - started, 1),
        "accepted": total_accepted,
        "refused_429": sum(r["refused_429"] for r in rounds),
        "other_answers": sum(r["other_answers"] for r in rounds),
        "succeeded": sum(r["succeeded"] for r in rounds),
        "lost": sum(r["lost"] for r in rounds),
        "unfinished": sum(r["unfinished_at_deadline"] for r in rounds),
        "jobs_per_s_drained": round(total_accepted / sum(r["drain_seconds"] for r in rounds), 2),
    }


# ---------------------------------------------------------------------------------------------- phase 3
async def _paced_reads(base: str, current: dict, rate: float, duration: float) -> dict:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    seen: dict[str, int] = {}
    lateness: list[float] = []

    async with async_client(base, 64) as c:

        async def read(job_id: str) -> None:
            t0 = time.perf_counter()
            try:
                r = await c.get(f"/v1/jobs/{job_id}")
                if r.status_code == 200:
                    _count(seen, r.json()["status"])
                else:
                    _count(errors, str(r.status_code))
            except httpx.HTTPError as exc:
                _count(errors, type(exc).__name__)
            latencies.append(time.perf_counter() - t0)

        # Open loop: request i is sent at start + i / rate, whatever the earlier answers are doing.
        tasks = []
        start = time.perf_counter()
        i = 0
        while (due := start + i / rate) - start < duration:
            now = time.perf_counter()
            if due > now:
                await asyncio.sleep(due - now)
            lateness.append(max(0.0, time.perf_counter() - due))
            tasks.append(asyncio.create_task(read(current["id"])))
            i += 1
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return {
        "target_rate_per_s": rate,
        "achieved_rate_per_s": round(len(latencies) / elapsed, 1),
        "seconds": round(elapsed, 1),
        "requests": len(latencies),
        "errors": sum(errors.values()),
        "errors_by_kind": errors,
        "statuses_seen": seen,
        "share_while_running": round(seen.get("running", 0) / max(1, sum(seen.values())), 3),
        "send_lateness_p99_ms": round(float(np.percentile(np.asarray(lateness) * 1000, 99)), 2)
        if lateness
        else None,
        **percentiles(latencies),
    }


def _server_histogram(base: str, method: str, route: str) -> dict[str, float]:
    """The API's own latency histogram for one route (cumulative counts by upper bound, from /metrics)."""
    text = httpx.get(base + "/metrics", timeout=10).text
    prefix = f'sidyp_http_request_duration_seconds_bucket{{method="{method}",route="{route}",le="'
    out = {}
    for line in text.splitlines():
        if line.startswith(prefix):
            le = line[len(prefix) :].split('"', 1)[0]
            out[le] = float(line.split()[-1])
    return out


def _status(c: httpx.Client, job_id: str) -> str:
    return c.get(f"/v1/jobs/{job_id}").json()["status"]


class _KeepTraining:
    """A thread that keeps one job training: a new one is submitted whenever the last one ends."""

    def __init__(self, base: str, dataset_id: str, params: dict):
        self.base, self.dataset_id, self.params = base, dataset_id, params
        self.current: dict = {}
        self.jobs_run: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with client(self.base) as c:
            while not self.stop.is_set():
                job = c.post("/v1/jobs", json={"dataset_id": self.dataset_id, "params": self.params}).json()
                self.current["id"] = job["id"]
                self.jobs_run.append(job["id"])
                while not self.stop.is_set():
                    if _status(c, job["id"]) in FINAL:
                        break
                    self.stop.wait(0.5)

    def wait_running(self, timeout: float = 120) -> None:
        with client(self.base) as c:
            deadline = time.time() + timeout
            while "id" not in self.current or _status(c, self.current["id"]) != "running":
                if time.time() > deadline:
                    raise SystemExit("the status-phase job never started running")
                time.sleep(0.2)

    def cancel_all(self) -> None:
        with client(self.base) as c:
            for job_id in self.jobs_run:
                c.post(f"/v1/jobs/{job_id}/cancel")


def _share_within(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Share of the window's requests the API served within each histogram bound (in ms)."""
    total = after.get("+Inf", 0.0) - before.get("+Inf", 0.0)
    return {
        f"{float(le) * 1000:g}": round((after[le] - before.get(le, 0.0)) / total, 4)
        for le in after
        if le != "+Inf" and total
    }


def status_phase(base: str, dataset_id: str, params: dict, duration: float, rate: float) -> dict:
    """Keep one job training for the whole window (a new one starts when the last ends) and read its status."""
    trainer = _KeepTraining(base, dataset_id, params)
    trainer.thread.start()
    trainer.wait_running()
    before = _server_histogram(base, "GET", "/v1/jobs/{job_id}")
    try:
        result = asyncio.run(_paced_reads(base, trainer.current, rate, duration))
    finally:
        trainer.stop.set()
        trainer.thread.join(10)
    after = _server_histogram(base, "GET", "/v1/jobs/{job_id}")
    # Time inside the API (route handler and middleware) as the API measures it; the rest of the client's
    # latency is the network stack, the accept queue and the CPU scheduler.
    result["server_side_share_within_ms"] = _share_within(before, after)
    trainer.cancel_all()
    result["training_jobs_during_window"] = len(trainer.jobs_run)
    return result
