"""How far may the balanced vote amplify an under-used class? k / 2 (before) against at most 5x (issue 13).

    python -m benchmarks.research.balance_cap /work/sidyp-dev/trec-weak-vote-binary:0 \
        ../shared/data/trec-weak-vote:0 --cache-dir /work/bench-cache

Stages 1-4 (`defaults_sweep.front_half`, train and validation gold only) once with each floor of
`prior.balance_divisors`: the cap matters only where k > 10 (the frozen space's k = 50, where k / 2 let a
class's votes grow 25x). One JSON line per (set, seed, rule) on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

import sidyp_engine.prior as prior_module
from benchmarks.research import defaults_sweep


def half_k(counts: np.ndarray, k: int) -> np.ndarray:
    """The floor before the cap: a class's votes amplified up to k / 2 times."""
    mean = counts.sum() / len(counts)
    return np.maximum(counts, max(1.0, 2.0 * mean / k)) / mean


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="DATA_DIR:SEED")
    ap.add_argument("--cache-dir", required=True)
    args = ap.parse_args(argv)
    capped = prior_module.balance_divisors
    for spec in args.runs:
        data, seed = spec.rsplit(":", 1)
        for name, rule in (("k/2", half_k), ("cap5", capped)):
            prior_module.balance_divisors = rule
            r = defaults_sweep.front_half(data, int(seed), {}, args.cache_dir)
            keys = ("prior_train", "refined_train", "refined_valid_unlabelled", "plain_valid", "wrong_share")
            row = {"data": r["data"], "seed": int(seed), "rule": name} | {k: r[k] for k in keys}
            print(json.dumps(row | {"refined_valid_ece": r["refined_valid_ece"]}), flush=True)
    prior_module.balance_divisors = capped
    return 0


if __name__ == "__main__":
    sys.exit(main())
