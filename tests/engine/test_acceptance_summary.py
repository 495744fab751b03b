"""The acceptance summary's interval coverage: what the runs reported and the interval spanning both
gold-free estimators, each against the measured accuracies."""

from __future__ import annotations

from benchmarks.acceptance import _intervals, code_of, coverage, cpu_of, criteria, tally


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


def _run(name, seed, trusted, base, sidyp, served, ece=0.05):
    """A summary row as run_rows builds it: (accuracy, macro-F1) pairs."""
    minus = lambda a: {"accuracy": round(a[0] - base[0], 4), "macro_f1": round(a[1] - base[1], 4)}  # noqa: E731
    return {
        "set": f"{name}{'-trusted100' if trusted else ''}-seed{seed}",
        "seed": seed,
        "trusted": trusted,
        "served": {"accuracy": served[0], "macro_f1": served[1], "ece": ece},
        "sidyp_minus_baseline": minus(sidyp),
        "served_minus_baseline": minus(served),
    }


def test_criteria_average_the_shared_sets_and_list_misses_elsewhere():
    rows = [
        _run("semeval-mixtral-fewshot", 0, 0, (0.50, 0.40), (0.57, 0.43), (0.56, 0.42), ece=0.07),
        _run("semeval-mixtral-fewshot", 1, 0, (0.48, 0.40), (0.60, 0.46), (0.60, 0.44), ece=0.05),
        _run("semeval-mixtral-fewshot", 0, 100, (0.50, 0.40), (0.62, 0.47), (0.63, 0.47), ece=0.04),
        _run("semeval-mixtral-fewshot-noise40", 2, 0, (0.63, 0.48), (0.65, 0.45), (0.64, 0.475)),
        _run("trec-weak-vote-noise05", 1, 0, (0.96, 0.96), (0.96, 0.96), (0.955, 0.96)),
    ]
    got = criteria(rows)
    shared = got["shared"]["semeval-mixtral-fewshot"]
    assert shared["seeds"] == [0, 1]
    assert shared["sidyp_minus_baseline_accuracy"] == 0.095 and shared["served_ece"] == 0.06
    assert got["trusted"]["semeval-mixtral-fewshot"] == {
        "seeds": [0],
        "kept_model_interval_covers_test": [None],
        "evaluation_interval_covers_test": [None],
        "served_ece": 0.04,
        "served_accuracy_minus_without": {0: 0.07},
    }
    # with the kept model's intervals: its trusted-row interval misses the test accuracy, the carried one holds it
    rows[2]["kept"] = "refined/served"
    rows[2]["intervals"] = {"served": {"reported": [0.50, 0.60], "measured_test": 0.63}}
    rows[2]["evaluation"] = {"estimated": 0.64, "interval": [0.58, 0.70], "measured_test": 0.63}
    trusted = criteria(rows)["trusted"]["semeval-mixtral-fewshot"]
    assert trusted["kept_model_interval_covers_test"] == [False]
    assert trusted["evaluation_interval_covers_test"] == [True]
    # gold-free, the estimate carried to the test texts: its interval is checked per seed of the shared set
    rows[0]["evaluation"] = {
        "method": "carried",
        "estimated": 0.60,
        "interval": [0.55, 0.65],
        "measured_test": 0.56,
    }
    rows[1]["evaluation"] = {
        "method": "carried",
        "estimated": 0.70,
        "interval": [0.65, 0.75],
        "measured_test": 0.60,
    }
    assert criteria(rows)["shared"]["semeval-mixtral-fewshot"]["evaluation_interval_covers_test"] == [
        True,
        False,
    ]
    # only the 40 % set misses: sidyp's macro-F1 is 3 points below; served's 0.5 and accuracy are within a point
    assert got["below_baseline_elsewhere"] == [
        {"set": "semeval-mixtral-fewshot-noise40-seed2", "seed": 2, "misses": {"sidyp macro_f1": -0.03}}
    ]


def test_llm_labels_are_scored_against_the_labels_given_not_the_test_labeller():
    from benchmarks.acceptance import _truth
    from benchmarks.quality_estimates import given_label_accuracy

    # a development set: train and valid corrected to 5 % noise, test keeping the source labeller (59 %)
    row = {
        "estimated": _est(0.80, 0.7, 0.9),
        "measured_valid": 0.95,
        "measured_test": 0.41,
        "measured_given": 0.94,
    }
    assert _truth("llm_labels", row) == 0.94
    assert _truth("llm_labels", {k: v for k, v in row.items() if k != "measured_given"}) == 0.95  # older JSON
    assert _truth("plain", row) == 0.41  # a candidate is about the test texts
    train = {"noisy": ["a", "b", None, "a"], "gold": ["a", "a", "b", "a"]}
    valid = {"noisy": ["b"], "gold": ["b"]}
    assert given_label_accuracy([train, valid]) == 0.75  # rows without a label are not given labels


def test_each_run_names_the_code_and_processor_that_made_it_and_the_summary_counts_them(tmp_path):
    old = tmp_path / "issue13c" / "trec-weak-vote-seed0.json"
    assert code_of({}, str(old)) == "unrecorded (issue13c)"
    nested = tmp_path / "benchmarks" / "results" / "issue13m" / "dev" / "trec-weak-vote-noise05-seed0.json"
    assert code_of({}, str(nested)) == "unrecorded (issue13m/dev)"
    assert code_of({"code": {"commit": "68c5a05abcde", "edited": False}}, "x.json") == "68c5a05abcde"
    assert code_of({"code": {"commit": "68c5a05abcde", "edited": True}}, "x.json") == "68c5a05abcde+edits"
    rows = [{"code": "b"}, {"code": "a"}, {"code": "b"}, {"code": "unrecorded (issue13c)"}]
    assert list(tally(rows, "code").items()) == [("b", 2), ("a", 1), ("unrecorded (issue13c)", 1)]
    assert cpu_of({"machine": {"cpu": "AMD EPYC", "cores": 2}}) == "AMD EPYC"
    assert cpu_of({}) == "unrecorded"


def test_the_benchmark_records_the_checkout_it_ran_from():
    import os
    import subprocess

    from benchmarks.quality import code_version

    code = code_version()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if not os.path.exists(os.path.join(root, ".git")):  # a copy of the tree without git: nothing to record
        assert code is None
        return
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout
    assert head.startswith(code["commit"]) and len(code["commit"]) == 12
    assert isinstance(code["edited"], bool)


def test_estimate_errors_are_split_by_trusted_rows_beside_the_floor_of_the_rows_each_read():
    from benchmarks.acceptance import binomial_mean_abs_error, by_trusted_rows

    assert binomial_mean_abs_error(2, 0.5) == 0.25  # k = 0 or 2 (each 1/4) miss by 0.5, k = 1 is exact
    assert binomial_mean_abs_error(100, 1.0) == 0.0 and binomial_mean_abs_error(0, 0.5) == 0.0
    # about sqrt(2 / pi) standard errors at n = 100
    assert abs(binomial_mean_abs_error(100, 0.7) - (2 / 3.14159 * 0.7 * 0.3 / 100) ** 0.5) < 0.002

    def row(trusted, estimate, truth, rows, share, measured_share):
        return {
            "trusted": trusted,
            "estimated_vs_truth": {"served": [estimate, truth]},
            "carried_vs_measured_test": {},
            "estimate_rows": {"served": rows},
            "wrong_share": {"run_estimate": share, "measured_valid": measured_share},
        }

    got = by_trusted_rows([row(0, 0.80, 0.70, 178, 0.40, 0.30), row(100, 0.66, 0.70, 2, 0.31, 0.30)])
    assert got["gold_free"]["runs"] == 1 and got["trusted"]["runs"] == 1
    assert got["gold_free"]["accuracy_estimates_vs_truth_carried_where_possible"] == 0.1
    assert got["trusted"]["accuracy_estimates_vs_truth_carried_where_possible"] == 0.04
    assert got["trusted"]["wrong_share_run_estimate_vs_valid"] == 0.01
    assert got["trusted"]["accuracy_sampling_floor"] == round(binomial_mean_abs_error(2, 0.70), 4)
    assert got["gold_free"]["accuracy_sampling_floor"] < 0.05
