"""report.html: one self-contained page (no script, no network), user strings escaped; the files on disk."""

from __future__ import annotations

import base64
import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

from sidyp_engine.plots import render_plots
from sidyp_engine.report import build_report, write_report_files
from sidyp_engine.report_html import render_report_html
from tests.engine.report_fixtures import EVAL_GOLD, SERVED_PRED, fake_result, one_hot_probs

EVIL = "<script>alert(1)</script>"
EVIL_IMG = '<img src=x onerror="alert(2)">'


class _Elements(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def _evil_report():
    classes = [EVIL, EVIL_IMG, "plain"]
    given = [classes[i % 3] for i in range(30)]
    result = fake_result(classes=classes, given=given, diagnostics={"texts_truncated": 2, "max_length": 16})
    gold = [classes[i % 3] for i in range(len(EVAL_GOLD))]
    result.extra_posteriors = result.extra_noisy_posteriors = None
    probs = result.posteriors[: len(gold)]
    return build_report(result, eval_gold=gold, served_eval_probs=probs, job_id="job_<b>x</b>")


def test_user_strings_are_escaped_and_nothing_can_run():
    report = _evil_report()
    page = render_report_html(report, render_plots(report))
    parser = _Elements()
    parser.feed(page)
    tags = [t for t, _ in parser.tags]
    assert "script" not in tags and "b" not in tags
    assert not any(k.startswith("on") for _, attrs in parser.tags for k in attrs)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "job_&lt;b&gt;x&lt;/b&gt;" in page
    # the only images are the inline plots; nothing is fetched from anywhere
    srcs = [attrs["src"] for t, attrs in parser.tags if t == "img"]
    assert srcs and all(s.startswith("data:image/svg+xml;base64,") for s in srcs)
    assert not re.search(r"(src|href)=\"(https?:|//)", page)
    assert "texts are longer than max_length=16" in page


def test_html_plots_are_the_rendered_svgs():
    report = build_report(fake_result(), eval_gold=EVAL_GOLD, served_eval_probs=one_hot_probs(SERVED_PRED))
    plots = render_plots(report)
    page = render_report_html(report, plots)
    embedded = re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', page)
    assert len(embedded) == len(plots) == 5
    for data in embedded:
        assert ET.fromstring(base64.b64decode(data)).tag.endswith("svg")
    assert "Scores on 6 gold-labelled rows" in page and "served model" in page


def test_write_report_files_puts_report_plots_and_html_side_by_side(tmp_path):
    report = build_report(fake_result())
    names = write_report_files(tmp_path, report)
    assert json.loads((tmp_path / "report.json").read_text())["version"] == 2
    assert sorted(names) == ["class_distribution", "label_quality", "noise_matrix"]
    for name in names:
        assert (tmp_path / "plots" / f"{name}.svg").stat().st_size > 0
        assert (tmp_path / "plots" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "report.html").read_text().startswith("<!DOCTYPE html>")


def _estimate(acc, low, high, method="posterior", rows=178):
    return {"accuracy": acc, "low": low, "high": high, "method": method, "rows": rows}


def test_the_page_says_what_was_delivered_and_why_with_the_estimates():
    selection = {
        "kept": "plain",
        "kept_model": "plain_model",
        "reason": "the run estimates 24% of the labels wrong, below the 40% where refinement has helped",
        "estimates": {
            "plain": _estimate(0.81, 0.70, 0.86),
            "refined": _estimate(0.79, 0.75, 0.83),
            "plain_model": _estimate(0.80, 0.69, 0.85),
            "served": _estimate(0.78, 0.74, 0.82),
        },
        "llm_label_accuracy": _estimate(0.76, 0.74, 0.91, rows=1927),
        "noise_share": _estimate(0.24, 0.09, 0.26, rows=1927),
    }
    report = build_report(fake_result(diagnostics={"selection": selection}))
    page = render_report_html(report, {})
    assert "What was delivered, and why" in page
    assert "Labels: the plain classifier&#x27;s labels. Model: the plain classifier (fine-tuned" in page
    assert "below the 40% where refinement has helped" in page
    table = page[page.index("<h3>Estimates</h3>") :]
    for title, cells in (
        ("given (LLM) labels", "<td>0.760</td><td>0.740 \u2013 0.910</td>"),
        ("share of wrong given labels", "<td>0.240</td><td>0.090 \u2013 0.260</td>"),
        ("plain classifier", "<td>0.810</td><td>0.700 \u2013 0.860</td>"),
        ("delivered labels", "<td>0.810</td>"),
        ("delivered model", "<td>0.800</td><td>0.690 \u2013 0.850</td>"),
    ):
        assert f"<td>{title}</td>{cells}" in table
    assert "interval spans the method of moments" in table
    assert "Fitted again" not in page  # no trusted rows: nothing refitted
    for labels, model, words in (
        ("plain", "plain_model", "the plain classifier&#x27;s labels and model"),
        (None, "served", "the distilled served model"),
        ("probe", "served", "the linear probe&#x27;s labels and the distilled served model"),
    ):
        refit = {"trusted_rows": 40, "labels": labels, "model": model, "temperature": 1.2}
        page = render_report_html(
            build_report(fake_result(diagnostics={"selection": selection | {"refit": refit}})), {}
        )
        assert (
            f"<p>Fitted again with the 40 trusted labels in place: {words}. "
            "The estimates are of the fits that left those rows out.</p>" in page
        )
    # a report without a selection (an older job) has no such section
    assert "What was delivered" not in render_report_html(build_report(fake_result()), {})


def test_the_gold_free_note_goes_when_every_estimate_is_measured_on_trusted_rows():
    trusted = _estimate(0.80, 0.71, 0.87, method="trusted", rows=100)
    selection = {"kept": "refined", "kept_model": "served", "reason": "r", "estimates": {"plain": trusted}}
    selection |= {"llm_label_accuracy": trusted, "noise_share": trusted}
    page = render_report_html(build_report(fake_result(diagnostics={"selection": selection})), {})
    assert "trusted rows (Wilson 95 %)" in page and "not their shared bias" not in page
    # the kept model's accuracy carried to the evaluation texts is read from trusted rows too: no note
    carried = _estimate(0.86, 0.78, 0.93, method="transferred", rows=600)
    report = build_report(
        fake_result(diagnostics={"selection": selection | {"evaluation_estimate": carried}})
    )
    assert report["estimates"]["delivered_model_on_evaluation"] == carried
    page = render_report_html(report, {})
    assert (
        "<td>delivered model, on the evaluation texts</td><td>0.860</td><td>0.780 \u2013 0.930</td>" in page
    )
    assert "carried to these texts by confidence" in page and "not their shared bias" not in page
