"""Report v2: per-class metrics and confusion matrix against a hand-computed case, reliability bins,
warnings, and what a tenant must never see in it (paths, per-row arrays, NaN)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sidyp_engine.metrics import ece
from sidyp_engine.report import (
    REPORT_VERSION,
    build_report,
    confusion_matrix,
    per_class_metrics,
    reliability_bins,
)
from tests.engine.report_fixtures import CLASSES, EVAL_GOLD, SERVED_PRED, fake_result, one_hot_probs


def _ids(labels):
    return np.array([CLASSES.index(x) for x in labels])


def test_per_class_metrics_and_confusion_match_a_hand_computed_case():
    gold, pred = _ids(["a", "a", "a", "b", "b", "c"]), _ids(["a", "a", "b", "b", "c", "c"])
    # rows: gold a, b, c, d; columns: predicted a, b, c, d
    assert confusion_matrix(gold, pred, 4) == [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    m = per_class_metrics(gold, pred, CLASSES)
    assert m["a"] == {
        "precision": 1.0,
        "recall": pytest.approx(2 / 3),
        "f1": pytest.approx(0.8),
        "support": 3,
    }
    assert m["b"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert m["c"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3), "support": 1}
    # a class that neither occurs nor is predicted has undefined scores, not zeros
    assert m["d"] == {"precision": None, "recall": None, "f1": None, "support": 0}


def test_reliability_bins_of_a_perfectly_calibrated_model():
    # 10 rows at confidence 0.8 with 8 right, 5 at 0.6 with 3 right: accuracy equals confidence in each bin.
    probs = np.array([[0.8, 0.2]] * 10 + [[0.6, 0.4]] * 5)
    y = np.array([0] * 8 + [1] * 2 + [0] * 3 + [1] * 2)
    bins = reliability_bins(probs, y)
    assert len(bins) == 15 and sum(b["count"] for b in bins) == 15
    used = [b for b in bins if b["count"]]
    assert [b["count"] for b in used] == [5, 10]
    for b in used:
        assert b["accuracy"] == pytest.approx(b["confidence"]) and b["lo"] < b["confidence"] <= b["hi"]
    assert all(b["accuracy"] is None and b["confidence"] is None for b in bins if not b["count"])
    assert ece(probs, y) == pytest.approx(0.0, abs=1e-12)


def test_reliability_bins_agree_with_ece():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=200)
    y = rng.integers(0, 3, size=200)
    bins = reliability_bins(probs, y)
    gap = sum(b["count"] / 200 * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"])
    assert gap == pytest.approx(ece(probs, y))


def test_report_scores_every_model_on_gold_rows_only():
    result = fake_result()
    served = one_hot_probs(SERVED_PRED)
    given_eval = ["a", "b", "a", "b", "b", "c", "a", "a"]
    report = build_report(
        result, eval_gold=EVAL_GOLD, eval_given=given_eval, served_eval_probs=served, job_id="job_x"
    )
    assert report["version"] == REPORT_VERSION == 2 and report["job_id"] == "job_x"
    ev = report["eval"]
    assert (ev["n_rows"], ev["n_scored"], ev["n_skipped"]) == (8, 6, 2)
    assert ev["llm_label_accuracy"] == pytest.approx(5 / 6)
    assert ev["served"]["accuracy"] == pytest.approx(4 / 6)
    assert ev["served"]["confusion_matrix"][0] == [2, 1, 0, 0]
    assert ev["served"]["per_class"]["c"]["recall"] == 1.0
    assert ev["noisy_classifier"]["accuracy"] == pytest.approx(3 / 6)  # always says "a"
    rel = report["reliability"]
    for key in ("noisy_classifier", "refined_posterior", "served"):
        assert sum(b["count"] for b in rel[key]) == 6
    # the served model puts 0.7 on its pick: one bin, accuracy 4/6
    (served_bin,) = [b for b in rel["served"] if b["count"]]
    assert served_bin["confidence"] == pytest.approx(0.7) and served_bin["accuracy"] == pytest.approx(4 / 6)
    assert report["served"]["temperature"] == 1.25
    json.dumps(report, allow_nan=False)


def test_report_counts_classes_flags_and_label_quality():
    result = fake_result()
    report = build_report(result)
    assert report["eval"] is None and report["reliability"] is None
    assert report["labels"] == CLASSES and report["n_rows"] == 15 and report["n_labelled"] == 14
    assert report["n_validation"] == 3
    assert report["class_distribution"]["given"] == {"a": 6, "b": 6, "c": 2, "d": 0}
    assert report["class_distribution"]["suggested"] == {"a": 15, "b": 0, "c": 0, "d": 0}
    assert report["flagged_per_class"] == {"a": 0, "b": 6, "c": 2, "d": 0} and report["n_flagged"] == 8
    hist = report["label_quality_histogram"]
    assert len(hist["edges"]) == 21 and sum(hist["counts"]) == 14  # the unlabelled row is not counted
    assert hist["counts"][18] == 6 and hist["counts_flagged"][0] == 8  # quality 0.9 in [0.9, 0.95); 0.033
    assert len(report["noise_matrix"]) == 4 and all(abs(sum(r) - 1) < 1e-6 for r in report["noise_matrix"])


def test_warnings_name_truncation_unused_and_rare_classes():
    result = fake_result(diagnostics={"texts_truncated": 3, "max_length": 32})
    codes = {w["code"]: w for w in build_report(result)["warnings"]}
    assert set(codes) == {"texts_truncated", "class_never_labelled", "class_few_rows"}
    assert codes["texts_truncated"]["count"] == 3 and codes["texts_truncated"]["max_length"] == 32
    assert "3 of 15" in codes["texts_truncated"]["message"]
    assert codes["class_never_labelled"]["labels"] == ["d"]
    assert codes["class_few_rows"]["labels"] == ["c"] and codes["class_few_rows"]["counts"] == {"c": 2}
    for w in codes.values():
        assert w["message"]


def test_no_warnings_for_a_balanced_run_without_truncation():
    given = ["a", "b"] * 5
    result = fake_result(classes=["a", "b"], given=given, diagnostics={"texts_truncated": 0})
    result.extra_posteriors = result.extra_noisy_posteriors = None
    assert build_report(result)["warnings"] == []
    report = build_report(result, eval_gold=[None, "zzz"])
    assert [w["code"] for w in report["warnings"]] == ["eval_not_scored"]
    assert report["eval"]["n_scored"] == 0 and report["reliability"] is None


def test_diagnostics_and_config_hold_no_paths_or_per_row_arrays():
    result = fake_result(
        diagnostics={
            "knn_space": "encoder:/srv/sidyp/models/encoder",
            "noise_model": 1.0,
            "selected_epoch": np.int64(2),
            "noise_scores": np.zeros(5000),
            "history": [{"loss": np.float32(0.5), "dir": "C:\\models"}],
            "nan": float("nan"),
        }
    )
    report = build_report(result, config={"backbone": "/srv/models/bert", "epochs": 2})
    assert report["diagnostics"] == {
        "noise_model": 1.0,
        "selected_epoch": 2,
        "history": [{"loss": 0.5}],
        "nan": None,
    }
    assert report["config"] == {"epochs": 2}
    assert "/srv" not in json.dumps(report)
