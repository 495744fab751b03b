"""Carry a gold-free accuracy estimate to other texts by a monotone fit, not a threshold (design data).

    python -m benchmarks.research.carried_isotonic <data dir>:/work/dumps/<set>/seed<S>.npz ...

ATC (`estimates.thresholded_at`) reads a model's source rows as right above one confidence and wrong
below it, then counts target texts above that confidence. Where confidence does not rank correctness (a
model that reproduces a rule-made labeller is near-certain everywhere, and which texts it is surest of says
little about which it gets right), the count follows noise in the confidences and can jump to all or
nothing. The alternative here: the per-row probability that the prediction is right, as the refined
posteriors expect it (the same values whose mean is the source estimate), fitted as a non-decreasing
function of the confidence (pool-adjacent-violators), and averaged over the target texts. Where
correctness steps with confidence it follows the shift as ATC does; where it is flat it stays near the
source estimate. Splits and scoring as in `carried_rows` (validation gold; test is not read).
"""

from __future__ import annotations

import json
import sys

import numpy as np

from benchmarks.research.carried_rows import _candidates, valid_reference
from benchmarks.research.evaluation_temperature import _splits, _texts
from sidyp_engine import estimates


def isotonic(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-decreasing least-squares fit of y on x (pool adjacent violators): (x sorted, fitted values)."""
    order = np.argsort(x, kind="stable")
    xs, ys = np.asarray(x, np.float64)[order], np.asarray(y, np.float64)[order]
    values, weights, counts = [], [], []
    for v in ys:
        values.append(v)
        weights.append(1.0)
        counts.append(1)
        while len(values) > 1 and values[-2] > values[-1]:
            w = weights[-2] + weights[-1]
            values[-2] = (values[-2] * weights[-2] + values[-1] * weights[-1]) / w
            weights[-2], counts[-2] = w, counts[-2] + counts[-1]
            values.pop(), weights.pop(), counts.pop()
    return xs, np.repeat(values, counts)


def carried_isotonic(source_conf, source_right_prob, target_conf) -> float:
    """Mean over target texts of the fitted P(right | confidence): each target takes the fit at the nearest
    source confidence at or below its own (the lowest source row's below the range)."""
    xs, fitted = isotonic(source_conf, source_right_prob)
    at = np.clip(np.searchsorted(xs, np.asarray(target_conf, np.float64), side="right") - 1, 0, len(xs) - 1)
    return float(fitted[at].mean())


def run_rows(data: str, dump: str, seed: int = 0) -> list[dict]:
    d = np.load(dump)
    gold, noisy = d["valid_gold"], d["valid_noisy"]
    reference = valid_reference(d)
    reference = reference / reference.sum(1, keepdims=True)
    rows = []
    for name, (pred, conf) in _candidates(d).items():
        right_prob = reference[np.arange(len(pred)), pred]
        for split, (source, target) in _splits(_texts(data), seed).items():
            labelled = source[noisy[source] >= 0]
            est = float(right_prob[labelled].mean())
            rows.append(
                {
                    "dump": dump,
                    "candidate": name,
                    "split": split,
                    "source_estimate": round(est, 4),
                    "atc": round(estimates.thresholded_at(conf[labelled], est, conf[target]), 4),
                    "isotonic": round(
                        carried_isotonic(conf[labelled], right_prob[labelled], conf[target]), 4
                    ),
                    "target_measured": round(float((pred[target] == gold[target]).mean()), 4),
                }
            )
    return rows


def main(argv: list[str]) -> int:
    rows = [r for pair in argv for r in run_rows(*pair.split(":", 1))]
    for r in rows:
        print(json.dumps(r))
    groups = {"all": rows}
    for kind in ("random", "short", "long"):
        groups[kind] = [r for r in rows if r["split"].startswith(kind)]
    for name in sorted({r["candidate"] for r in rows}):
        groups[name] = [r for r in rows if r["candidate"] == name]
    for dump in sorted({r["dump"] for r in rows}):
        groups[dump.split("/")[-2] + "/" + dump[-9:-4]] = [r for r in rows if r["dump"] == dump]
    print(f"{'rows':40s} {'n':>4s} {'uncarried':>9s} {'ATC':>7s} {'isotonic':>8s}  (mean absolute error)")
    for label, picked in groups.items():
        if not picked:
            continue
        err = {
            k: np.mean([abs(r[k] - r["target_measured"]) for r in picked])
            for k in ("source_estimate", "atc", "isotonic")
        }
        print(
            f"{label:40s} {len(picked):4d} {err['source_estimate']:9.4f} {err['atc']:7.4f} {err['isotonic']:8.4f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
