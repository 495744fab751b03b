"""The acceptance summary's interval coverage: what the runs reported and the interval spanning both
gold-free estimators, each against the measured accuracies."""

from __future__ import annotations

from benchmarks.acceptance import _intervals, coverage


def _est(acc, low, high, method="posterior"):
    return {"accuracy": acc, "low": low, "high": high, "method": method, "rows": 100}


def test_spanning_interval_reaches_the_moment_estimate_and_coverage_counts_it():
    est = {
        "kept": "refined",
        "kept_model": "served",
        "rows": {
            "refined": {"estimated": _est(0.40, 0.38, 0.42), "measured_valid": 0.55, "measured_test": 0.60},
            "plain": {"estimated": _est(0.50, 0.48, 0.52), "measured_valid": 0.51, "measured_test": 0.70},
            "llm_labels": {
                "estimated": _est(0.45, 0.44, 0.46),
                "measured_valid": 0.60,
                "measured_test": 0.62,
            },
        },
        "moment_rows": {
            "refined": {"estimated": _est(0.57, 0.50, 0.65, "moments")},
            "plain": {"estimated": _est(0.50, 0.47, 0.53, "moments")},
        },
        "anchor_t": {"rows": {"llm_labels": {"estimated": _est(0.70, 0.65, 0.75, "moments")}}},
    }
    got = _intervals({"trusted_rows": 0}, est)
    assert got["refined"]["spanning"] == [0.38, 0.65] and got["refined"]["delivered"]
    assert got["plain"]["spanning"] == [0.47, 0.53] and not got["plain"]["delivered"]
    assert got["llm_labels"]["spanning"] == [0.44, 0.75]
    rows = [{"intervals": got}]
    assert coverage(rows, "reported", "measured_valid")["covered"] == round(1 / 3, 3)
    assert coverage(rows, "spanning", "measured_valid")["covered"] == 1.0
    assert coverage(rows, "spanning", "measured_test", delivered_only=True) == {
        "n": 1,
        "covered": 1.0,
        "median_width": 0.27,
    }
    # with trusted rows the reported interval (Wilson, on the trusted rows) is not widened
    assert _intervals({"trusted_rows": 100}, est)["refined"]["spanning"] == [0.38, 0.42]
