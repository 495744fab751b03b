"""Design data for the second temperature after the class floor (docs/method.md, "Re-deciding the inner
defaults"): validation and train ECE against gold of the calibrated posteriors, of the floored ones (floor 1),
and of the floored ones after `fit_temperature(log(p * w), p)` on the validation rows.

    python -m benchmarks.research.floor_temperature /work/runs/arrays

Reads the `--arrays` files of `benchmarks.research.defaults_sweep` (train and validation gold only) for the
default variant of each set: the stage-1 space with the noise model at k = 10, or the frozen space for the
rule set.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch

from sidyp_engine.metrics import ece
from sidyp_engine.stages.posterior import class_floor_weights, reweighted
from sidyp_engine.temperature import apply_temperature, fit_temperature, probs_to_logits

RUNS = [
    "semeval-mixtral-fewshot-seed0-knn_spacestage1-noise_modelon",
    "semeval-mixtral-fewshot-seed1-k10-knn_spacestage1-noise_modelon",
    "semeval-mixtral-fewshot-seed2-k10-knn_spacestage1-noise_modelon",
    *(
        f"{s}-seed0-knn_spacestage1-noise_modelon"
        for s in (
            "semeval-mixtral-fewshot-noise40",
            "semeval-mixtral-fewshot-noise20",
            "semeval-weak-vote",
            "semeval-mixtral-fewshot-noise05",
            "trec-weak-vote-noise40",
            "trec-weak-vote-noise20",
            "trec-weak-vote-noise05",
        )
    ),
    "trec-weak-vote-seed0-knn_spaceencoder-noise_modeloff",
]


def main(arrays: str) -> int:
    valid_ece = []
    for name in RUNS:
        d = np.load(os.path.join(arrays, name + ".npz"))
        w = class_floor_weights(
            torch.from_numpy(d["train_calibrated"]), torch.from_numpy(d["train_noisy"]), 1.0
        )
        valid = torch.from_numpy(d["valid_calibrated"])
        t = fit_temperature(probs_to_logits(reweighted(valid, w)), valid.double())
        for split in ("valid", "train"):
            p, gold = torch.from_numpy(d[f"{split}_calibrated"]), d[f"{split}_gold"]
            pw = reweighted(p, w)
            refit = apply_temperature(probs_to_logits(pw), t).float()
            row = [ece(p.numpy(), gold), ece(pw.numpy(), gold), ece(refit.numpy(), gold)]
            if split == "valid":
                valid_ece.append(row)
            print(
                f"{name} {split}: ECE calibrated {row[0]:.3f}, floored {row[1]:.3f}, floored + T {t:.2f} {row[2]:.3f}"
            )
    mean = np.mean(valid_ece, axis=0)
    print(
        f"mean validation ECE over {len(RUNS)} runs: calibrated {mean[0]:.3f}, floored {mean[1]:.3f}, refit {mean[2]:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
