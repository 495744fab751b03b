"""Issue 13's acceptance table from the benchmark JSON files: every set and seed, delivered vs baseline.

    python -m benchmarks.acceptance benchmarks/results/issue13/*.json [--out benchmarks/results/issue13/summary.json]

Per run: test accuracy / macro-F1 / ECE of the noisy baseline, the run's delivered labels (`sidyp`) and
served model (`served`), what the select stage kept, the run's wrong-label estimate beside the measured
valid share, and the estimated vs measured test accuracy of the delivered outputs. Nothing is recomputed:
the figures are the JSON's. The estimates' errors are given against test and against validation (the
rows the gold-free estimates are made on), with the gap between a candidate's measured validation and
test accuracy beside them: the part of the test error that comes from the two splits differing.
`accuracy_estimates_vs_truth` compares each estimate with what it is about: a candidate's accuracy on the
test texts, the LLM labels' accuracy on the labels the run was given (train + valid; JSON made before
`measured_given` existed: the validation rows). A development set's test split keeps the source labeller's
labels, so against test the LLM row would score another labeller. `by_trusted_rows` gives the accuracy and
wrong-share errors apart for runs with and without trusted rows, beside the accuracy error's sampling floor:
what error-free measurements on the rows each estimate read (100 trusted rows, or the validation rows) would
still miss by.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from collections import Counter

import numpy as np


def code_of(doc: dict, path: str) -> str:
    """The commit a run's code came from ("+edits" where the engine or benchmarks had uncommitted ones);
    JSON written before the benchmark recorded it: the results folder it sits in (a round's)."""
    code = doc.get("code")
    if not code:
        folders = os.path.dirname(os.path.abspath(path)).split(os.sep)
        # the folder under benchmarks/results (a round's, e.g. issue13m/dev), else the one it sits in
        below = folders[folders.index("results") + 1 :] if "results" in folders else folders[-1:]
        return f"unrecorded ({'/'.join(below) or folders[-1]})"
    return code["commit"] + ("+edits" if code.get("edited") else "")


def cpu_of(doc: dict) -> str:
    """The processor a run was made on: one commit's trec runs differed between an Intel Xeon and an AMD
    EPYC (docs/method.md, twenty-third round), so rows are compared on one processor."""
    return doc.get("machine", {}).get("cpu") or "unrecorded"


def tally(rows: list[dict], field: str) -> dict[str, int]:
    """Runs per value of `field` ("code", "cpu"), most runs first: how many versions the summary pools."""
    counts = Counter(r[field] for r in rows)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def run_rows(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    rows = []
    for run in doc["runs"]:
        scores, est = run["scores"], run.get("estimates", {})
        base = scores.get("noisy_baseline", {})
        row = {"set": os.path.basename(path)[:-5], "seed": run["seed"], "trusted": run.get("trusted_rows", 0)}
        row["code"] = code_of(doc, path)
        row["cpu"] = cpu_of(doc)
        for name in ("noisy_baseline", "sidyp", "served", "refined", "distilled", "plain_model", "logreg"):
            if name in scores:
                row[name] = {m: round(scores[name][m], 4) for m in ("accuracy", "macro_f1", "ece")}
        if base:
            for name in ("sidyp", "served"):
                row[f"{name}_minus_baseline"] = {
                    m: round(scores[name][m] - base[m], 4) for m in ("accuracy", "macro_f1")
                }
        row["kept"] = f"{est.get('kept')}/{est.get('kept_model')}"
        wrong = est.get("wrong_label_share", {})
        # runs made before 5dfd606 report the kept plain classifier's in-sample share as
        # noise_share; the share the gate read is in the reason ("the run estimates 24% ...")
        gate = re.search(r"the run estimates (\d+)% of the labels wrong", est.get("reason", ""))
        run_share = int(gate.group(1)) / 100 if gate else run["noise_share_estimate"]
        row["wrong_share"] = {
            "run_estimate": round(run_share, 4),
            "moments_estimate": (wrong.get("estimated") or {}).get("accuracy"),
            "measured_valid": round(wrong.get("measured_valid", float("nan")), 4),
            # the labels the run was given (train + valid); older JSON has the validation rows only
            "measured_given": round(
                wrong.get("measured_given", wrong.get("measured_valid", float("nan"))), 4
            ),
            "flagged_train": round(run["flagged_share"], 4),
        }
        table = est.get("rows", {})
        row["estimated_vs_measured_test"] = {
            name: [r["estimated"]["accuracy"], r["measured_test"]]
            for name, r in table.items()
            if r.get("measured_test") is not None
        }
        row["estimated_vs_measured_valid"] = {
            name: [r["estimated"]["accuracy"], r["measured_valid"]]
            for name, r in table.items()
            if r.get("measured_valid") is not None
        }
        # what each estimate is about: a candidate's accuracy on test texts, the LLM labels' accuracy on the
        # labels the run was given (a development set's test split keeps the source labeller's labels)
        row["estimated_vs_truth"] = {
            name: [r["estimated"]["accuracy"], _truth(name, r)]
            for name, r in table.items()
            if _truth(name, r) is not None
        }
        # how many labelled rows each estimate read (the trusted rows, or the validation rows gold-free)
        row["estimate_rows"] = {name: r["estimated"].get("rows") for name, r in table.items()}
        # gold-free, each estimate carried to the test texts by the run (ATC), beside the measured accuracy
        row["carried_vs_measured_test"] = {
            name: [r["estimated_on_test_texts"]["accuracy"], r["measured_test"]]
            for name, r in table.items()
            if (r.get("estimated_on_test_texts") or {}).get("accuracy") is not None
            and r.get("measured_test") is not None
        }
        # the same candidate on the two splits: what any estimate made on validation-like rows must miss
        row["measured_valid_vs_test"] = {
            name: [r["measured_valid"], r["measured_test"]]
            for name, r in table.items()
            if r.get("measured_valid") is not None and r.get("measured_test") is not None
        }
        row["moments_vs_measured_test"] = {
            name: [r["estimated"]["accuracy"], r["measured_test"]]
            for name, r in est.get("moment_rows", {}).items()
            if r.get("measured_test") is not None and r["estimated"].get("accuracy") is not None
        }
        row["intervals"] = _intervals(run, est)
        evaluation = est.get("evaluation")
        if evaluation:  # the kept model's accuracy on the test texts, carried there by its confidence
            e = evaluation["estimated"]
            row["evaluation"] = {
                "method": e["method"],  # "transferred" (trusted rows) or "carried" (gold-free)
                "estimated": e["accuracy"],
                "interval": [e["low"], e["high"]],
                "measured_test": evaluation["measured_test"],
            }
        rows.append(row)
    return rows


def _truth(name: str, row: dict) -> float | None:
    if name == "llm_labels":
        return row.get("measured_given", row.get("measured_valid"))
    return row.get("measured_test")


def _intervals(run: dict, est: dict) -> dict:
    """Per candidate: the interval the run reported and the one spanning both gold-free estimators' (the
    engine's rule since 629d64f, recomputed here so older runs compare), beside the measured accuracies."""
    moments = {name: r["estimated"] for name, r in est.get("moment_rows", {}).items()}
    # the labels' own accuracy by the moments (anchor T): the benchmark keeps it with the anchor-T rows
    labels = ((est.get("anchor_t") or {}).get("rows") or {}).get("llm_labels", {}).get("estimated")
    if labels and labels.get("accuracy") is not None:
        moments["llm_labels"] = labels
    out = {}
    for name, r in est.get("rows", {}).items():
        e = r["estimated"]
        if e.get("accuracy") is None:
            continue
        reported = [e["low"], e["high"]]
        spanning = reported
        if not run.get("trusted_rows") and name in moments:
            spanning = [min(e["low"], moments[name]["low"]), max(e["high"], moments[name]["high"])]
        out[name] = {
            "reported": reported,
            "spanning": spanning,
            "measured_valid": r.get("measured_valid"),
            "measured_test": r.get("measured_test"),
            "delivered": name in (est.get("kept"), est.get("kept_model")),
        }
    return out


def coverage(rows: list[dict], kind: str, split: str, delivered_only: bool = False) -> dict:
    """Share of (run, candidate) intervals of `kind` that hold the measured `split` accuracy, and their
    median width."""
    hits, widths = [], []
    for r in rows:
        for c in r["intervals"].values():
            if c[split] is None or (delivered_only and not c["delivered"]):
                continue
            low, high = c[kind]
            hits.append(low <= c[split] <= high)
            widths.append(high - low)
    if not hits:
        return {"n": 0}
    return {
        "n": len(hits),
        "covered": round(float(np.mean(hits)), 3),
        "median_width": round(float(np.median(widths)), 3),
    }


SHARED_SETS = ("semeval-mixtral-fewshot", "trec-weak-vote")


def _set_name(row: dict) -> str:
    """The data set of a run, without the seed and the trusted-rows tag of its file name."""
    return re.sub(r"(-trusted\d+)?-seed\d+$", "", row["set"])


def criteria(rows: list[dict]) -> dict:
    """Issue 13's acceptance bars, read off the runs (no figure recomputed).

    Shared sets (no trusted rows): the mean over seeds of sidyp and served minus the baseline (bar: +5
    points accuracy, macro-F1 not below) and of the served ECE (bar 0.10); with trusted rows the served ECE
    (bar 0.05) and the accuracy against the same seed's run without them. Every other set: the set-seeds
    where sidyp or served is more than a point below the baseline in accuracy or macro-F1.
    """
    out: dict = {"shared": {}, "trusted": {}, "below_baseline_elsewhere": []}
    for name in SHARED_SETS:
        plain = [r for r in rows if _set_name(r) == name and not r["trusted"] and "sidyp_minus_baseline" in r]
        if plain:
            out["shared"][name] = {
                "seeds": sorted(r["seed"] for r in plain),
                **{
                    f"{who}_minus_baseline_{m}": round(
                        float(np.mean([r[f"{who}_minus_baseline"][m] for r in plain])), 4
                    )
                    for who in ("sidyp", "served")
                    for m in ("accuracy", "macro_f1")
                },
                "served_ece": round(float(np.mean([r["served"]["ece"] for r in plain])), 4),
                # the gold-free estimate carried to the test texts: does its interval hold the measured one?
                "evaluation_interval_covers_test": [
                    None
                    if (c := r.get("evaluation")) is None
                    else c["interval"][0] <= c["measured_test"] <= c["interval"][1]
                    for r in plain
                ],
            }
        trusted = [r for r in rows if _set_name(r) == name and r["trusted"]]
        if trusted:
            without = {r["seed"]: r for r in plain}
            kept = [r.get("intervals", {}).get(r.get("kept", "/").split("/")[-1]) for r in trusted]
            carried = [r.get("evaluation") for r in trusted]
            out["trusted"][name] = {
                "seeds": sorted(r["seed"] for r in trusted),
                # the delivered model's reported interval (its trusted rows) and the one carried to the test
                # texts: does each hold the measured test accuracy?
                "kept_model_interval_covers_test": [
                    None if k is None else k["reported"][0] <= k["measured_test"] <= k["reported"][1]
                    for k in kept
                ],
                "evaluation_interval_covers_test": [
                    None if c is None else c["interval"][0] <= c["measured_test"] <= c["interval"][1]
                    for c in carried
                ],
                "served_ece": round(float(np.mean([r["served"]["ece"] for r in trusted])), 4),
                "served_accuracy_minus_without": {
                    r["seed"]: round(r["served"]["accuracy"] - without[r["seed"]]["served"]["accuracy"], 4)
                    for r in trusted
                    if r["seed"] in without
                },
            }
    for r in rows:
        if _set_name(r) in SHARED_SETS or "sidyp_minus_baseline" not in r:
            continue
        misses = {
            f"{who} {m}": r[f"{who}_minus_baseline"][m]
            for who in ("sidyp", "served")
            for m in ("accuracy", "macro_f1")
            if r[f"{who}_minus_baseline"][m] < -0.01
        }
        if misses:
            out["below_baseline_elsewhere"].append({"set": r["set"], "seed": r["seed"], "misses": misses})
    return out


def mean_abs(pairs: list[list[float]]) -> float:
    return round(float(np.mean([abs(a - b) for a, b in pairs])), 4) if pairs else float("nan")


def wrong_share_pairs(rows: list[dict], measured: str = "measured_valid") -> list[list[float]]:
    """(the run's wrong-label reading, the measured share) per run."""
    return [[r["wrong_share"]["run_estimate"], r["wrong_share"][measured]] for r in rows]


def reported_vs_truth(rows: list[dict]) -> list[list[float]]:
    """(estimate, truth) per run and candidate as the report gives it: carried to the evaluation texts where
    the run could, the LLM labels' against the labels given."""
    return [
        r["carried_vs_measured_test"].get(n, p) if n != "llm_labels" else p
        for r in rows
        for n, p in r["estimated_vs_truth"].items()
    ]


def binomial_mean_abs_error(n: int, p: float) -> float:
    """E|k/n - p| for k ~ Binomial(n, p): the error of an unbiased accuracy measured on n rows."""
    if not n or p <= 0.0 or p >= 1.0:
        return 0.0
    k = np.arange(n + 1)
    log_pmf = (
        math.lgamma(n + 1)
        - np.array([math.lgamma(i + 1) + math.lgamma(n - i + 1) for i in k])
        + k * math.log(p)
        + (n - k) * math.log1p(-p)
    )
    return float(np.sum(np.exp(log_pmf) * np.abs(k / n - p)))


def sampling_floor(rows: list[dict]) -> float:
    """The mean absolute error that error-free measurements on each estimate's own rows would still show
    against the same truths (the pairs of `reported_vs_truth`)."""
    floors = [
        binomial_mean_abs_error(r.get("estimate_rows", {}).get(n) or 0, truth)
        for r in rows
        for n, (_, truth) in r["estimated_vs_truth"].items()
    ]
    return round(float(np.mean(floors)), 4) if floors else float("nan")


def by_trusted_rows(rows: list[dict]) -> dict[str, dict]:
    """The issue's two estimate errors (accuracy, wrong-label share) apart for runs with and without trusted
    rows: with them the report measures on checked rows, without them it estimates from noisy labels. Beside
    the accuracy error, its sampling floor on the rows each estimate read."""
    groups = {
        "gold_free": [r for r in rows if not r["trusted"]],
        "trusted": [r for r in rows if r["trusted"]],
    }
    return {
        name: {
            "runs": len(group),
            "accuracy_estimates_vs_truth_carried_where_possible": mean_abs(reported_vs_truth(group)),
            "accuracy_sampling_floor": sampling_floor(group),
            "wrong_share_run_estimate_vs_valid": mean_abs(wrong_share_pairs(group)),
        }
        for name, group in groups.items()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    rows = [row for path in sorted(args.paths) if not path.endswith("summary.json") for row in run_rows(path)]
    head = f"{'set':<38}{'seed':>4}  {'kept':<20}{'baseline':>22}{'sidyp':>22}{'served':>22}  wrong share est/valid"
    print(head)
    for r in rows:
        cells = "".join(
            f"{r[n]['accuracy']:>8.3f}/{r[n]['macro_f1']:.3f}/{r[n]['ece']:.3f}" if n in r else f"{'-':>22}"
            for n in ("noisy_baseline", "sidyp", "served")
        )
        w = r["wrong_share"]
        print(
            f"{r['set']:<38}{r['seed']:>4}  {r['kept']:<20}{cells}  {w['run_estimate']:.3f}/{w['measured_valid']:.3f}"
        )
    pairs = [p for r in rows for p in r["estimated_vs_measured_test"].values()]
    mom_wrong = [
        [r["wrong_share"]["moments_estimate"], r["wrong_share"]["measured_valid"]]
        for r in rows
        if r["wrong_share"]["moments_estimate"] is not None
    ]
    moment_pairs = [p for r in rows for p in r["moments_vs_measured_test"].values()]
    families = sorted({r["set"].split("-")[0] for r in rows})

    def pooled(key: str, family: str | None = None) -> list[list[float]]:
        return [p for r in rows if family in (None, r["set"].split("-")[0]) for p in r[key].values()]

    # the same (run, candidate) pairs with and without the carrying to the test texts
    carried = pooled("carried_vs_measured_test")
    uncarried = [r["estimated_vs_measured_test"][n] for r in rows for n in r["carried_vs_measured_test"]]
    errors = {
        "accuracy_estimates_vs_test": mean_abs(pairs),
        "carried_estimates_vs_test": mean_abs(carried),
        "same_estimates_uncarried_vs_test": mean_abs(uncarried),
        "accuracy_estimates_vs_truth_carried_where_possible": mean_abs(reported_vs_truth(rows)),
        "accuracy_estimates_vs_valid": mean_abs(pooled("estimated_vs_measured_valid")),
        "accuracy_estimates_vs_truth": mean_abs(pooled("estimated_vs_truth")),
        "measured_valid_vs_test": mean_abs(pooled("measured_valid_vs_test")),
        "by_family": {
            f: {
                key: mean_abs(pooled(key, f))
                for key in (
                    "estimated_vs_measured_test",
                    "estimated_vs_measured_valid",
                    "measured_valid_vs_test",
                )
            }
            for f in families
        },
        "accuracy_moment_estimates_vs_test": mean_abs(moment_pairs),
        "wrong_share_run_estimate_vs_valid": mean_abs(wrong_share_pairs(rows)),
        "wrong_share_run_estimate_vs_given": mean_abs(wrong_share_pairs(rows, "measured_given")),
        "wrong_share_moments_vs_valid": mean_abs(mom_wrong),
        "by_trusted_rows": by_trusted_rows(rows),
        "evaluation_estimates_vs_test": mean_abs(
            [
                [r["evaluation"]["estimated"], r["evaluation"]["measured_test"]]
                for r in rows
                if "evaluation" in r and r["evaluation"].get("method", "transferred") == "transferred"
            ]
        ),
        "gold_free_evaluation_estimates_vs_test": mean_abs(
            [
                [r["evaluation"]["estimated"], r["evaluation"]["measured_test"]]
                for r in rows
                if "evaluation" in r and r["evaluation"].get("method") == "carried"
            ]
        ),
    }
    print("mean absolute errors:", errors)
    intervals = {
        f"{kind}_vs_{split}{'_delivered' if delivered else ''}": coverage(
            rows, kind, f"measured_{split}", delivered
        )
        for kind in ("reported", "spanning")
        for split in ("valid", "test")
        for delivered in (False, True)
    }
    print("interval coverage:", intervals)
    bars = criteria(rows)
    print("acceptance bars:", json.dumps(bars, indent=1))
    versions, cpus = tally(rows, "code"), tally(rows, "cpu")
    print("runs per code version:", versions)
    print("runs per processor:", cpus)
    if args.out:
        summary = {
            "runs": rows,
            "mean_absolute_errors": errors,
            "interval_coverage": intervals,
            "criteria": bars,
            "code_versions": versions,
            "processors": cpus,
        }
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
