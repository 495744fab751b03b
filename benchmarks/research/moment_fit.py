"""Do the moment estimates agree with the run's own wrong-label share (design data, validation gold)?

    python -m benchmarks.research.moment_fit <dump>:<the run's benchmark JSON> ...

The method of moments (`estimates.predictor_accuracy`) solves M T = A for M, the joint of a candidate's
predictions and the true classes, from A, the joint of its predictions and the noisy labels, and T, the
anchor-point noise matrix. It assumes the candidate's errors do not depend on the labels' errors given
the true class. A model trained on the labels that reproduces them breaks that, and where T cannot see
the labeller's errors the moments read the model as perfect. Per candidate: its agreement with the noisy
labels, the moment and posterior estimates, the moments held under the top the run's own wrong-label share
allows (`estimates.held_to_wrong_share`) and the validation gold's accuracy. Then, per model, how well its
top-label confidence ranks its validation correctness (area under the ROC curve; 0.5 = not at all), which
carrying an estimate by confidence (ATC) assumes. Test is not read.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch

from benchmarks.research.carried_rows import valid_reference
from benchmarks.research.lab import auroc
from sidyp_engine import estimates

CANDIDATES = ("plain", "refined", "served", "plain_model", "probe")


def run(dump: str, wrong_share: float, seed: int = 0) -> list[dict]:
    d = np.load(dump)
    noisy, gold, t = d["valid_noisy"], d["valid_gold"], d["selection_noise_matrix"]
    labelled = noisy >= 0
    reference = valid_reference(d)[labelled]
    rows = []
    for name in CANDIDATES:
        key = f"valid_pred_{name}"
        if key not in d:
            continue
        pred = d[key][labelled]
        moments = estimates.predictor_accuracy(pred, noisy[labelled], t, seed)
        held = estimates.held_to_wrong_share(moments, pred, noisy[labelled], wrong_share)
        rows.append(
            {
                "dump": dump,
                "candidate": name,
                "wrong_share": round(wrong_share, 4),
                "agreement": round(float((pred == noisy[labelled]).mean()), 4),
                "moments": [round(moments.accuracy, 4), round(moments.low, 4), round(moments.high, 4)],
                "held": [round(held.accuracy, 4), round(held.low, 4), round(held.high, 4)],
                "posterior": round(estimates.reference_accuracy(pred, reference, seed).accuracy, 4),
                "measured_valid": round(float((d[key] == gold)[labelled].mean()), 4),
            }
        )
    return rows


def confidence_auroc(d) -> dict[str, float]:
    """Model -> AUROC of its top-label confidence (logits at T = 1) against being right on validation gold."""
    found = {}
    for name in ("plain_model", "served", "probe"):
        probs = torch.softmax(torch.from_numpy(d[f"valid_logits_{name}"]).double(), -1)
        conf, right = probs.max(1).values.numpy(), probs.argmax(1).numpy() == d["valid_gold"]
        found[name] = auroc(conf, right)  # nan where every row is right or every row is wrong
    return found


def main(argv: list[str]) -> int:
    rows = []
    for pair in argv:
        dump, report = pair.split(":", 1)
        with open(report) as f:
            share = json.load(f)["runs"][0]["estimates"]["wrong_label_share"]["estimated"]["accuracy"]
        rows += run(dump, share)
    for r in rows:
        print(
            f"{r['dump'].split('/')[-2][:36]:36s} {r['dump'][-9:-4]} {r['candidate']:12s}"
            f" wrong share {r['wrong_share']:.3f} agreement {r['agreement']:.3f} moments {r['moments']}"
            f" held {r['held']} posterior {r['posterior']:.3f} valid {r['measured_valid']:.3f}"
        )
    moved = [r for r in rows if r["held"][0] != r["moments"][0]]
    for label, picked in (("all", rows), ("moved", moved)):
        if picked:
            before = np.mean([abs(r["moments"][0] - r["measured_valid"]) for r in picked])
            after = np.mean([abs(r["held"][0] - r["measured_valid"]) for r in picked])
            print(
                f"# {label}: {len(picked)} rows, moments MAE {before:.4f}, held {after:.4f} (validation gold)"
            )
    for pair in argv:
        dump = pair.split(":", 1)[0]
        held = {r["candidate"] for r in rows if r["dump"] == dump and r["held"][0] != r["moments"][0]}
        for name, auc in confidence_auroc(np.load(dump)).items():
            mark = "  (moments held)" if name in held else ""
            print(
                f"{dump.split('/')[-2][:36]:36s} {dump[-9:-4]} {name:12s}"
                f" confidence ranks correctness: AUROC {auc:.3f}{mark}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
