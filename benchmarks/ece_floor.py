"""The ECE a perfectly calibrated model shows on a finite test split (what an ECE target can ask for).

    python -m benchmarks.ece_floor --out benchmarks/results/issue13d/analysis/ece_floor.json

Top-label confidences over 6 classes are drawn uniformly from a range, each prediction is right with exactly that
probability, and ECE (15 equal-width bins, `sidyp_engine.metrics.ece`) is computed on n rows; 2,000 draws
per (n, range). n = 178 / 500 / 600 are the validation split of semeval and the test splits of trec and
semeval. Printed: the median, the 90th percentile and the share of draws above 0.05 and 0.10.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys

import numpy as np

from sidyp_engine.metrics import ece

SIZES = (178, 500, 600)
RANGES = ((0.3, 0.95), (0.5, 1.0))
CLASSES = 6


def calibrated_ece(n: int, low: float, high: float, draws: int, rng: np.random.Generator) -> np.ndarray:
    """ECE of `draws` perfectly calibrated predictions over CLASSES classes: the top class gets a
    confidence c ~ U(low, high), the others (1 - c) / (CLASSES - 1), and the top class is right w.p. c."""
    out = np.empty(draws)
    for i in range(draws):
        conf = rng.uniform(low, high, n)
        probs = np.repeat(((1 - conf) / (CLASSES - 1))[:, None], CLASSES, axis=1)
        probs[:, 0] = conf
        wrong = rng.integers(1, CLASSES, n)
        y = np.where(rng.random(n) < conf, 0, wrong)
        out[i] = ece(probs, y)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    rows = []
    print(f"{'rows':>5} {'confidence':>12} {'median':>8} {'p90':>7} {'>0.05':>7} {'>0.10':>7}")
    for n in SIZES:
        for low, high in RANGES:
            v = calibrated_ece(n, low, high, args.draws, rng)
            row = {
                "rows": n,
                "confidence_range": [low, high],
                "median": round(float(np.median(v)), 4),
                "p90": round(float(np.quantile(v, 0.9)), 4),
                "share_above_0.05": round(float((v > 0.05).mean()), 4),
                "share_above_0.10": round(float((v > 0.10).mean()), 4),
            }
            rows.append(row)
            print(
                f"{n:>5} {low:>5.2f}-{high:<5.2f} {row['median']:>8.3f} {row['p90']:>7.3f} "
                f"{row['share_above_0.05']:>7.3f} {row['share_above_0.10']:>7.3f}"
            )
    if args.out:
        doc = {
            "command": "python -m benchmarks.ece_floor "
            + " ".join(argv if argv is not None else sys.argv[1:]),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": {
                "cpu": platform.processor() or platform.machine(),
                "python": platform.python_version(),
            },
            "draws": args.draws,
            "rows": rows,
        }
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
