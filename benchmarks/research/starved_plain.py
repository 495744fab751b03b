"""Where does the starved-class rule (`selection.STARVED_RATIO`) overturn the gate's plain choice? (research)

    python -m benchmarks.research.starved_plain <dump.npz> [<dump.npz> ...]

Reads `--dump-arrays` files: every candidate's validation predictions, the validation rows' noisy labels and
their calibrated refined posteriors (the method's reading of each class's label precision, a condition
tried and set aside in the seventeenth round), and the validation gold, which only scores: the labels' measured
precision, and accuracy / macro-F1 of the plain classifier, the refined labels (read without the row's
label) and the served model. Whether the gate was
closed is in the run's JSON (`estimates.kept`), not here: this says what the rule would do if it were.
Test is not read.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch

from benchmarks.research.readout import scores
from sidyp_engine import selection
from sidyp_engine.stages.posterior import unfloored


def main(paths: list[str]) -> int:
    print(
        "run | starved by plain (predicted / labeller share; the labels' precision as the method reads it, "
        "and in the validation gold) | kept by the method | plain | refined | served"
    )
    for path in paths:
        d = np.load(path)
        noisy, gold = d["valid_noisy"], d["valid_gold"]
        n_classes = d["valid_refined_unlabelled"].shape[1]
        plain = d[f"valid_pred_{selection.PLAIN}"]
        refined, served = d[f"valid_pred_{selection.REFINED}"], d[f"valid_pred_{selection.SERVED}"]
        reference = unfloored(
            torch.from_numpy(d["valid_posteriors"]).double(),
            torch.from_numpy(d["class_floor_weights"]).double(),
            float(d["floor_temperature"]),
        ).numpy()
        # the method's reading of each class's label precision: tried as a condition, not adopted
        precision = np.array(
            [reference[noisy == c, c].mean() if (noisy == c).any() else np.nan for c in range(n_classes)]
        )
        starved = selection.starved_classes(plain, noisy, n_classes)
        # the engine's rule: kept by the refined labels and by the served model both
        by_method = {
            c["class"] for out in (refined, served) for c in selection.starved_classes(out, noisy, n_classes)
        }
        rescued = [c for c in starved if c["class"] not in by_method]
        listed = ", ".join(
            f"{c['class']} ({c['predicted_share']:.3f} / {c['label_share']:.3f}; label precision read "
            f"{precision[c['class']]:.2f}, gold {np.mean(gold[noisy == c['class']] == c['class']):.2f})"
            for c in starved
        )
        name = f"{os.path.basename(os.path.dirname(path))}/{os.path.basename(path)}"
        print(
            f"{name} | {listed or '-'} | {'yes' if rescued else 'no'} | {scores(plain, gold, n_classes)} | "
            f"{scores(refined, gold, n_classes)} | {scores(served, gold, n_classes)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
