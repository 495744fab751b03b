"""The terminal commands (`sidyp datasets|jobs|models`, also `python -m sidyp_client`) against a real
embedded `sidyp serve`, configured through SIDYP_URL and SIDYP_API_KEY."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest

from sidyp_client.cli import main
from tests.service.conftest import KEY_1, tiny_params


@pytest.fixture
def env(monkeypatch, client_embedded_service):
    monkeypatch.setenv("SIDYP_URL", client_embedded_service.base_url)
    monkeypatch.setenv("SIDYP_API_KEY", KEY_1)


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_upload_create_wait_report_labels_predict(env, capsys, toy_csv, tiny_backbone, tmp_path):
    code, out, _ = run_cli(capsys, "datasets", "upload", str(toy_csv["path"]), "--name", "cli")
    assert code == 0
    dataset = json.loads(out)
    assert dataset["n_rows"] == 60 and dataset["name"] == "cli"

    params = [
        f"--param={k}={json.dumps(v) if not isinstance(v, str) else v}"
        for k, v in tiny_params(tiny_backbone).items()
    ]
    code, out, _ = run_cli(capsys, "jobs", "create", "--dataset", dataset["id"], *params)
    assert code == 0
    job = json.loads(out)
    assert job["params"]["epochs"] == 1 and job["params"]["backbone"] == "tiny"  # typed, not strings

    code, out, err = run_cli(capsys, "jobs", "wait", job["id"], "--timeout", "180")
    assert code == 0, err
    done = json.loads(out)
    assert done["status"] == "succeeded" and "classifier" in err  # the stage bars went to stderr

    code, out, _ = run_cli(capsys, "jobs", "report", job["id"])
    assert code == 0 and json.loads(out)["n_rows"] == 60

    code, out, _ = run_cli(capsys, "jobs", "labels", job["id"])
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["index"] for r in rows] == list(range(60))

    target = tmp_path / "labels.csv"
    code, _, _ = run_cli(capsys, "jobs", "labels", job["id"], "--csv", str(target))
    assert code == 0 and len(list(csv.reader(io.StringIO(target.read_text())))) == 61

    code, out, _ = run_cli(capsys, "models", "predict", done["model_id"], "the laptop code", "a pasta dinner")
    preds = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [p["text"] for p in preds] == ["the laptop code", "a pasta dinner"]
    assert all(p["label"] in dataset["labels"] for p in preds)


def test_problem_is_printed_with_row_errors_and_exits_non_zero(client_embedded_service, tmp_path):
    """`python -m sidyp_client` on its own, as a user would run it."""
    bad = tmp_path / "bad.csv"
    bad.write_text("text,noisy_label\nhello,a\n   ,b\nworld,b\n")
    env = {"SIDYP_URL": client_embedded_service.base_url, "SIDYP_API_KEY": KEY_1, "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "sidyp_client", "datasets", "upload", str(bad)],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1 and proc.stdout == ""
    assert "error: 422" in proc.stderr and "row 1, column 'text'" in proc.stderr, proc.stderr

    proc = subprocess.run(
        [sys.executable, "-m", "sidyp_client", "jobs", "report", "job_" + "0" * 24],
        env={**env, "SIDYP_API_KEY": "wrong"}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1 and "error: 401" in proc.stderr
