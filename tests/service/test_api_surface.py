"""The production surface in-process (TestClient over create_app, real SQLite store, no worker): idempotency
keys, job filters and deletion, the event stream, per-tenant limits, untrainable and too-large jobs,
sniffed separators, keys given hashed or in a file, and the OpenAPI document."""

from __future__ import annotations

import hashlib
import json

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from sidyp_core.artifacts import LABELS_FILE, artifact_dir, write_json
from sidyp_core.config import Settings
from sidyp_core.jobs import JobLedger
from sidyp_engine.data import MIN_ROWS_PER_CLASS
from tests.service.test_api import KEYS, TRAINABLE_CSV, assert_problem, upload


@pytest.fixture
def settings(tmp_path, tiny_backbone) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        api_keys=",".join(f"{t}:{k}" for t, k in KEYS.items()),
        backbones=f"tiny={tiny_backbone}",
        tenant_max_active_jobs=3,
        max_queued_jobs=50,
    )


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings)) as c:
        c.headers["Authorization"] = f"Bearer {KEYS['t1']}"
        yield c


def _dataset(client) -> str:
    r = upload(client, TRAINABLE_CSV)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _jobs(client) -> list[dict]:
    return client.get("/v1/jobs", params={"limit": 100}).json()["data"]


# ------------------------------------------------------------------ Idempotency-Key
def test_a_retried_job_request_with_the_same_key_returns_the_first_answer_and_starts_nothing(client):
    ds = _dataset(client)
    h = {"Idempotency-Key": "job-create-1"}
    first = client.post("/v1/jobs", json={"dataset_id": ds}, headers=h)
    again = client.post("/v1/jobs", json={"dataset_id": ds}, headers=h)
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json() and again.headers["location"] == first.headers["location"]
    assert len(_jobs(client)) == 1
    other = client.post("/v1/jobs", json={"dataset_id": ds, "params": {"epochs": 2}}, headers=h)
    assert "different request body" in assert_problem(other, 422, "idempotency-key-reused")["detail"]
    # keys are per tenant: t2 may use the same key for its own request
    client.headers["Authorization"] = f"Bearer {KEYS['t2']}"
    ds2 = _dataset(client)
    assert client.post("/v1/jobs", json={"dataset_id": ds2}, headers=h).status_code == 202
    assert len(_jobs(client)) == 1
    assert_problem(client.post("/v1/jobs", json={"dataset_id": ds2}, headers={"Idempotency-Key": "a b"}), 422)


def test_a_retried_upload_with_the_same_key_is_stored_once_and_a_failed_one_frees_the_key(client):
    h = {"Idempotency-Key": "upload-1"}
    files = {"file": ("d.csv", TRAINABLE_CSV, "text/csv")}
    first = client.post("/v1/datasets", files=files, headers=h)
    again = client.post("/v1/datasets", files=files, headers=h)
    assert first.status_code == again.status_code == 201 and again.json() == first.json()
    assert len(client.get("/v1/datasets").json()["data"]) == 1
    changed = client.post(
        "/v1/datasets", files={"file": ("d.csv", TRAINABLE_CSV + b"x,y\n", "text/csv")}, headers=h
    )
    assert_problem(changed, 422, "idempotency-key-reused")
    bad = {"Idempotency-Key": "upload-2"}
    assert_problem(client.post("/v1/datasets", files={"file": ("d.csv", b"", "text/csv")}, headers=bad), 422)
    assert client.post("/v1/datasets", files=files, headers=bad).status_code == 201  # the error kept nothing


# ------------------------------------------------------------------ list filters, delete, events
def test_job_list_filters_by_status_and_dataset(client):
    ds1, ds2 = _dataset(client), _dataset(client)
    a = client.post("/v1/jobs", json={"dataset_id": ds1}).json()["id"]
    b = client.post("/v1/jobs", json={"dataset_id": ds2}).json()["id"]
    client.post(f"/v1/jobs/{a}/cancel")
    assert [j["id"] for j in client.get("/v1/jobs", params={"status": "cancelled"}).json()["data"]] == [a]
    assert [j["id"] for j in client.get("/v1/jobs", params={"status": "queued"}).json()["data"]] == [b]
    assert [j["id"] for j in client.get("/v1/jobs", params={"dataset_id": ds2}).json()["data"]] == [b]
    both = client.get("/v1/jobs", params={"dataset_id": ds1, "status": "queued"}).json()
    assert both == {"object": "list", "data": [], "has_more": False}
    assert_problem(client.get("/v1/jobs", params={"status": "sleeping"}), 422, "validation-error")


def _finish_with_outputs(client, settings, job_id: str) -> None:
    """What a worker leaves: the job succeeded, with a labels file (it holds the texts) and a model record."""
    job = JobLedger(client.app.state.store).get(job_id)
    JobLedger(client.app.state.store).change(job_id, lambda j: j.moved("running", run_token="w"))
    JobLedger(client.app.state.store).finish(job_id, "succeeded", "done", model_id=job.reserved_model_id)
    out = artifact_dir(settings.data_dir, "t1", "jobs", job_id)
    out.mkdir(parents=True)
    write_json(out / LABELS_FILE, {"classes": [], "rows": {"text": ["the goal match"]}})
    (out / "report.json").write_text("{}")
    model_dir = artifact_dir(settings.data_dir, "t1", "models", job.reserved_model_id)
    model_dir.mkdir(parents=True)
    client.app.state.store.put(
        "model", {"id": job.reserved_model_id, "tenant": "t1", "job_id": job_id, "created_at": "x"}
    )


def test_delete_job_is_refused_while_queued_and_removes_outputs_and_model_once_ended(client, settings):
    ds = _dataset(client)
    job = client.post("/v1/jobs", json={"dataset_id": ds}).json()
    assert "cancel it first" in assert_problem(client.delete(f"/v1/jobs/{job['id']}"), 409)["detail"]
    _finish_with_outputs(client, settings, job["id"])
    model_id = client.get(f"/v1/jobs/{job['id']}").json()["model_id"]
    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert_problem(client.get(f"/v1/jobs/{job['id']}"), 404, "job-not-found")
    assert_problem(client.get(f"/v1/models/{model_id}"), 404, "model-not-found")
    assert not artifact_dir(settings.data_dir, "t1", "jobs", job["id"]).exists()
    assert not artifact_dir(settings.data_dir, "t1", "models", model_id).exists()
    assert_problem(client.delete(f"/v1/jobs/{job['id']}"), 404)


def test_deleting_a_dataset_removes_its_texts_from_every_finished_job_and_waits_for_running_ones(
    client, settings
):
    ds = _dataset(client)
    done = client.post("/v1/jobs", json={"dataset_id": ds}).json()["id"]
    _finish_with_outputs(client, settings, done)
    queued = client.post("/v1/jobs", json={"dataset_id": ds}).json()["id"]
    body = assert_problem(client.delete(f"/v1/datasets/{ds}"), 409, "dataset-in-use")
    assert queued in body["detail"]
    client.post(f"/v1/jobs/{queued}/cancel")
    assert client.delete(f"/v1/datasets/{ds}").status_code == 204
    out = artifact_dir(settings.data_dir, "t1", "jobs", done)
    assert not (out / LABELS_FILE).exists() and (out / "report.json").exists()
    texts = TRAINABLE_CSV.decode().splitlines()[1:]
    for path in (settings.data_dir / "t1").rglob("*"):
        if path.is_file():
            assert not any(t.split(",")[0].encode() in path.read_bytes() for t in texts), path
    assert_problem(client.get(f"/v1/jobs/{done}/labels"), 410, "outputs-missing")


def _sse(text: str) -> list[dict]:
    frames = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        frames.append(fields)
    return frames


def test_events_stream_as_server_sent_events_and_end_when_the_job_ends(client):
    ds = _dataset(client)
    job = client.post("/v1/jobs", json={"dataset_id": ds}).json()["id"]
    client.post(f"/v1/jobs/{job}/cancel")
    for r in (
        client.get(f"/v1/jobs/{job}/events/stream"),
        client.get(f"/v1/jobs/{job}/events", headers={"Accept": "text/event-stream"}),
    ):
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        frames = _sse(r.text)
        assert [f["id"] for f in frames[:-1]] == ["0", "1"]
        assert json.loads(frames[1]["data"])["stage"] == "cancelled"
        assert frames[-1]["event"] == "end" and json.loads(frames[-1]["data"]) == {"status": "cancelled"}
    resumed = _sse(client.get(f"/v1/jobs/{job}/events/stream", headers={"Last-Event-ID": "0"}).text)
    assert [f.get("id") for f in resumed] == ["1", None]
    assert client.get(f"/v1/jobs/{job}/events").json()["data"][0]["seq"] == 0  # JSON pages stay the default


# ------------------------------------------------------------------ fairness
def test_one_tenant_at_its_active_job_limit_gets_429_and_others_are_not_affected(client):
    ds = _dataset(client)
    ids = [client.post("/v1/jobs", json={"dataset_id": ds}).json()["id"] for _ in range(3)]
    r = client.post("/v1/jobs", json={"dataset_id": ds})
    assert "3 queued or running jobs" in assert_problem(r, 429, "tenant-job-limit")["detail"]
    assert int(r.headers["retry-after"]) > 0
    client.headers["Authorization"] = f"Bearer {KEYS['t2']}"
    assert client.post("/v1/jobs", json={"dataset_id": _dataset(client)}).status_code == 202
    client.headers["Authorization"] = f"Bearer {KEYS['t1']}"
    client.post(f"/v1/jobs/{ids[0]}/cancel")
    assert client.post("/v1/jobs", json={"dataset_id": ds}).status_code == 202


def test_a_tenant_over_its_byte_limit_gets_429_on_upload(tmp_path):
    limit = len(TRAINABLE_CSV) + 100  # room for the first upload, not for a second one
    settings = Settings(data_dir=tmp_path / "d", api_keys=f"t1:{KEYS['t1']}", tenant_max_bytes=limit)
    with TestClient(create_app(settings)) as c:
        c.headers["Authorization"] = f"Bearer {KEYS['t1']}"
        assert upload(c, TRAINABLE_CSV).status_code == 201
        r = upload(c, TRAINABLE_CSV)
        assert f"limit per tenant is {limit}" in assert_problem(r, 429, "tenant-storage-limit")["detail"]
        assert r.headers["retry-after"]
        assert len(c.get("/v1/datasets").json()["data"]) == 1


# ------------------------------------------------------------------ what cannot run
def test_a_dataset_the_engine_cannot_train_is_refused_naming_classes_and_counts(client):
    one_each = b"text,noisy_label\na,sports\nb,food\nc,food\nd,tech\n"
    ds = upload(client, one_each).json()["id"]
    body = assert_problem(client.post("/v1/jobs", json={"dataset_id": ds}), 422, "dataset-not-trainable")
    assert "sports: 1" in body["detail"] and "food: 2" in body["detail"] and "tech: 1" in body["detail"]
    assert f"{MIN_ROWS_PER_CLASS} or more" in body["detail"]
    assert _jobs(client) == []


def test_a_job_whose_memory_estimate_exceeds_the_worker_is_refused_with_both_numbers(tmp_path):
    settings = Settings(data_dir=tmp_path / "d", api_keys=f"t1:{KEYS['t1']}", worker_memory_bytes=4 * 2**30)
    with TestClient(create_app(settings)) as c:
        c.headers["Authorization"] = f"Bearer {KEYS['t1']}"
        ds = upload(c, TRAINABLE_CSV).json()["id"]
        assert c.post("/v1/jobs", json={"dataset_id": ds}).status_code == 202
        big = {"epochs": 50, "branches": 8, "max_length": 512}
        body = assert_problem(
            c.post("/v1/jobs", json={"dataset_id": ds, "params": big}), 422, "job-too-large"
        )
        assert body["worker_memory_bytes"] == 4 * 2**30 and body["estimated_peak_bytes"] > 4 * 2**30
        assert str(4 * 2**30) in body["detail"] and str(body["estimated_peak_bytes"]) in body["detail"]


@pytest.mark.parametrize(
    "content",
    [
        b"text\tnoisy_label\nthe goal, late\tsports\npizza\tfood\nwin\tsports\nbake\tfood\n",
        b"text;noisy_label\nthe goal, late;sports\npizza;food\nwin;sports\nbake;food\n",
    ],
    ids=["tsv", "semicolon"],
)
def test_tab_and_semicolon_separated_uploads_are_read(client, content):
    # The engine's one table reader (sidyp_engine/tables.py) sniffs the separator from the header line.
    r = upload(client, content, filename="d.tsv" if b"\t" in content else "d.csv")
    assert r.status_code == 201, r.text
    assert r.json()["label_counts"] == {"food": 2, "sports": 2}


# ------------------------------------------------------------------ keys
def test_keys_may_be_given_hashed_or_in_a_file_and_one_key_for_two_tenants_stops_the_start(tmp_path):
    digest = hashlib.sha256(b"plain-key-for-t3-xxxxxxxx").hexdigest()
    keys_file = tmp_path / "keys"
    keys_file.write_text(f"# operators' keys\nt3:sha256:{digest}\nt4:file-key-yyyyyyyyyyyyyy\n")
    settings = Settings(data_dir=tmp_path / "d", api_keys=f"t1:{KEYS['t1']}", api_keys_file=keys_file)
    assert KEYS["t1"] not in repr(settings) and KEYS["t1"] not in settings.model_dump_json()
    with TestClient(create_app(settings)) as c:
        for key, status in (
            (KEYS["t1"], 200),
            ("plain-key-for-t3-xxxxxxxx", 200),
            ("file-key-yyyyyyyyyyyyyy", 200),
            (f"sha256:{digest}", 401),  # the hash itself is not a key
        ):
            assert c.get("/v1/jobs", headers={"Authorization": f"Bearer {key}"}).status_code == status
    keys_file.write_text(f"t5:{KEYS['t1']}\n")
    with pytest.raises(ValueError, match="one API key is configured for two tenants"):
        create_app(settings)


# ------------------------------------------------------------------ OpenAPI
def test_openapi_declares_bearer_auth_and_problem_answers(client):
    doc = client.get("/openapi.json").json()
    assert doc["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "an API key from SIDYP_API_KEYS",
    }
    ops = {(m, p): op for p, item in doc["paths"].items() for m, op in item.items()}
    create = ops[("post", "/v1/jobs")]
    assert create["security"] == [{"HTTPBearer": []}]
    for status in ("401", "404", "409", "422", "429", "503"):
        content = create["responses"][status]["content"]
        assert content["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Problem"}
    assert "examples" in create["requestBody"]["content"]["application/json"]
    assert "413" in ops[("post", "/v1/datasets")]["responses"]
    for (method, path), op in ops.items():
        if path.startswith("/v1/"):
            assert "401" in op["responses"], (method, path)
            assert "HTTPValidationError" not in json.dumps(op["responses"]), (method, path)


# ------------------------------------------------------------------ metrics
def test_metrics_endpoint_exposes_jobs_queue_workers_durations_predict_and_process(client):
    store = client.app.state.store
    ds = _dataset(client)
    job = client.post("/v1/jobs", json={"dataset_id": ds}).json()["id"]
    ledger = JobLedger(store)
    ledger.change(job, lambda j: j.moved("running", run_token="w", started_at="2026-01-01T00:00:00.000Z"))
    ledger.change(job, lambda j: j.moved("failed", finished_at="2026-01-01T00:00:42.000Z"))
    client.post("/v1/jobs", json={"dataset_id": ds})
    store.worker_beat("celery@host-a:12", {"kind": "celery"})
    text = client.get("/metrics").text
    lines = dict(ln.rsplit(" ", 1) for ln in text.splitlines() if ln and not ln.startswith("#"))
    assert (
        float(lines['sidyp_jobs{status="queued"}']) == 1 and float(lines['sidyp_jobs{status="failed"}']) == 1
    )
    assert float(lines["sidyp_queue_length"]) == 1 and float(lines["sidyp_workers_live"]) == 1
    assert 0 <= float(lines['sidyp_worker_heartbeat_age_seconds{worker="celery@host-a:12"}']) < 5
    assert float(lines['sidyp_job_duration_seconds_bucket{le="30.0",outcome="failed"}']) == 0
    assert float(lines['sidyp_job_duration_seconds_bucket{le="60.0",outcome="failed"}']) == 1
    assert float(lines['sidyp_job_duration_seconds_sum{outcome="failed"}']) == 42
    assert "sidyp_predict_duration_seconds_count" in lines and "process_resident_memory_bytes" in lines
    assert 'sidyp_http_requests_total{method="POST",route="/v1/jobs",status="202"}' in lines


def test_every_documented_problem_schema_resolves_and_none_is_plain_json(client):
    doc = client.get("/openapi.json").json()
    problem = doc["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail"} <= set(problem["required"])
    assert doc["components"]["schemas"]["ProblemItem"]["properties"]["row"]
    for item in doc["paths"].values():
        for op in item.values():
            for status, answer in op["responses"].items():
                if status.startswith(("4", "5")):
                    assert list(answer["content"]) == ["application/problem+json"], (op["summary"], status)
