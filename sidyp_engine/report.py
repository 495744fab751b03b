"""The one report builder: what a calibration run found, as a JSON-safe dict (report v2).

`build_report` is pure: it reads a `CalibrationResult` and, when evaluation rows were given, their gold labels
and the served model's probabilities on them. The worker and the CLI both call it, so the API's report and the
CLI's `report.json` are the same document. `write_report_files` writes it with its plots and `report.html`.

Models scored on gold labels, under these keys everywhere in the report:
  noisy_classifier   the plain fine-tune on the noisy labels (what training on LLM labels gives);
  refined_posterior  SiDyP's refined P(y | x) for the evaluation texts;
  served             the distilled, temperature-scaled classifier the user queries.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from sidyp_engine.metrics import score_all
from sidyp_engine.selection import (
    GATE_CLOSE_BAND,
    METHOD_MIN_EXPECTED_GAIN,
    METHOD_MIN_NOISE,
    METHOD_MIN_ROWS_PER_CLASS,
    SERVED_MOMENTS_TEMPERATURE,
)
from sidyp_engine.stages.prior import labels_are_rule

REPORT_VERSION = 2
RELIABILITY_BINS = 15  # the same equal-width bins as sidyp_engine.metrics.ece
QUALITY_BINS = 20
FEW_ROWS = 5  # a class with fewer labelled rows than this gets a warning
MAX_DIAGNOSTIC_ELEMENTS = 256  # per-row arrays belong to labels.json, not the report
REPORT_FILE = "report.json"
REPORT_HTML_FILE = "report.html"
PLOTS_DIR = "plots"
MODEL_KEYS = ("noisy_classifier", "refined_posterior", "served")
# The plots `sidyp_engine.plots` draws (reliability and confusion only with gold labels), as PLOTS_DIR/NAME.svg|png.
PLOT_NAMES = ("reliability", "noise_matrix", "class_distribution", "confusion", "label_quality")


# ---------------------------------------------------------------------------------------------- metrics
def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> list[list[int]]:
    """counts[i][j]: rows whose gold class is i and whose predicted class is j."""
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return counts.tolist()


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 else float(num / den)


def per_class_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """precision, recall, F1 and support per class; a ratio over zero rows is None (undefined), not 0."""
    counts = np.asarray(confusion_matrix(y_true, y_pred, len(classes)), dtype=np.float64)
    out: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(classes):
        tp, support, predicted = counts[i, i], counts[i].sum(), counts[:, i].sum()
        out[name] = {
            "precision": _ratio(tp, predicted),
            "recall": _ratio(tp, support),
            "f1": _ratio(2 * tp, support + predicted),
            "support": int(support),
        }
    return out


def reliability_bins(probs: np.ndarray, y_true: np.ndarray, n_bins: int = RELIABILITY_BINS) -> list[dict]:
    """Top-label reliability: per equal-width confidence bin (lo, hi], the rows' count, mean confidence and
    accuracy (None in an empty bin). Same bin edges as `metrics.ece`, so the two always agree."""
    probs = np.asarray(probs, dtype=np.float64)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(y_true, dtype=np.int64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bin_of = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        member = bin_of == b
        count = int(member.sum())
        bins.append(
            {
                "lo": round(float(edges[b]), 6),
                "hi": round(float(edges[b + 1]), 6),
                "count": count,
                "confidence": float(confidence[member].mean()) if count else None,
                "accuracy": float(correct[member].mean()) if count else None,
            }
        )
    return bins


def label_quality_histogram(
    quality: np.ndarray, labelled: np.ndarray, flagged: np.ndarray, n_bins: int = QUALITY_BINS
) -> dict[str, Any]:
    """Counts of labelled rows per label-quality bin, all and flagged; the last bin includes 1.0."""
    quality, labelled = np.asarray(quality, dtype=np.float64), np.asarray(labelled, dtype=bool)
    flagged = np.asarray(flagged, dtype=bool)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    counts = np.histogram(quality[labelled], bins=edges)[0]
    counts_flagged = np.histogram(quality[labelled & flagged], bins=edges)[0]
    return {
        "edges": [round(float(e), 6) for e in edges],
        "counts": counts.tolist(),
        "counts_flagged": counts_flagged.tolist(),
    }


# ---------------------------------------------------------------------------------------------- sections
def _count_by_class(values: Sequence[str | None], classes: Sequence[str]) -> dict[str, int]:
    counts = {c: 0 for c in classes}
    for v in values:
        if v is not None and v in counts:
            counts[v] += 1
    return counts


def _score_model(probs: np.ndarray, y: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    scores = score_all(probs, y, len(classes))
    pred = probs.argmax(axis=1)
    return {
        **{k: float(scores[k]) for k in ("accuracy", "macro_f1", "ece", "nll")},
        "per_class": per_class_metrics(y, pred, classes),
        "confusion_matrix": confusion_matrix(y, pred, len(classes)),
    }


def _eval_probabilities(result: Any, served_eval_probs: np.ndarray | None) -> dict[str, np.ndarray]:
    found = {
        "noisy_classifier": result.extra_noisy_posteriors,
        "refined_posterior": result.extra_posteriors,
        "served": served_eval_probs,
    }
    return {k: np.asarray(v, dtype=np.float64) for k, v in found.items() if v is not None}


def _evaluation(
    result: Any,
    eval_gold: Sequence[str | None],
    eval_given: Sequence[str | None] | None,
    served_eval_probs: np.ndarray | None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The `eval` section and the `reliability` section (None when no row has a usable gold label)."""
    index = {c: i for i, c in enumerate(result.classes)}
    keep = np.array([g is not None and g in index for g in eval_gold], dtype=bool)
    section: dict[str, Any] = {
        "n_rows": len(eval_gold),
        "n_scored": int(keep.sum()),
        "n_skipped": int((~keep).sum()),
        "llm_label_accuracy": None,
        **{k: None for k in MODEL_KEYS},
    }
    if not keep.any():
        return section, None
    y = np.array([index[g] for g, k in zip(eval_gold, keep, strict=True) if k], dtype=np.int64)
    if eval_given is not None:  # a missing LLM label counts as wrong
        pairs = [(n, g) for n, g, k in zip(eval_given, eval_gold, keep, strict=True) if k]
        section["llm_label_accuracy"] = float(np.mean([n == g for n, g in pairs]))
    reliability: dict[str, Any] = {"n_bins": RELIABILITY_BINS, "n_rows": int(keep.sum())}
    for key, probs in _eval_probabilities(result, served_eval_probs).items():
        section[key] = _score_model(probs[keep], y, result.classes)
        reliability[key] = reliability_bins(probs[keep], y)
    return section, reliability


def _names(labels: Sequence[str] | Mapping[str, int], shown: int = 10) -> str:
    names = list(labels)
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(repr(n) for n in names[:shown]) + more


def _warnings(result: Any, given_counts: Mapping[str, int], evaluation: dict | None) -> list[dict]:
    out: list[dict] = []
    truncated = result.diagnostics.get("texts_truncated")
    if truncated:
        max_length = result.diagnostics.get("max_length")
        out.append(
            {
                "code": "texts_truncated",
                "message": f"{int(truncated)} of {len(result.given_labels)} training texts are longer than "
                f"max_length={max_length} tokens; only their first {max_length} tokens were used.",
                "count": int(truncated),
                "max_length": max_length,
            }
        )
    unused = [c for c, n in given_counts.items() if n == 0]
    if unused:
        out.append(
            {
                "code": "class_never_labelled",
                "message": f"never among the given labels: {_names(unused)}; the model can only learn these "
                "classes from neighbours, if at all.",
                "labels": unused,
            }
        )
    rare = {c: n for c, n in given_counts.items() if 0 < n < FEW_ROWS}
    if rare:
        out.append(
            {
                "code": "class_few_rows",
                "message": f"fewer than {FEW_ROWS} labelled rows: {_names(rare)}; noise estimates and scores "
                "for these classes are unreliable.",
                "labels": list(rare),
                "counts": rare,
                "threshold": FEW_ROWS,
            }
        )
    disagreement = _flagged_vs_noise(result)
    if disagreement is not None:
        out.append(disagreement)
    rule = _labels_look_like_a_rule(result)
    if rule is not None:
        out.append(rule)
    close = _noise_gate_close(result)
    if close is not None:
        out.append(close)
    expected = _method_kept_on_expected_gain(result)
    if expected is not None:
        out.append(expected)
    few = _few_rows_per_class(result)
    if few is not None:
        out.append(few)
    sample = _trusted_rows_not_random(result)
    if sample is not None:
        out.append(sample)
    if evaluation is not None and evaluation["n_scored"] == 0:
        out.append(
            {
                "code": "eval_not_scored",
                "message": "no evaluation row has a gold label that is one of the classes, so nothing "
                "was scored.",
            }
        )
    return out


# A warning's `asks_for`: what settles it is hand-checked rows drawn at random (the console offers the review
# table's random sample beside it)
ASKS_FOR_TRUSTED_ROWS = "trusted_rows"
FLAGGED_NOISE_GAP = 0.10  # flagged share and estimated share of wrong labels further apart: say why


def _flagged_vs_noise(result: Any) -> dict | None:
    selection = result.diagnostics.get("selection") or {}
    share = (selection.get("noise_share") or {}).get("accuracy")
    flagged = result.diagnostics.get("flagged_share")
    if (
        share is None
        or flagged is None
        or not math.isfinite(share)
        or abs(flagged - share) <= FLAGGED_NOISE_GAP
    ):
        return None
    if flagged < share:
        why = (
            "the plain classifier was kept, and it agrees with the labels it was trained on"
            if selection.get("kept") == "plain"
            else "on many likely-wrong rows no other class is more probable than the given one"
        )
    else:
        why = "the suggested labels also move rows the estimate counts as right: check a sample of the flags"
    return {
        "code": "flagged_vs_noise_share",
        "message": f"{flagged:.0%} of the labelled rows are flagged but about {share:.0%} of the labels are "
        f"estimated wrong; {why}.",
        "flagged_share": round(float(flagged), 4),
        "estimated_noise_share": round(float(share), 4),
    }


def _noise_gate_close(result: Any) -> dict | None:
    """The gold-free choice between refined and plain read an estimate near its threshold: say so, and what
    settles it (docs/method.md, "Thirteenth round")."""
    selection = result.diagnostics.get("selection") or {}
    share = selection.get("method_noise_share")
    if not selection.get("gate_close") or share is None:
        return None
    kept = "the refined labels" if selection.get("kept") == "refined" else "the plain classifier"
    return {
        "code": "noise_gate_close",
        "asks_for": ASKS_FOR_TRUSTED_ROWS,
        "message": f"the run estimates {share:.0%} of the labels wrong, within {GATE_CLOSE_BAND * 100:.0f} "
        f"points of the {METHOD_MIN_NOISE:.0%} that decides between the refined labels and the plain "
        f"classifier ({kept} kept). The estimate has been off by more than that on development sets, so the "
        "choice could have gone the other way. Add about 100 hand-checked rows as trusted_label: the choice "
        "is then made on them.",
        "estimated_noise_share": round(float(share), 4),
        "threshold": METHOD_MIN_NOISE,
        "band": GATE_CLOSE_BAND,
        "kept": selection.get("kept"),
    }


def _method_kept_on_expected_gain(result: Any) -> dict | None:
    """The gold-free gate opened on the refined posteriors' expected gain, not on the wrong-label share:
    that view is the method's own, and trusted rows can confirm it (docs/method.md, "Thirty-ninth round")."""
    selection = result.diagnostics.get("selection") or {}
    gain, share = selection.get("expected_gain"), selection.get("method_noise_share")
    found = selection.get("estimates") or {}
    if gain is None or share is None or "refined" not in found or "plain" not in found:
        return None
    refined, plain = found["refined"]["accuracy"], found["plain"]["accuracy"]
    return {
        "code": "method_kept_on_expected_gain",
        "asks_for": ASKS_FOR_TRUSTED_ROWS,
        "message": f"the method's output was kept although the run estimates {share:.0%} of the labels "
        f"wrong, under the {METHOD_MIN_NOISE:.0%} where refinement has helped, because the refined posteriors "
        f"expect the refined labels to be {gain * 100:.0f} points more accurate ({refined:.0%} against "
        f"{plain:.0%}). That view is the method's own and can over-state its gain; where it read this much on "
        "development sets, the method was the better choice. Add about 100 hand-checked rows as "
        "trusted_label to confirm it: the choice is then made on them.",
        "estimated_gain": round(float(gain), 4),
        "threshold": METHOD_MIN_EXPECTED_GAIN,
        "estimated_noise_share": round(float(share), 4),
    }


def _few_rows_per_class(result: Any) -> dict | None:
    """The gate kept plain because the training set is small for the method: say so, and what settles it
    (docs/method.md, "Thirty-fifth round")."""
    selection = result.diagnostics.get("selection") or {}
    per_class = selection.get("rows_per_class")
    if not selection.get("few_rows") or per_class is None:
        return None
    trusted = (selection.get("llm_label_accuracy") or {}).get("method") == "trusted"
    share = selection.get("method_noise_share")
    if trusted:  # they were read: the method was not clearly better on them
        read, ask = " as the trusted rows did not find the refined labels clearly better", ""
    else:
        read = "" if share is None else f" whatever share of wrong labels it estimates ({share:.0%})"
        ask = (
            " Add about 100 hand-checked rows as trusted_label: the refined labels are then kept only where "
            "those rows find them clearly better."
        )
    warning = {
        "code": "few_rows_per_class",
        "message": f"the run has {per_class:.0f} labelled training rows per class, under the "
        f"{METHOD_MIN_ROWS_PER_CLASS} where refinement has helped, so the plain classifier was kept{read}. "
        "On development sets cut below it the refined labels were worse than plain fine-tuning on most runs, "
        "and the run's own estimates over-stated them." + ask,
        "rows_per_class": round(float(per_class), 1),
        "threshold": METHOD_MIN_ROWS_PER_CLASS,
    }
    if not trusted:
        warning["asks_for"] = ASKS_FOR_TRUSTED_ROWS
    return warning


TRUSTED_SAMPLE_FIELDS = (
    "trusted_rows",
    "given_label_probability_trusted",
    "given_label_probability_others",
    "z",
)


def _trusted_rows_not_random(result: Any) -> dict | None:
    """Every figure measured on the trusted rows assumes they are a random draw of the labelled rows; rows
    chosen for review because their label looked wrong are not (`estimates.trusted_sample_check`)."""
    check = (result.diagnostics.get("selection") or {}).get("trusted_sample")
    if not check or check.get("looks_random", True):
        return None
    lower = check["given_label_probability_trusted"] < check["given_label_probability_others"]
    picked = (
        "look picked among likely-wrong labels (as when reviewing the worst label quality first)"
        if lower
        else "look picked among likely-right labels"
    )
    return {
        "code": "trusted_rows_not_random",
        "asks_for": ASKS_FOR_TRUSTED_ROWS,
        "message": f"the {check['trusted_rows']} trusted rows {picked}: the noisy-label classifier gives their "
        f"given labels {check['given_label_probability_trusted']:.0%} probability on average against "
        f"{check['given_label_probability_others']:.0%} on the other validation rows. The share of wrong "
        "labels, the accuracies and the temperatures measured on them then read those rows, not your data "
        f"as a whole ({'too pessimistic' if lower else 'too optimistic'}). Add hand-checked rows drawn at random "
        "(the review table's 'random sample' order).",
        **{k: check[k] for k in TRUSTED_SAMPLE_FIELDS},
    }


def _labels_look_like_a_rule(result: Any) -> dict | None:
    """Rule-made labels (the classifiers reproduce the held-out labels) break what the gold-free numbers
    assume: the clean set the prior votes with is then about as wrong as the rest, so the confidences and
    accuracy estimates read agreement with the labeller (docs/method.md, "Where the gold-free numbers fail").
    Trusted rows are the remedy, so the warning goes once their temperature is in use."""
    agreement = result.diagnostics.get("held_out_label_agreement")
    selection = result.diagnostics.get("selection") or {}
    if agreement is None or not math.isfinite(agreement) or not labels_are_rule(agreement):
        return None
    source = str(selection.get("temperature_source", ""))
    if source.startswith("trusted"):
        return None
    served = (
        " The served model's confidence follows the method-of-moments estimate instead, which reads its "
        "agreement with the labels and can be off either way."
        if source.startswith(SERVED_MOMENTS_TEMPERATURE)
        else ""
    )
    return {
        "code": "labels_look_like_a_rule",
        "asks_for": ASKS_FOR_TRUSTED_ROWS,
        "message": f"the classifiers reproduce {agreement:.0%} of the held-out labels: the labels look like a "
        "rule of the text (keyword or pattern votes) rather than a labeller's habits. The gold-free confidences "
        f"and accuracy estimates can then be far too low.{served} Add about 100 hand-checked rows as "
        "trusted_label to calibrate against truth.",
        "held_out_label_agreement": round(float(agreement), 4),
    }


# the `estimates` section's rows and methods, in the words report.html and `sidyp calibrate` show
ESTIMATE_TITLES = {
    "llm_labels": "given (LLM) labels",
    "wrong_label_share": "share of wrong given labels",
    "noisy_classifier": "plain classifier",
    "delivered_labels": "delivered labels",
    "delivered_model": "delivered model",
    "noisy_classifier_on_evaluation": "plain classifier, on the evaluation texts",
    "delivered_model_on_evaluation": "delivered model, on the evaluation texts",
}
ESTIMATE_SOURCES = {
    "posterior": "refined posteriors; interval spans the method of moments'",
    "moments": "method of moments",
    "bound": "bound: noise matrix near-singular",
    "held": "method of moments, held to the estimated share of wrong labels (the model reproduces its labels)",
    "trusted": "trusted rows (Wilson 95 %)",
    "transferred": "trusted rows, carried to these texts by confidence (ATC; bootstrap 95 %)",
    "carried": "its estimate on the validation texts, carried to these texts by confidence (ATC)",
}
MEASURED_METHODS = ("trusted", "transferred")  # read from trusted rows, not from the noisy labels
GOLD_FREE_NOTE = (
    "Without trusted rows these are estimates from the noisy labels alone: the interval covers row sampling "
    "and the disagreement of two estimators, not their shared bias. About 100 hand-checked rows "
    "(trusted_label) replace them with measured accuracies."
)


def shown_estimates(report: Mapping[str, Any]) -> list[tuple[str, dict]]:
    """(title, estimate) for each row of the report's `estimates` that has a value, in display order."""
    found = report.get("estimates") or {}
    return [
        (title, e)
        for key, title in ESTIMATE_TITLES.items()
        if (e := found.get(key)) and e.get("accuracy") is not None
    ]


def gold_free_note(shown: list[tuple[str, dict]]) -> str | None:
    """GOLD_FREE_NOTE when any shown estimate is gold-free (trusted rows measure, they do not estimate)."""
    return GOLD_FREE_NOTE if any(e.get("method") not in MEASURED_METHODS for _, e in shown) else None


def _estimates_section(selection: Mapping[str, Any] | None) -> dict | None:
    """Estimated accuracies (with intervals) of the LLM labels, the plain classifier and what was kept."""
    if not selection:
        return None
    found = selection.get("estimates", {})
    return {
        "llm_labels": selection.get("llm_label_accuracy"),
        "wrong_label_share": selection.get("noise_share"),
        "noisy_classifier": found.get("plain"),
        "delivered_labels": found.get(selection.get("kept")),
        "delivered_model": found.get(selection.get("kept_model")),
        "noisy_classifier_on_evaluation": (selection.get("evaluation_estimates") or {}).get("plain"),
        "delivered_model_on_evaluation": selection.get("evaluation_estimate"),
    }


# ---------------------------------------------------------------------------------------------- JSON safety
_DROP = object()  # what clean_diagnostics returns for a value to leave out


def _looks_like_path(text: str) -> bool:
    return "/" in text or "\\" in text or text.startswith("~")


def clean_diagnostics(value: Any) -> Any:
    """Diagnostics made JSON-safe for a tenant: numbers, flags, short lists; no paths, no per-row arrays
    (a path-like string, a long array or an unknown object is left out)."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch tensor
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray | np.generic):
        if np.size(value) > MAX_DIAGNOSTIC_ELEMENTS:
            return _DROP
        value = value.tolist()
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return _DROP if _looks_like_path(value) else value
    if isinstance(value, Mapping):
        kept = {str(k): clean_diagnostics(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v is not _DROP}
    if isinstance(value, list | tuple):
        if len(value) > MAX_DIAGNOSTIC_ELEMENTS:
            return _DROP
        return [v for v in (clean_diagnostics(x) for x in value) if v is not _DROP]
    return _DROP


def _finite(value: Any) -> Any:
    """NaN and infinity are not JSON: they become None everywhere in the report."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------- the report
def build_report(
    result: Any,
    *,
    eval_gold: Sequence[str | None] | None = None,
    eval_given: Sequence[str | None] | None = None,
    served_eval_probs: np.ndarray | None = None,
    inputs: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    job_id: str | None = None,
) -> dict[str, Any]:
    """Report v2 of one run.

    eval_gold / eval_given: gold and LLM labels of the evaluation rows (the `extra_texts` of the run), None
    where missing; served_eval_probs: the served model's [E, C] probabilities on the same rows. Without
    eval_gold the `eval` and `reliability` sections are None. `inputs` and `config` are copied as given
    (the caller decides what is safe to show: dataset ids for the API, file names for the CLI).
    """
    classes = list(result.classes)
    given = list(result.given_labels)
    labelled = np.array([g is not None for g in given], dtype=bool)
    flags = np.asarray(result.is_label_issue, dtype=bool)
    given_counts = _count_by_class(given, classes)
    evaluation, reliability = (None, None)
    if eval_gold is not None:
        evaluation, reliability = _evaluation(result, eval_gold, eval_given, served_eval_probs)
    report = {
        "object": "report",
        "version": REPORT_VERSION,
        "job_id": job_id,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "labels": classes,
        "inputs": dict(inputs or {}),
        "config": clean_diagnostics(dict(config or {})),
        "n_rows": len(given),
        "n_labelled": int(labelled.sum()),
        "n_validation": int(np.asarray(result.is_validation, dtype=bool).sum()),
        "noise_share": float(result.noise_share),
        "noise_matrix": [[round(float(x), 6) for x in row] for row in np.asarray(result.noise_matrix)],
        "n_flagged": int(flags.sum()),
        "flagged_per_class": _count_by_class([g for g, f in zip(given, flags, strict=True) if f], classes),
        "class_distribution": {
            "given": given_counts,
            "suggested": _count_by_class(result.suggested_labels, classes),
        },
        "label_quality_histogram": label_quality_histogram(result.label_quality, labelled, flags),
        "served": {"temperature": float(result.model.temperature) if result.model is not None else None},
        "eval": evaluation,
        "reliability": reliability,
        "selection": clean_diagnostics(result.diagnostics.get("selection")),
        "estimates": clean_diagnostics(_estimates_section(result.diagnostics.get("selection"))),
        "warnings": _warnings(result, given_counts, evaluation),
        "timings": {k: round(float(v), 3) for k, v in result.timings.items()},
        "diagnostics": clean_diagnostics(result.diagnostics),
    }
    return _finite(report)


def write_report_files(directory: str | Path, report: Mapping[str, Any]) -> list[str]:
    """Write report.json, plots/NAME.svg|png and report.html into `directory`; returns the plot names."""
    from sidyp_engine.plots import render_plots
    from sidyp_engine.report_html import render_report_html

    directory = Path(directory)
    plots = render_plots(report)
    (directory / PLOTS_DIR).mkdir(parents=True, exist_ok=True)
    for name, formats in plots.items():
        for ext, data in formats.items():
            (directory / PLOTS_DIR / f"{name}.{ext}").write_bytes(data)
    with open(directory / REPORT_FILE, "w", encoding="utf-8") as f:
        json.dump(report, f, ensure_ascii=False, indent=1)
    (directory / REPORT_HTML_FILE).write_text(render_report_html(report, plots), encoding="utf-8")
    return list(plots)
