"""With trusted rows, should the model decision follow the labels decision? Design data for the
twenty-ninth round (docs/method.md): validation gold only.

    python -m benchmarks.research.trusted_model_follow --runs <run JSON ...> --dumps <dump .npz ...>

Per `--trusted` run (its JSON: the trusted rows' wrong-label share, the kept choices and the margins the
select stage recorded) and its dump (`benchmarks.quality --dump-arrays`, <set>/seed<N>.npz, matched by set
and seed): what the trusted rows settled for the labels and for the model, the model the gate keeps there
and the one kept where the model follows the labels (unless the two models' accuracies on the trusted
rows order them the other way; both before the probe step), the model the run
delivered (after it), and each model candidate's validation accuracy / macro-F1. Test is not read.
"""

from __future__ import annotations

import json
import os
import sys

from benchmarks.research.script_io import dump_key, grouped_args, validation_scores
from sidyp_engine.estimates import Estimate
from sidyp_engine.selection import METHOD_MIN_NOISE, PLAIN_MODEL, PROBE, SERVED, _follows_labels

USAGE = "--runs <run JSON ...> --dumps <dump .npz ...>"
MODELS = (PLAIN_MODEL, SERVED, PROBE)


def settled(margins: dict, decision: str) -> str:
    """'plain' or 'method' where one side was better in >= 95 % of the paired resamples, else '-'."""
    if margins.get(decision, 0.0) > 0:
        return "plain"
    return "method" if margins.get(f"{decision}_method", 0.0) > 0 else "-"


def model_choice(run: dict, follow: bool) -> str:
    """The model decision before the probe step: the side the trusted rows settle for the model, else (with
    `follow`) the labels' side where the engine's rule (`selection._follows_labels`) takes it, else the
    gate's."""
    est = run["estimates"]
    margins, gated = est["margins"], est["wrong_label_share"]["estimated"]["accuracy"] < METHOD_MIN_NOISE
    side = settled(margins, "model")
    if side == "-" and follow:
        labels = settled(margins, "labels")
        on_trusted = {name: Estimate(**row["estimated"]) for name, row in est["rows"].items()}
        if _follows_labels((labels == "plain", labels == "method"), gated, on_trusted, PLAIN_MODEL, SERVED):
            side = labels
    if side == "-":
        side = "plain" if gated else "method"
    return PLAIN_MODEL if side == "plain" else SERVED


def main(argv: list[str] | None = None) -> int:
    groups = grouped_args(list(argv if argv is not None else sys.argv[1:]), ("--runs", "--dumps"), USAGE)
    dumps = {dump_key(path): path for path in groups["--dumps"]}
    print(
        f"{'run':<50}{'wrong':>6}  {'labels':<7}{'model':<7}{'the gate':<12}{'follows':<12}{'delivered':<12}"
        + "".join(f"{name + ' (valid)':>20}" for name in MODELS)
    )
    for path in sorted(groups["--runs"]):
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        name = os.path.basename(doc["dataset"].rstrip("/"))
        for run in doc["runs"]:
            key = (name, int(run["seed"]))
            if not run.get("trusted_rows") or key not in dumps:
                continue
            est = run["estimates"]
            scores = validation_scores(dumps[key], MODELS)
            print(
                f"{name + f' ({key[1]})':<50}"
                f"{est['wrong_label_share']['estimated']['accuracy']:>6.2f}  "
                f"{settled(est['margins'], 'labels'):<7}{settled(est['margins'], 'model'):<7}"
                f"{model_choice(run, False):<12}{model_choice(run, True):<12}{est['kept_model']:<12}"
                + "".join(f"{scores[m][0]:>11.3f} / {scores[m][1]:.3f}" for m in MODELS)
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
