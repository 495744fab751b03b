"""Schema-driven fuzzing: schemathesis generates requests from the live /openapi.json of a real `sidyp serve`
(valid and deliberately invalid ones, random ids and real ones) and no answer may be a 5xx; every error is
problem+json. Bounded: a fixed number of examples per operation and a wall-clock budget for the whole run.

/readyz is left out: its 503 is by design here (no worker runs, so jobs stay queued and nothing trains).
Run over both stores, since each turns odd values (huge integers, say) into its own errors.
"""

from __future__ import annotations

import time

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tests.service.conftest import KEY_1, Service, service_env, start_api

pytestmark = pytest.mark.slow  # starts servers or trains through the service: not in `make test-fast`

EXAMPLES_PER_STRATEGY = 30
BUDGET_SECONDS = 60


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def server(request, tmp_path_factory, tiny_backbone):
    """The API over each store: embedded (SQLite) and Celery mode (Redis; messages wait, no worker)."""
    root = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    extra = {"SIDYP_MAX_ROWS": "100", "SIDYP_MAX_QUEUED_JOBS": "20"}
    if request.param == "redis":
        import redis

        url = request.getfixturevalue("redis_url").rsplit("/", 1)[0] + "/9"
        redis.Redis.from_url(url).flushdb()
        extra["SIDYP_REDIS_URL"] = url
    env = service_env(root / "data", tiny_backbone, **extra)
    api, base = start_api(env, root, extra_args=("--no-worker",))
    service = Service(base, root / "data", [api])
    try:
        with service.client() as c:
            csv = b"text,noisy_label\nthe goal match,sports\npizza dinner,food\nlate goal,sports\nbake,food\n"
            ds = c.post("/v1/datasets", files={"file": ("d.csv", csv, "text/csv")}).json()["id"]
            job = c.post("/v1/jobs", json={"dataset_id": ds}).json()["id"]
        service.real_ids = {"dataset_id": ds, "job_id": job}
        yield service
    finally:
        api.stop()


def test_no_generated_request_gets_a_5xx(server):
    spec = requests.get(server.base_url + "/openapi.json", timeout=10).json()
    schema = schemathesis.openapi.from_dict(spec)
    operations = [r.ok() for r in schema.get_all_operations()]
    operations = [op for op in operations if op.path != "/readyz"]
    assert len(operations) >= 15
    session = requests.Session()
    headers = {"Authorization": f"Bearer {KEY_1}"}
    failures: list[str] = []
    counts = {"requests": 0, "2xx": 0, "4xx": 0}
    started = time.monotonic()

    def check(case) -> None:
        if time.monotonic() - started > BUDGET_SECONDS:
            return  # out of budget: the remaining examples are skipped, counted below
        r = case.call(base_url=server.base_url, session=session, headers=headers, timeout=30)
        counts["requests"] += 1
        if r.status_code >= 500:
            failures.append(f"{case.method} {case.formatted_path} -> {r.status_code}: {r.text[:300]}")
        elif r.status_code >= 400:
            counts["4xx"] += 1
            ctype = r.headers.get("content-type")
            ctype = ctype[0] if isinstance(ctype, list) else ctype  # schemathesis keeps every header value
            if ctype != "application/problem+json":
                failures.append(
                    f"{case.method} {case.formatted_path} -> {r.status_code} not problem+json: {ctype} {r.text[:200]}"
                )
        else:
            counts["2xx"] += 1

    for op in operations:
        strategies = [op.as_strategy(GenerationMode.POSITIVE), op.as_strategy(GenerationMode.NEGATIVE)]
        wanted = {k: v for k, v in server.real_ids.items() if f"{{{k}}}" in op.path}
        # A queued job's event stream stays open until the job ends (no worker runs here): by design, so it
        # is fuzzed with generated ids only (tests/service/test_api_surface.py reads a real stream).
        if wanted and op.method.upper() != "DELETE" and not op.path.endswith("/events/stream"):
            strategies.append(op.as_strategy(GenerationMode.POSITIVE, path_parameters=wanted))

        @settings(
            max_examples=EXAMPLES_PER_STRATEGY * len(strategies),
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=st.one_of(*strategies))
        def run(case) -> None:
            check(case)

        run()
    elapsed = time.monotonic() - started
    print(f"\nschemathesis: {counts} over {len(operations)} operations in {elapsed:.1f}s")
    assert not failures, "\n".join(failures[:20])
    assert counts["requests"] >= 10 * len(operations)  # the budget did not cut the run to nothing
    assert counts["2xx"] > 0 and counts["4xx"] > 0
    assert requests.get(server.base_url + "/healthz", timeout=5).status_code == 200
