"""Which posterior estimates the share of wrong labels best? (issue 13, part 2: within 5 points)

    python -m benchmarks.research.wrong_share /work/runs/arrays/*.npz /work/dumps/*/seed*.npz

Reads the design arrays of `defaults_sweep --arrays` and `benchmarks.quality --dump-arrays` (validation
and training gold only; test is not read). Per run, against the validation rows' true wrong share:

- `conditioned`: mean 1 - P(y = given | x, given) of the calibrated refined posteriors of the validation
  rows, the posterior the gate reads (`select.method_wrong_share`, which adds the training rows: `gate`);
- `unconditioned`: the same with the posterior of the validation text alone, P(y | x), marginalised over the
  classifiers' P(ỹ | x) as for an unlabelled text.
"""

from __future__ import annotations

import os
import sys

import numpy as np


def _share(posteriors: np.ndarray, noisy: np.ndarray) -> float:
    rows = np.flatnonzero(noisy >= 0)
    return float(1 - posteriors[rows, noisy[rows]].mean())


def row(path: str) -> dict:
    a = np.load(path)
    noisy, gold = a["valid_noisy"], a["valid_gold"]
    labelled = noisy >= 0
    sweep = "valid_calibrated" in a.files  # defaults_sweep layout; else a benchmark dump
    conditioned = a["valid_calibrated"] if sweep else a["valid_posteriors"]
    unconditioned = a["valid_unlabelled"] if sweep else a["valid_refined_unlabelled"]
    out = {
        "run": os.path.basename(os.path.dirname(path)) if not sweep else os.path.basename(path)[:-4],
        "true_valid": float((noisy[labelled] != gold[labelled]).mean()),
        "conditioned": _share(conditioned, noisy),
        "unconditioned": _share(unconditioned, noisy),
    }
    if sweep:
        train, given = a["train_calibrated"], a["train_noisy"]
        n_v, n_t = int(labelled.sum()), int((given >= 0).sum())
        out["gate"] = (out["conditioned"] * n_v + _share(train, given) * n_t) / (n_v + n_t)
    return out


def main(argv: list[str] | None = None) -> int:
    paths = argv if argv is not None else sys.argv[1:]
    rows = [row(p) for p in paths]
    print(f"{'run':<52}{'true':>7}{'cond.':>7}{'uncond.':>9}{'gate':>7}")
    for r in rows:
        gate = f"{r['gate']:>7.3f}" if "gate" in r else f"{'-':>7}"
        print(
            f"{r['run']:<52}{r['true_valid']:>7.3f}{r['conditioned']:>7.3f}{r['unconditioned']:>9.3f}{gate}"
        )
    for key in ("conditioned", "unconditioned"):
        err = np.mean([abs(r[key] - r["true_valid"]) for r in rows])
        print(f"mean absolute error, {key}: {err:.3f} over {len(rows)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
