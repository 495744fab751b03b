"""What the trusted rows say of the refined labels, beside what those labels are on the rows nobody checked.

    python -m benchmarks.research.trusted_refined_rows --dumps <dump .npz ...> --runs <run JSON ...> \
        [--before <run JSON ...>]

Per `--trusted N` run with a dump (`benchmarks.quality --dump-arrays`, named <set>/seed<N>.npz): the refined
labels' accuracy on the trusted rows as the run reported it (`--runs`, and `--before`: the same runs on
earlier code), the delivered refined labels' accuracy on those trusted rows and on the other training rows
(train gold: the labels a user gets for the rows they did not check, which the trusted rows' figure is an
estimate of), and the refined labels of the validation texts read without a label (the benchmark's
`measured_valid`). The trusted rows are re-drawn as the benchmark drew them (`draw_trusted`). Research:
reads train and validation gold, never test.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from benchmarks.quality_estimates import draw_trusted
from benchmarks.research.script_io import dump_key, grouped_args


def _estimates(paths: list[str]) -> dict[tuple[str, int], float]:
    """(set, seed) -> the refined labels' reported accuracy on the trusted rows."""
    found = {}
    for path in paths:
        with open(path) as f:
            doc = json.load(f)
        if "dataset" not in doc:  # an acceptance summary beside the runs (a folder's *.json)
            continue
        name = os.path.basename(doc["dataset"].rstrip("/"))
        for run in doc["runs"]:
            refined = run.get("estimates", {}).get("rows", {}).get("refined")
            if refined and run.get("trusted_rows"):
                found[(name, run["seed"])] = refined["estimated"]["accuracy"]
    return found


def table(dumps: list[str], runs: list[str], before: list[str]) -> list[dict]:
    now, earlier = _estimates(runs), _estimates(before)
    out = []
    for path in sorted(dumps):
        name, seed = dump_key(path)
        if (name, seed) not in now:
            continue
        d = np.load(path)
        gold, n_trusted = d["train_gold"], len(d["trusted_labels"])
        drawn = draw_trusted({"texts": [None] * len(gold), "gold": list(gold)}, n_trusted, seed)
        trusted = np.array([t is not None for t in drawn])
        # the dump's training rows are the fitted ones; the shared sets have a validation split of their own
        assert (d["fit_rows"] == np.arange(len(gold))).all(), "the trusted draw assumes no holdout"
        refined = d["train_refined_posteriors"].argmax(1)
        out.append(
            {
                "set": name,
                "seed": seed,
                "reported_before": earlier.get((name, seed)),
                "reported": now[(name, seed)],
                "delivered_on_trusted": float((refined[trusted] == gold[trusted]).mean()),
                "on_unchecked_training_rows": float((refined[~trusted] == gold[~trusted]).mean()),
                "validation_without_label": float((d["valid_pred_refined"] == d["valid_gold"]).mean()),
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    groups = grouped_args(
        argv, ("--dumps", "--runs", "--before"), "give --dumps, --runs and optionally --before"
    )
    rows = table(groups["--dumps"], groups["--runs"], groups["--before"])
    print(
        "| run | reported before | reported now | delivered refined labels on the trusted rows | "
        "on the unchecked training rows | validation, read without a label |"
    )
    print("|---|---|---|---|---|---|")
    for r in rows:
        before = "-" if r["reported_before"] is None else f"{r['reported_before']:.3f}"
        print(
            f"| {r['set']} ({r['seed']}) | {before} | {r['reported']:.3f} | {r['delivered_on_trusted']:.3f} | "
            f"{r['on_unchecked_training_rows']:.3f} | {r['validation_without_label']:.3f} |"
        )
    # before this round the run reported the delivered labels' accuracy on the trusted rows (the
    # "reported before" column, where given, equals it)
    for key in ("delivered_on_trusted", "reported"):
        errors = [abs(r[key] - r["on_unchecked_training_rows"]) for r in rows]
        if errors:
            print(
                f"{key}: mean absolute error against the unchecked training rows {np.mean(errors):.3f} "
                f"over {len(errors)} runs"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
