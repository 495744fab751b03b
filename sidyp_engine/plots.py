"""The report's plots, drawn from a report v2 dict with matplotlib's Agg renderer (no display needed).

`render_plots(report)` returns {name: {"svg": bytes, "png": bytes}} for every plot the report has data for:
the reliability and confusion plots need evaluation rows with gold labels. Figures are built with the
object API (`Figure`), not pyplot, so no global figure state is kept between calls. Text in the SVG is drawn
as paths, so a class name can never become markup in it.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sidyp_engine.report import PLOT_NAMES

PLOT_FORMATS = ("svg", "png")
MODEL_TITLES = {
    "noisy_classifier": "noisy-label classifier (before)",
    "refined_posterior": "refined posterior (after)",
    "served": "served model (after)",
}
_COLOURS = {"noisy_classifier": "#d62728", "refined_posterior": "#1f77b4", "served": "#2ca02c"}
_ANNOTATE_UP_TO = 12  # classes; beyond that cell values would not fit in the heatmaps


def _label(name: str, width: int = 24) -> str:
    """A class name as a tick label: shortened, and `$` escaped so matplotlib does not read it as math."""
    short = name if len(name) <= width else name[: width - 1] + "\u2026"
    return short.replace("$", r"\$")


def _square_size(n_classes: int) -> tuple[float, float]:
    side = min(4.5 + 0.35 * n_classes, 14.0)
    return side + 1.0, side


# ---------------------------------------------------------------------------------------------- figures
def _reliability(report: Mapping[str, Any]) -> Figure | None:
    reliability = report.get("reliability")
    if not reliability:
        return None
    fig = Figure(figsize=(6.0, 6.0))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect calibration")
    scored = report.get("eval") or {}
    for key, title in MODEL_TITLES.items():
        bins = reliability.get(key)
        if not bins:
            continue
        used = [b for b in bins if b["count"]]
        ece = (scored.get(key) or {}).get("ece")
        name = f"{title}, ECE {ece:.3f}" if ece is not None else title
        top.plot(
            [b["confidence"] for b in used],
            [b["accuracy"] for b in used],
            marker="o",
            color=_COLOURS[key],
            label=name,
        )
        centres = [(b["lo"] + b["hi"]) / 2 for b in bins]
        bottom.step(centres, [b["count"] for b in bins], where="mid", color=_COLOURS[key])
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy on gold labels")
    top.set_title(f"Reliability on {reliability.get('n_rows', 0)} gold-labelled rows")
    top.legend(loc="upper left", fontsize=8)
    bottom.set(xlabel="confidence (top class)", ylabel="rows")
    fig.tight_layout()
    return fig


def _heatmap(matrix: np.ndarray, labels: list[str], title: str, xlabel: str, ylabel: str, fmt) -> Figure:
    fig = Figure(figsize=_square_size(len(labels)))
    ax = fig.subplots()
    shown = ax.imshow(matrix, cmap="Blues", vmin=0.0, vmax=max(float(matrix.max()), 1e-9))
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    ticks = np.arange(len(labels))
    size = 9 if len(labels) <= _ANNOTATE_UP_TO else 6
    ax.set_xticks(ticks, [_label(c) for c in labels], rotation=45, ha="right", fontsize=size)
    ax.set_yticks(ticks, [_label(c) for c in labels], fontsize=size)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.set_title(title)
    if len(labels) <= _ANNOTATE_UP_TO:
        half = matrix.max() / 2
        for i, j in np.ndindex(matrix.shape):
            colour = "white" if matrix[i, j] > half else "black"
            ax.text(j, i, fmt(i, j), ha="center", va="center", fontsize=8, color=colour)
    fig.tight_layout()
    return fig


def _noise_matrix(report: Mapping[str, Any]) -> Figure | None:
    matrix = np.asarray(report.get("noise_matrix") or [], dtype=np.float64)
    if matrix.size == 0:
        return None
    return _heatmap(
        matrix,
        list(report["labels"]),
        "Estimated noise: P(given label | true class)",
        "given (LLM) label",
        "true class",
        lambda i, j: f"{matrix[i, j]:.2f}",
    )


def _confusion(report: Mapping[str, Any]) -> Figure | None:
    scored = report.get("eval") or {}
    key = next((k for k in ("served", "refined_posterior") if scored.get(k)), None)
    if key is None:
        return None
    counts = np.asarray(scored[key]["confusion_matrix"], dtype=np.float64)
    support = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, support, out=np.zeros_like(counts), where=support > 0)
    return _heatmap(
        share,
        list(report["labels"]),
        f"Confusion matrix: {MODEL_TITLES[key].split(' (')[0]} on gold labels",
        "predicted class",
        "gold class",
        lambda i, j: f"{int(counts[i, j])}",
    )


def _class_distribution(report: Mapping[str, Any]) -> Figure | None:
    dist = report.get("class_distribution")
    if not dist:
        return None
    labels = list(report["labels"])
    given = [dist["given"].get(c, 0) for c in labels]
    suggested = [dist["suggested"].get(c, 0) for c in labels]
    positions, width = np.arange(len(labels)), 0.4
    horizontal = len(labels) > 8
    fig = Figure(figsize=(7.0, max(3.5, 0.3 * len(labels))) if horizontal else (7.0, 4.0))
    ax = fig.subplots()
    bar = ax.barh if horizontal else ax.bar
    bar(positions - width / 2, given, width, label="given (LLM)", color="#ff7f0e")
    bar(positions + width / 2, suggested, width, label="suggested (SiDyP)", color="#1f77b4")
    names = [_label(c) for c in labels]
    if horizontal:
        ax.set_yticks(positions, names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("rows")
    else:
        ax.set_xticks(positions, names, rotation=30, ha="right")
        ax.set_ylabel("rows")
    ax.set_title("Class distribution: given vs suggested labels")
    ax.legend()
    fig.tight_layout()
    return fig


def _label_quality(report: Mapping[str, Any]) -> Figure | None:
    hist = report.get("label_quality_histogram")
    if not hist:
        return None
    edges = np.asarray(hist["edges"], dtype=np.float64)
    counts = np.asarray(hist["counts"], dtype=np.float64)
    flagged = np.asarray(hist["counts_flagged"], dtype=np.float64)
    widths = np.diff(edges)
    fig = Figure(figsize=(7.0, 4.0))
    ax = fig.subplots()
    ax.bar(edges[:-1], counts - flagged, widths, align="edge", color="#1f77b4", label="not flagged")
    ax.bar(
        edges[:-1], flagged, widths, bottom=counts - flagged, align="edge", color="#d62728", label="flagged"
    )
    ax.set(xlim=(0, 1), xlabel="label quality: P(given label | text)", ylabel="labelled rows")
    ax.set_title("Label quality of the given labels (low = likely wrong)")
    ax.legend()
    fig.tight_layout()
    return fig


_BUILDERS: dict[str, Callable[[Mapping[str, Any]], Figure | None]] = {
    "reliability": _reliability,
    "noise_matrix": _noise_matrix,
    "class_distribution": _class_distribution,
    "confusion": _confusion,
    "label_quality": _label_quality,
}


# ---------------------------------------------------------------------------------------------- output
def figure_bytes(fig: Figure) -> dict[str, bytes]:
    """The figure as SVG (no date, so reruns give the same file) and PNG."""
    FigureCanvasAgg(fig)
    out: dict[str, bytes] = {}
    for fmt in PLOT_FORMATS:
        buf = io.BytesIO()
        metadata = {"Date": None} if fmt == "svg" else None
        fig.savefig(buf, format=fmt, dpi=100, metadata=metadata)
        out[fmt] = buf.getvalue()
    return out


def render_plots(report: Mapping[str, Any]) -> dict[str, dict[str, bytes]]:
    """{name: {"svg": bytes, "png": bytes}} for each plot of PLOT_NAMES the report has data for."""
    plots: dict[str, dict[str, bytes]] = {}
    for name in PLOT_NAMES:
        fig = _BUILDERS[name](report)
        if fig is not None:
            plots[name] = figure_bytes(fig)
    return plots
