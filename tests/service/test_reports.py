"""Report v2, its plots and report.html from real finished jobs of a real `sidyp serve` (embedded mode):
one job with a gold-labelled evaluation set, one without and with a class name holding markup."""

from __future__ import annotations

import inspect
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from app.schemas import ReportWarning
from sidyp_core.artifacts import artifact_dir
from sidyp_core.ids import new_id
from sidyp_engine import report as report_module
from tests.conftest import toy_dataset, write_csv
from tests.service.conftest import KEY_2, tiny_params, wait_status

PLOTS = ("reliability", "noise_matrix", "class_distribution", "confusion", "label_quality")
EVIL = "<script>alert(1)</script>"


def _upload(client, path) -> dict:
    r = client.post("/v1/datasets", files={"file": (path.name, path.read_bytes(), "text/csv")})
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture(scope="module")
def jobs(embedded_service, tiny_backbone, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reports")
    texts, noisy, gold, _ = toy_dataset(n_per_class=12)
    etexts, enoisy, egold, _ = toy_dataset(n_per_class=4, seed=7)
    rename = {"food": EVIL}  # a class name that is markup must stay text in every output
    evil_noisy = [rename.get(x, x) for x in noisy]
    with embedded_service.client() as c:
        train = _upload(c, write_csv(tmp / "train.csv", texts, noisy, gold))
        evaluation = _upload(c, write_csv(tmp / "eval.csv", etexts, enoisy, egold))
        evil = _upload(c, write_csv(tmp / "evil.csv", texts, evil_noisy))
        params = tiny_params(tiny_backbone)
        body = {"dataset_id": train["id"], "eval_dataset_id": evaluation["id"], "params": params}
        with_gold = c.post("/v1/jobs", json=body).json()
        without = c.post("/v1/jobs", json={"dataset_id": evil["id"], "params": params}).json()
        done = {}
        for name, job in (("gold", with_gold), ("no_gold", without)):
            done[name] = wait_status(c, job["id"], {"succeeded", "failed"}, 240, embedded_service)
            assert done[name]["status"] == "succeeded", (done[name], embedded_service.logs())
    return {"gold": done["gold"]["id"], "no_gold": done["no_gold"]["id"], "n_eval": evaluation["n_rows"]}


def test_report_v2_scores_the_served_model(embedded_service, jobs):
    with embedded_service.client() as c:
        r = c.get(f"/v1/jobs/{jobs['gold']}/report")
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["version"] == 2 and report["job_id"] == jobs["gold"]
    ev, rel = report["eval"], report["reliability"]
    assert ev["n_scored"] == jobs["n_eval"]
    for key in ("noisy_classifier", "refined_posterior", "served"):
        assert set(ev[key]["per_class"]) == set(report["labels"])
        assert sum(m["support"] for m in ev[key]["per_class"].values()) == jobs["n_eval"]
        assert sum(b["count"] for b in rel[key]) == jobs["n_eval"] and len(rel[key]) == 15
    # what was kept and why reaches API clients at the top level, not only under diagnostics
    assert report["selection"]["kept"] in ("refined", "plain", "probe") and report["selection"]["reason"]
    assert report["selection"] == report["diagnostics"]["selection"]
    assert {"llm_labels", "wrong_label_share"} <= set(report["estimates"])
    # the job's summary metrics carry the served model's scores too
    with embedded_service.client() as c:
        metrics = c.get(f"/v1/jobs/{jobs['gold']}").json()["metrics"]
    assert metrics["eval.served.accuracy"] == ev["served"]["accuracy"]
    assert str(embedded_service.data_dir) not in r.text and "/tmp" not in r.text


def test_every_plot_is_served_as_svg_and_png(embedded_service, jobs):
    with embedded_service.client() as c:
        for name in PLOTS:
            svg = c.get(f"/v1/jobs/{jobs['gold']}/plots/{name}.svg")
            assert svg.status_code == 200 and svg.headers["content-type"] == "image/svg+xml"
            assert ET.fromstring(svg.content).tag == "{http://www.w3.org/2000/svg}svg"
            assert svg.headers["x-content-type-options"] == "nosniff"
            png = c.get(f"/v1/jobs/{jobs['gold']}/plots/{name}.png")
            assert png.status_code == 200 and png.headers["content-type"] == "image/png"
            assert png.content.startswith(b"\x89PNG\r\n\x1a\n")


def test_unknown_or_unavailable_plots_are_404_problems(embedded_service, jobs):
    with embedded_service.client() as c:
        for path in ("plots/histogram.svg", "plots/reliability.gif", "plots/..%2Freport.svg"):
            r = c.get(f"/v1/jobs/{jobs['gold']}/{path}")
            assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json", path
        # without gold labels there is nothing to draw a reliability or confusion plot from
        for name in ("reliability", "confusion"):
            r = c.get(f"/v1/jobs/{jobs['no_gold']}/plots/{name}.png")
            assert r.status_code == 404 and r.json()["type"] == "/problems/plot-not-available"
        assert c.get(f"/v1/jobs/{jobs['no_gold']}/plots/noise_matrix.svg").status_code == 200
        report = c.get(f"/v1/jobs/{jobs['no_gold']}/report").json()
    assert report["eval"] is None and report["reliability"] is None and EVIL in report["labels"]


def test_report_html_is_static_and_escapes_class_names(embedded_service, jobs):
    with embedded_service.client() as c:
        r = c.get(f"/v1/jobs/{jobs['no_gold']}/report.html")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert (
        r.headers["content-security-policy"] == "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    )
    page = r.text
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count('src="data:image/svg+xml;base64,') == 3


def test_other_tenant_sees_none_of_it(embedded_service, jobs):
    paths = ["report", "report.html", "plots/noise_matrix.svg", "plots/reliability.png"]
    with embedded_service.client(KEY_2) as other:
        for path in paths:
            real = other.get(f"/v1/jobs/{jobs['gold']}/{path}")
            missing = other.get(f"/v1/jobs/{new_id('job')}/{path}")
            assert real.status_code == missing.status_code == 404, path
            # the same answer as for a job that does not exist (instance: the path, so it differs)
            assert {**real.json(), "instance": None} == {**missing.json(), "instance": None}


# ------------------------------------------------------------------ in-process: outputs on disk gone or old
@pytest.fixture
def local(tmp_path):
    from fastapi.testclient import TestClient

    from app.main import create_app
    from sidyp_core.config import Settings

    settings = Settings(data_dir=tmp_path / "data", api_keys="t1:" + "k" * 24)
    with TestClient(create_app(settings)) as c:
        c.headers["Authorization"] = "Bearer " + "k" * 24
        job_id = new_id("job")
        c.app.state.store.put("job", {"id": job_id, "object": "job", "tenant": "t1", "status": "succeeded"})
        yield c, artifact_dir(settings.data_dir, "t1", "jobs", job_id), job_id


def test_old_missing_or_partial_outputs_are_clear_problems(local):
    from sidyp_engine.report import build_report, write_report_files
    from tests.engine.report_fixtures import fake_result

    c, folder, job_id = local
    assert c.get(f"/v1/jobs/{job_id}/report").json()["type"] == "/problems/outputs-missing"
    folder.mkdir(parents=True)
    (folder / "report.json").write_text('{"object": "report", "labels": ["a"]}')  # a v1 report
    r = c.get(f"/v1/jobs/{job_id}/plots/noise_matrix.svg")
    assert r.status_code == 410 and r.json()["type"] == "/problems/report-outdated"
    write_report_files(folder, build_report(fake_result(), job_id=job_id))
    assert c.get(f"/v1/jobs/{job_id}/report").json()["version"] == 2
    assert c.get(f"/v1/jobs/{job_id}/plots/label_quality.png").content[:4] == b"\x89PNG"
    (folder / "report.html").unlink()
    r = c.get(f"/v1/jobs/{job_id}/report.html")
    assert r.status_code == 410 and r.headers["content-type"] == "application/problem+json"


def test_every_warning_the_report_can_give_is_named_in_the_api_schema_and_the_report_docs():
    codes = set(re.findall(r'"code": "(\w+)"', inspect.getsource(report_module)))
    assert {
        "noise_gate_close",
        "method_kept_on_expected_gain",
        "texts_truncated",
    } <= codes  # the regex reads them
    described = ReportWarning.model_fields["code"].description
    docs = (Path(__file__).resolve().parents[2] / "docs" / "report.md").read_text()
    assert [c for c in sorted(codes) if c not in described] == []
    assert [c for c in sorted(codes) if f"`{c}`" not in docs] == []
