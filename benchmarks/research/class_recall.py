"""Which classes do the method's outputs lose against the plain classifier? (research)

    python -m benchmarks.research.class_recall <dump.npz> [<dump.npz> ...]

Reads `--dump-arrays` files. Per class: the labeller's share of the validation rows, each candidate's
predicted share on the validation texts (refined read without the row's label, as for unseen texts), the
noise matrix's diagonal (the method's reading of how often the labeller keeps the class) and, from the
validation gold (design data; test is not read), the class's true share and each candidate's recall.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from sidyp_engine.metrics import accuracy, macro_f1


def main(paths: list[str]) -> int:
    for path in paths:
        d = np.load(path)
        gold, noisy = d["valid_gold"], d["valid_noisy"]
        c = d["valid_refined_unlabelled"].shape[1]
        preds = {
            "plain": d["valid_pred_plain_model"],
            "refined": d["valid_refined_unlabelled"].argmax(1),
            "served": d["valid_pred_served"],
        }
        t = d["selection_noise_matrix"]
        name = f"{os.path.basename(os.path.dirname(path))}/{os.path.basename(path)}"
        print(
            f"\n{name}: n={len(gold)} "
            + " ".join(f"{k} {accuracy(gold, p):.3f}/{macro_f1(gold, p, c):.3f}" for k, p in preds.items())
        )
        print("class | gold | label | T_cc | " + " | ".join(f"{k} share / recall" for k in preds))
        for k in range(c):
            g = gold == k
            row = [f"{k}", f"{g.mean():.3f}", f"{(noisy == k).mean():.3f}", f"{t[k, k]:.2f}"]
            for p in preds.values():
                rec = (p[g] == k).mean() if g.any() else float("nan")
                row.append(f"{(p == k).mean():.3f} / {rec:.2f}")
            print(" | ".join(row))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
