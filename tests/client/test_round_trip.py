"""The client against a real `sidyp serve`, embedded (SQLite) and Celery (Redis + a `sidyp worker`):
upload -> job -> wait -> events -> labels -> report -> predict, and the typed errors a tenant meets."""

from __future__ import annotations

import io
import json
import math

import pytest

from sidyp_client import (
    AuthenticationError,
    Client,
    ConflictError,
    NotFoundError,
    SidypError,
    ValidationError,
)
from tests.service.conftest import KEY_1, KEY_2, tiny_params

ENGINE_STAGES = ["classifier", "prior", "refiner", "posterior", "served"]


def test_round_trip_in_both_modes(any_service, tiny_backbone, toy_csv, capsys):
    with Client(any_service.base_url, KEY_1) as client:
        dataset = client.datasets.create(toy_csv["path"], name="toy")
        assert dataset.n_rows == 60 and sorted(dataset.labels) == sorted(toy_csv["classes"])

        job = client.jobs.create(dataset.id, tiny_params(tiny_backbone))
        assert job.status == "queued" and job.dataset_id == dataset.id and not job.done
        done = client.jobs.wait(job.id, timeout=180, poll_interval=0.3)
        assert done.status == "succeeded", (done, any_service.logs())
        assert done.model_id and done.progress.stage == "succeeded" and done.error is None

        # wait() drew one bar per stage it saw, on stderr; stdout stays clean for the caller's output.
        out, err = capsys.readouterr()
        assert out == "" and any(stage in err for stage in ENGINE_STAGES), err

        events = list(client.jobs.events(done.id, page_size=5))  # several pages
        assert [e.seq for e in events] == list(range(len(events)))
        assert events[0].stage == "queued" and events[-1].stage == "succeeded"
        assert [s for s in dict.fromkeys(e.stage for e in events) if s in ENGINE_STAGES] == ENGINE_STAGES

        rows = list(client.jobs.labels(done.id, page_size=7))  # 9 pages
        assert [r["index"] for r in rows] == list(range(60))
        assert [r["text"] for r in rows] == toy_csv["texts"]
        assert all(r["suggested_label"] in dataset.labels for r in rows)

        report = client.jobs.report(done.id)
        assert report["job_id"] == done.id and report["n_rows"] == 60
        assert report["n_flagged"] == sum(r["is_label_issue"] for r in rows)

        model = client.models.get(done.model_id)
        assert model.job_id == done.id and sorted(model.labels) == sorted(dataset.labels)
        preds = client.models.predict(model.id, ["the football match goal today", "the pizza recipe"])
        assert [p.text for p in preds] == ["the football match goal today", "the pizza recipe"]
        for p in preds:
            assert p.label in model.labels and set(p.probabilities) == set(model.labels)
            assert math.isclose(sum(p.probabilities.values()), 1.0, abs_tol=1e-4)
            assert p.confidence == max(p.probabilities.values())

        assert done.id in [j.id for j in client.jobs.list()]
        assert model.id in [m.id for m in client.models.list()]
        with pytest.raises(ConflictError) as excinfo:  # a finished job cannot be cancelled
            client.jobs.cancel(done.id)
        assert excinfo.value.status == 409 and excinfo.value.type.endswith("job-finished")


def test_datasets_from_a_file_object_and_a_dataframe_then_list_get_delete(client, toy_csv):
    pd = pytest.importorskip("pandas")
    raw = toy_csv["path"].read_bytes()
    from_file = client.datasets.create(io.BytesIO(raw), filename="from-file.csv")
    assert from_file.name == "from-file.csv" and from_file.n_rows == 60

    frame = pd.DataFrame({"sentence": toy_csv["texts"][:30], "llm": toy_csv["noisy"][:30]})
    from_frame = client.datasets.create(
        frame, name="frame", text_column="sentence", label_column="llm", labels=toy_csv["classes"]
    )
    assert from_frame.n_rows == 30 and from_frame.text_column == "sentence"
    assert from_frame.labels == toy_csv["classes"]  # declared order kept

    ids = [d.id for d in client.datasets.list(page_size=1)]  # one per page: the cursor is followed
    assert ids.index(from_frame.id) < ids.index(from_file.id)  # newest first
    assert client.datasets.get(from_file.id) == from_file

    client.datasets.delete(from_file.id)
    with pytest.raises(NotFoundError) as excinfo:
        client.datasets.get(from_file.id)
    assert excinfo.value.status == 404 and excinfo.value.detail == "No such dataset."


def test_bad_upload_raises_validation_error_with_its_row_errors(client):
    bad = b"text,noisy_label\nhello there,a\n   ,b\nfine text,b\nanother one,\n"
    with pytest.raises(ValidationError) as excinfo:
        client.datasets.create(bad, filename="bad.csv")
    exc = excinfo.value
    assert isinstance(exc, SidypError) and exc.status == 422
    assert exc.type.startswith("/problems/") and exc.title and exc.detail
    rows = [e["row"] for e in exc.errors]
    assert 1 in rows, exc.errors  # the blank text is data row 1
    assert all(e["column"] == "text" for e in exc.errors if e["row"] == 1)


def test_unknown_ids_and_other_tenants_are_not_found_and_a_bad_key_is_refused(client, finished_job):
    with pytest.raises(NotFoundError):
        client.jobs.get("job_" + "0" * 24)
    with pytest.raises(NotFoundError):
        client.models.predict("model_doesnotexist", ["x"])
    with Client(client.base_url, KEY_2) as other_tenant:
        with pytest.raises(NotFoundError):
            other_tenant.jobs.report(finished_job.id)
    with Client(client.base_url, "not-a-key") as stranger:
        with pytest.raises(AuthenticationError) as excinfo:
            list(stranger.datasets.list())
    assert excinfo.value.status == 401


def test_labels_as_a_dataframe_and_as_the_server_csv(client, finished_job, tmp_path):
    pytest.importorskip("pandas")
    frame = client.jobs.labels_dataframe(finished_job.id, page_size=25)
    assert list(frame.index) == list(range(60))
    assert {"text", "suggested_label", "label_quality", "is_label_issue"} <= set(frame.columns)

    out = tmp_path / "labels.csv"
    content = client.jobs.labels_csv(finished_job.id, path=out)
    assert out.read_bytes() == content
    lines = content.decode("utf-8").splitlines()
    assert lines[0].startswith("index,text,") and len(lines) == 61


def test_cancelled_job_ends_the_wait_and_the_cli_says_so(client, toy_csv, tiny_backbone, capsys, monkeypatch):
    from sidyp_client.cli import main

    dataset = client.datasets.create(toy_csv["path"])
    job = client.jobs.create(dataset.id, tiny_params(tiny_backbone, epochs=5))
    cancelled = client.jobs.cancel(job.id)
    assert cancelled.cancel_requested and cancelled.status in ("cancelled", "running")
    monkeypatch.setenv("SIDYP_URL", client.base_url)
    monkeypatch.setenv("SIDYP_API_KEY", KEY_1)
    assert main(["jobs", "wait", job.id, "--timeout", "60", "--quiet"]) == 3  # ended, but not succeeded
    out, err = capsys.readouterr()
    assert json.loads(out)["status"] == "cancelled" and f"job {job.id} cancelled" in err
    assert client.jobs.get(job.id).done
