"""Upload -> job -> poll -> events -> labels -> report -> predict, through real processes in both modes:
embedded (`sidyp serve` with its SQLite store and spawned worker) and Celery (`sidyp serve` + a real
`sidyp worker` on a real Redis). Also: cancel (queued and running) and tenant isolation on every endpoint."""

from __future__ import annotations

import csv
import io
import time

import pytest

from tests.conftest import toy_dataset, write_csv
from tests.service.conftest import KEY_2, tiny_params, upload_toy, wait_status

pytestmark = pytest.mark.slow  # starts servers or trains through the service: not in `make test-fast`


@pytest.fixture(scope="module", params=["embedded", "celery"])
def service(request):
    return request.getfixturevalue(f"{request.param}_service")


@pytest.fixture(scope="module")
def finished(service, tiny_backbone, tmp_path_factory):
    """One succeeded job per mode, shared by the read-side tests."""
    tmp = tmp_path_factory.mktemp("e2e")
    with service.client() as c:
        train = upload_toy(c, tmp, n_per_class=20, name="train")
        texts, noisy, gold, _ = toy_dataset(n_per_class=5, seed=7)
        eval_path = write_csv(tmp / "eval.csv", texts, noisy, gold)
        r = c.post("/v1/datasets", files={"file": ("eval.csv", eval_path.read_bytes(), "text/csv")})
        assert r.status_code == 201, r.text
        evaluation = r.json()
        r = c.post(
            "/v1/jobs",
            json={
                "dataset_id": train["id"],
                "eval_dataset_id": evaluation["id"],
                "params": tiny_params(tiny_backbone),
            },
        )
        assert r.status_code == 202, r.text
        job = r.json()
        assert r.headers["location"] == f"/v1/jobs/{job['id']}"
        assert job["status"] == "queued" and job["model_id"] is None
        done = wait_status(c, job["id"], {"succeeded", "failed", "cancelled"}, timeout=240, service=service)
        assert done["status"] == "succeeded", (done, service.logs())
    return {"train": train, "eval": evaluation, "job": done}


def test_job_succeeds_with_progress_and_ordered_events(service, finished):
    job = finished["job"]
    assert job["model_id"] and job["finished_at"] and job["started_at"] and job["error"] is None
    assert job["progress"]["stage"] == "succeeded" and job["progress"]["fraction"] == 1.0
    assert job["deliveries"] == 1
    assert "noise_share" in job["metrics"]
    with service.client() as c:
        events, after = [], -1
        while True:
            page = c.get(f"/v1/jobs/{job['id']}/events", params={"after": after, "limit": 7}).json()
            events += page["data"]
            if not page["has_more"]:
                break
            after = page["data"][-1]["seq"]
    assert [e["seq"] for e in events] == list(range(len(events)))
    stages = [e["stage"] for e in events]
    assert stages[0] == "queued" and stages[-1] == "succeeded"
    # The engine's stages show up, in pipeline order.
    seen = [
        s for s in dict.fromkeys(stages) if s in ("classifier", "prior", "refiner", "posterior", "served")
    ]
    assert seen == ["classifier", "prior", "refiner", "posterior", "served"]
    assert any(e["type"] == "metrics" and e["metrics"] for e in events)


def test_labels_cover_every_upload_row_in_order_and_page(service, finished):
    train, job = finished["train"], finished["job"]
    texts, noisy, _gold, classes = toy_dataset(n_per_class=20)
    with service.client() as c:
        items, after = [], -1
        while True:
            r = c.get(f"/v1/jobs/{job['id']}/labels", params={"limit": 25, "after": after})
            assert r.status_code == 200
            page = r.json()
            assert len(page["data"]) <= 25
            items += page["data"]
            if not page["has_more"]:
                break
            after = page["data"][-1]["index"]
        assert [it["index"] for it in items] == list(range(train["n_rows"]))
        assert [it["text"] for it in items] == texts
        assert [it["given_label"] for it in items] == noisy
        for it in items:
            assert set(it["probabilities"]) == set(classes)
            assert abs(sum(it["probabilities"].values()) - 1) < 1e-4
            assert it["suggested_label"] == max(it["probabilities"], key=it["probabilities"].get)
            assert 0.0 <= it["label_quality"] <= 1.0
        # No validation set was given, so the engine held some rows out; they are still listed.
        assert 0 < sum(it["is_validation"] for it in items) < len(items)

        r = c.get(f"/v1/jobs/{job['id']}/labels", params={"format": "csv"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert len(rows) == train["n_rows"]
        assert [row["suggested_label"] for row in rows] == [it["suggested_label"] for it in items]


def test_report_has_noise_estimate_flags_and_eval_metrics(service, finished):
    with service.client() as c:
        report = c.get(f"/v1/jobs/{finished['job']['id']}/report").json()
    labels = finished["train"]["labels"]
    assert report["labels"] == labels and report["n_rows"] == finished["train"]["n_rows"]
    assert 0.0 <= report["noise_share"] <= 1.0
    assert len(report["noise_matrix"]) == len(labels)
    for row in report["noise_matrix"]:
        assert len(row) == len(labels) and abs(sum(row) - 1) < 1e-3
    assert set(report["flagged_per_class"]) == set(labels)
    assert sum(report["flagged_per_class"].values()) <= report["n_flagged"]
    assert report["timings"]["total"] > 0
    assert report["version"] == 2 and report["inputs"]["eval_dataset_id"] == finished["eval"]["id"]
    ev = report["eval"]
    assert ev["n_rows"] == ev["n_scored"] == finished["eval"]["n_rows"]
    for side in ("noisy_classifier", "refined_posterior", "served"):
        assert 0 <= ev[side]["accuracy"] <= 1 and 0 <= ev[side]["macro_f1"] <= 1 and 0 <= ev[side]["ece"] <= 1
    assert report["served"]["temperature"] > 0


def test_model_predicts_calibrated_probabilities(service, finished):
    model_id = finished["job"]["model_id"]
    with service.client() as c:
        model = c.get(f"/v1/models/{model_id}").json()
        assert model["job_id"] == finished["job"]["id"] and model["labels"] == finished["train"]["labels"]
        assert model_id in [m["id"] for m in c.get("/v1/models").json()["data"]]
        r = c.post(
            f"/v1/models/{model_id}/predict", json={"texts": ["the pizza bake cheese dinner today", "x", "y"]}
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model_id"] == model_id and len(body["predictions"]) == 3
        for p in body["predictions"]:
            assert abs(sum(p["probabilities"].values()) - 1) < 1e-4
            assert p["label"] == max(p["probabilities"], key=p["probabilities"].get)
            assert p["confidence"] == pytest.approx(p["probabilities"][p["label"]])
        r = c.post(f"/v1/models/{model_id}/predict", json={"texts": ["a"] * 1001})
        assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"


def test_metrics_and_readiness(service, finished):
    with service.client(None) as c:
        assert c.get("/readyz").status_code == 200
        text = c.get("/metrics").text
    assert 'sidyp_jobs{status="succeeded"}' in text
    succeeded = [ln for ln in text.splitlines() if ln.startswith('sidyp_jobs{status="succeeded"}')][0]
    assert float(succeeded.split()[-1]) >= 1
    assert 'route="/v1/jobs/{job_id}"' in text  # labelled by template, not by raw path
    assert "sidyp_http_request_duration_seconds_bucket" in text and "sidyp_queue_length" in text


def test_other_tenant_gets_404_on_every_endpoint(service, finished):
    job_id, model_id = finished["job"]["id"], finished["job"]["model_id"]
    ds_id = finished["train"]["id"]
    with service.client(KEY_2) as other:
        checks = [
            other.get(f"/v1/datasets/{ds_id}"),
            other.delete(f"/v1/datasets/{ds_id}"),
            other.get(f"/v1/jobs/{job_id}"),
            other.get(f"/v1/jobs/{job_id}/events"),
            other.get(f"/v1/jobs/{job_id}/labels"),
            other.get(f"/v1/jobs/{job_id}/labels", params={"format": "csv"}),
            other.get(f"/v1/jobs/{job_id}/report"),
            other.post(f"/v1/jobs/{job_id}/cancel"),
            other.get(f"/v1/models/{model_id}"),
            other.post(f"/v1/models/{model_id}/predict", json={"texts": ["a"]}),
            other.delete(f"/v1/models/{model_id}"),
            other.post("/v1/jobs", json={"dataset_id": ds_id}),
        ]
        for r in checks:
            assert r.status_code == 404, (r.request.method, r.request.url, r.status_code, r.text)
            assert r.headers["content-type"] == "application/problem+json"
        for kind in ("datasets", "jobs", "models"):
            assert other.get(f"/v1/{kind}").json()["data"] == []
        assert other.get("/v1/datasets", params={"after": ds_id}).json()["data"] == []
    with service.client() as owner:  # still intact for its owner
        assert owner.get(f"/v1/datasets/{ds_id}").status_code == 200
        assert owner.get(f"/v1/models/{model_id}").status_code == 200


def test_cancel_queued_at_once_and_running_within_seconds(service, tiny_backbone, tmp_path):
    with service.client() as c:
        ds = upload_toy(c, tmp_path, n_per_class=30, gold=False)
        long_params = tiny_params(tiny_backbone, epochs=50, batch_size=4)
        running = c.post("/v1/jobs", json={"dataset_id": ds["id"], "params": long_params}).json()
        queued = c.post("/v1/jobs", json={"dataset_id": ds["id"], "params": long_params}).json()
        # The single worker takes the first job; wait until it is training.
        deadline = time.time() + 120
        while time.time() < deadline:
            job = c.get(f"/v1/jobs/{running['id']}").json()
            if job["status"] == "running" and job["progress"]["stage"] == "classifier":
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"job never started training: {job}\n{service.logs()}")

        r = c.post(f"/v1/jobs/{queued['id']}/cancel")
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        assert c.get(f"/v1/jobs/{queued['id']}").json()["status"] == "cancelled"

        asked = time.time()
        r = c.post(f"/v1/jobs/{running['id']}/cancel")
        assert r.status_code == 200 and r.json()["cancel_requested"] is True
        done = wait_status(
            c, running["id"], {"cancelled", "succeeded", "failed"}, timeout=60, service=service
        )
        assert done["status"] == "cancelled", done
        assert time.time() - asked < 15
        assert done["model_id"] is None
        r = c.post(f"/v1/jobs/{running['id']}/cancel")
        assert r.status_code == 409
        # The cancelled queued job is never run afterwards.
        time.sleep(1.5)
        job = c.get(f"/v1/jobs/{queued['id']}").json()
        assert job["status"] == "cancelled" and job["started_at"] is None and job["deliveries"] == 0
