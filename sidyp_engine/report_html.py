"""One self-contained report.html: the report v2 as tables plus its plots, opening from disk with no network.

Plots are inline `data:` images (an SVG shown through <img> cannot run script); there is no script at all.
Every string from the report (class names, ids, warning texts) goes through `html.escape`.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from html import escape
from typing import Any

from sidyp_engine.plots import MODEL_TITLES
from sidyp_engine.report import ESTIMATE_SOURCES, gold_free_note, shown_estimates
from sidyp_engine.selection import CANDIDATE_DESCRIPTIONS, refit_summary

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 70rem; padding: 0 1rem; color: #222; }
h1 { margin-bottom: 0.2rem; } .meta { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.estimates td:nth-child(3) { white-space: nowrap; } .estimates :is(td, th):nth-child(4) { text-align: left; }
.warnings { background: #fff4e5; border-left: 4px solid #f0a020; padding: 0.5rem 1rem; }
.plots { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; } figure img { max-width: 34rem; height: auto; border: 1px solid #eee; }
"""
_PLOT_CAPTIONS = {
    "reliability": "Reliability diagram: accuracy against confidence, before and after",
    "noise_matrix": "Estimated noise matrix",
    "class_distribution": "Given vs suggested class distribution",
    "confusion": "Confusion matrix on gold labels",
    "label_quality": "Label-quality histogram",
}


class _Safe(str):
    """Already-escaped HTML for a table cell."""


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "\u2013"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return escape(str(value))


def _table(header: list[str], rows: list[list[Any]], css_class: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{c if isinstance(c, _Safe) else _num(c)}</td>" for c in row) + "</tr>"
        for row in rows
    )
    opening = f'<table class="{css_class}">' if css_class else "<table>"
    return f"{opening}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _summary(report: Mapping[str, Any]) -> str:
    n_rows = report["n_rows"]
    rows = [
        ["training rows", n_rows],
        ["with a given label", report["n_labelled"]],
        ["held out for validation", report["n_validation"]],
        ["estimated share of wrong labels", _Safe(f"{report['noise_share']:.1%}")],
        [
            "flagged as label issues",
            _Safe(f"{report['n_flagged']} ({report['n_flagged'] / max(n_rows, 1):.1%})"),
        ],
        ["served model temperature", report["served"]["temperature"]],
    ]
    return "<h2>Summary</h2>" + _table(["", "value"], rows)


def _warnings(report: Mapping[str, Any]) -> str:
    items = "".join(f"<li>{escape(w['message'])}</li>" for w in report.get("warnings") or [])
    return f'<div class="warnings"><h2>Warnings</h2><ul>{items}</ul></div>' if items else ""


def _refit_line(refit: Mapping[str, Any] | None) -> str:
    """What the trusted rows fitted again after the decision (`selection.refit`), said in a line."""
    if not refit:
        return ""
    line = (
        f"Fitted again with the {int(refit.get('trusted_rows', 0))} trusted labels in place: "
        f"{refit_summary(refit.get('labels'), str(refit.get('model')))}. The estimates are of the fits "
        "that left those rows out."
    )
    return f"<p>{escape(line)}</p>"


def _delivered(report: Mapping[str, Any]) -> str:
    """What the do-no-harm stage kept and why, and the accuracy estimates that need no gold labels."""
    selection = report.get("selection") or {}
    if not selection.get("kept"):
        return ""
    labels, model = selection["kept"], selection.get("kept_model")
    html = (
        "<h2>What was delivered, and why</h2>"
        f"<p>Labels: {escape(CANDIDATE_DESCRIPTIONS.get(labels, labels))}. "
        f"Model: {escape(CANDIDATE_DESCRIPTIONS.get(model, str(model)))}.</p>"
        f"{_refit_line(selection.get('refit'))}"
        f'<p class="meta">{escape(str(selection.get("reason", "")))}</p>'
    )
    shown = shown_estimates(report)
    rows = [
        [
            _Safe(escape(title)),
            e["accuracy"],
            _Safe(f"{e['low']:.3f} \u2013 {e['high']:.3f}"),
            _Safe(escape(ESTIMATE_SOURCES.get(e.get("method"), str(e.get("method"))))),
            e.get("rows"),
        ]
        for title, e in shown
    ]
    if rows:
        html += "<h3>Estimates</h3>" + _table(["", "estimate", "interval", "from", "rows"], rows, "estimates")
        if note := gold_free_note(shown):
            html += f'<p class="meta">{escape(note)}</p>'
    return html


def _scores(report: Mapping[str, Any]) -> str:
    ev = report.get("eval")
    if not ev or not ev.get("n_scored"):
        return "<h2>Scores</h2><p>No evaluation rows with gold labels were given, so nothing was scored.</p>"
    rows = [
        [_Safe(escape(title)), s["accuracy"], s["macro_f1"], s["ece"], s["nll"]]
        for key, title in MODEL_TITLES.items()
        if (s := ev.get(key))
    ]
    if ev.get("llm_label_accuracy") is not None:
        rows.insert(0, [_Safe("LLM labels"), ev["llm_label_accuracy"], None, None, None])
    html = f"<h2>Scores on {ev['n_scored']} gold-labelled rows</h2>"
    html += _table(["", "accuracy", "macro-F1", "ECE", "NLL"], rows)
    for key, title in MODEL_TITLES.items():
        if s := ev.get(key):
            per_class = [
                [_Safe(escape(c)), m["precision"], m["recall"], m["f1"], m["support"]]
                for c, m in s["per_class"].items()
            ]
            html += f"<details><summary>Per class: {escape(title)}</summary>"
            html += _table(["class", "precision", "recall", "F1", "support"], per_class) + "</details>"
    return html


def _classes(report: Mapping[str, Any]) -> str:
    dist = report["class_distribution"]
    rows = [
        [
            _Safe(escape(c)),
            dist["given"].get(c, 0),
            dist["suggested"].get(c, 0),
            report["flagged_per_class"].get(c, 0),
        ]
        for c in report["labels"]
    ]
    return "<h2>Classes</h2>" + _table(["class", "given", "suggested", "flagged (by given label)"], rows)


def _plots(plots: Mapping[str, Mapping[str, bytes]]) -> str:
    figures = []
    for name, formats in plots.items():
        data = base64.b64encode(formats["svg"]).decode("ascii")
        caption = escape(_PLOT_CAPTIONS.get(name, name))
        figures.append(
            f'<figure><img src="data:image/svg+xml;base64,{data}" alt="{caption}">'
            f"<figcaption>{caption}</figcaption></figure>"
        )
    return '<h2>Plots</h2><div class="plots">' + "".join(figures) + "</div>" if figures else ""


def render_report_html(report: Mapping[str, Any], plots: Mapping[str, Mapping[str, bytes]]) -> str:
    """The whole page as one string; `plots` as returned by `sidyp_engine.plots.render_plots`."""
    title = "SiDyP report" + (f" \u2013 {report['job_id']}" if report.get("job_id") else "")
    timings = [[_Safe(escape(k)), v] for k, v in (report.get("timings") or {}).items()]
    body = "".join(
        [
            f"<h1>{escape(title)}</h1>",
            f'<p class="meta">created {escape(str(report.get("created_at", "")))}, '
            f"{len(report['labels'])} classes</p>",
            _warnings(report),
            _summary(report),
            _delivered(report),
            _scores(report),
            _plots(plots),
            _classes(report),
            "<h2>Timings (seconds)</h2>" + _table(["stage", "seconds"], timings),
        ]
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>{body}</body></html>\n"
    )
