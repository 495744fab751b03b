"""With trusted rows, which estimate of a candidate's accuracy on other texts errs least? (issue 13, part 3)

    python -m benchmarks.research.trusted_carry /work/dumps/r42/*/seed*.npz [--data-root /work/shared/data] \
        [--score-test] [--out F.json]

Before the forty-second round the select stage carried every model's accuracy from the trusted rows to the
evaluation texts by average thresholded confidence (ATC: `estimates.transferred_accuracy`). ATC reads only
the order of the model's confidences, and follows a drop in difficulty that the confidence's value misses
(tenth round). Where the order says little about being right (a model that reproduces its noisy labels: its
confidence is the labeller's certainty), the threshold is a quantile of the trusted rows' confidences and
its sampling error is carried whole (docs/method.md, "Forty-second round", for the figures). Estimators
compared, all from the trusted rows and unlabelled target texts:

  trusted     the accuracy on the trusted rows;
  atc         the engine's rule;
  atc_ranked  atc where the confidence ranks the trusted rows' rightness (Mann-Whitney z >= RANK_Z), else
              trusted;
  atc_diff    trusted + atc on the target - atc on the validation texts (the unlabelled texts drawn as
              the trusted rows were): the shift alone is carried, not the threshold's own noise;
  carried     the trusted accuracy taken as the validation texts' and carried from them by their
              confidences (`estimates.carried_accuracy`): the threshold is a quantile of the validation
              texts' confidences, not of the trusted rows';
  adopted     what the select stage now reports (`stages/select.py: _transferred`): atc for the served
              model, atc_diff for the models fitted to the noisy labels (the plain model, the probe).

Targets: the validation texts (no shift), and two planted shifts, each splitting them in two without gold:
by whether the LLM label agrees with the plain classifier (the tenth round's split: it follows the plain
model's own errors), and at the median text length (`--data-root` holds the sets' valid.csv, in the dumps'
row order); design, validation gold. With `--score-test` the test texts (for the record, scored once).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np
import torch

from benchmarks.research.script_io import dump_key
from sidyp_engine import estimates
from sidyp_engine.stages.select import _top_confidence
from sidyp_engine.temperature import fit_temperature_nll

CANDIDATES = ("served", "plain_model", "probe")
RANK_Z = 1.96


def rank_z(conf: np.ndarray, right: np.ndarray) -> float:
    """Mann-Whitney z of the right rows' confidences over the wrong rows' (0 with either side empty)."""
    n1, n0 = int(right.sum()), int((~right).sum())
    if not n1 or not n0:
        return 0.0
    ranks = np.argsort(np.argsort(conf, kind="stable"), kind="stable") + 1.0
    u = ranks[right].sum() - n1 * (n1 + 1) / 2
    spread = math.sqrt(n1 * n0 * (n1 + n0 + 1) / 12)
    return float((u - n1 * n0 / 2) / spread)


def estimators(src_conf, right, tgt_conf, ref_conf, candidate: str) -> dict[str, float]:
    trusted = float(right.mean())
    atc = estimates.thresholded_confidence(src_conf, right, tgt_conf)
    z = rank_z(src_conf, right)
    diff = trusted + atc - estimates.thresholded_confidence(src_conf, right, ref_conf)
    return {
        "trusted": trusted,
        "atc": atc,
        "atc_ranked": atc if z >= RANK_Z else trusted,
        "atc_diff": diff,
        "carried": estimates.thresholded_at(ref_conf, trusted, tgt_conf),
        "rank_z": z,
        "adopted": atc if candidate == "served" else diff,
    }


def text_lengths(data_root: str, name: str) -> np.ndarray:
    """Character lengths of a set's validation texts; a dump's set is <set>[-trusted<N>]."""
    from benchmarks.quality import read_split

    base = name.split("-trusted")[0]
    return np.array([len(t) for t in read_split(os.path.join(data_root, base, "valid.csv"))["texts"]])


def run_rows(path: str, score_test: bool, data_root: str | None = None) -> list[dict]:
    a = np.load(path)
    name, seed = dump_key(path)
    labels = a["trusted_labels"]
    gold = a["valid_gold"]
    known = gold >= 0
    agree = a["valid_noisy"] == a["valid_pred_plain"]
    rows = []
    for cand in CANDIDATES:
        if f"trusted_logits_{cand}" not in a.files:
            continue
        src = a[f"trusted_logits_{cand}"]
        t = fit_temperature_nll(torch.from_numpy(src), torch.from_numpy(labels))
        src_conf, right = _top_confidence(src, t), src.argmax(1) == labels
        valid = a[f"valid_logits_{cand}"]
        valid_conf, valid_right = _top_confidence(valid, t), valid.argmax(1) == gold
        targets = {
            "valid": known,
            "valid_agree": known & agree,
            "valid_disagree": known & ~agree,
        }
        if data_root:
            long = text_lengths(data_root, name) > np.median(text_lengths(data_root, name))
            targets |= {"valid_short": known & ~long, "valid_long": known & long}
        for target, keep in targets.items():
            found = estimators(src_conf, right, valid_conf[keep], valid_conf, cand)
            rows.append(
                _row(name, seed, cand, target, found, float(valid_right[keep].mean()), int(keep.sum()))
            )
        if score_test and f"test_probs_{cand}" in a.files:
            probs = a[f"test_probs_{cand}"]  # at the temperature the select stage fitted to the trusted rows
            found = estimators(src_conf, right, probs.max(1), valid_conf, cand)
            measured = float((probs.argmax(1) == a["test_gold"]).mean())
            rows.append(_row(name, seed, cand, "test", found, measured, len(probs)))
    return rows


def _row(name, seed, cand, target, found, measured, n) -> dict:
    return {
        "set": name,
        "seed": seed,
        "candidate": cand,
        "target": target,
        "rows": n,
        "measured": round(measured, 4),
        **{k: round(v, 4) for k, v in found.items()},
    }


def summary(rows: list[dict]) -> dict:
    names = ("trusted", "atc", "atc_ranked", "atc_diff", "carried", "adopted")
    groups = {
        "valid": [r for r in rows if r["target"] == "valid"],
        "planted_shift_agreement": [r for r in rows if r["target"] in ("valid_agree", "valid_disagree")],
        "planted_shift_length": [r for r in rows if r["target"] in ("valid_short", "valid_long")],
        "test": [r for r in rows if r["target"] == "test"],
    }
    return {
        g: {n: round(100 * float(np.mean([abs(r[n] - r["measured"]) for r in rs])), 2) for n in names}
        | {"cases": len(rs)}
        for g, rs in groups.items()
        if rs
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dumps", nargs="+")
    p.add_argument("--score-test", action="store_true")
    p.add_argument("--data-root", help="the sets' directory (adds the text-length split)")
    p.add_argument("--out")
    args = p.parse_args(argv)
    rows = [r for path in sorted(args.dumps) for r in run_rows(path, args.score_test, args.data_root)]
    for r in rows:
        print(
            f"{r['set'][:24]:<24} s{r['seed']} {r['candidate']:<12}{r['target']:<15}n={r['rows']:<4} "
            f"measured {r['measured']:.3f}  trusted {r['trusted']:.3f}  atc {r['atc']:.3f}  "
            f"ranked {r['atc_ranked']:.3f}  diff {r['atc_diff']:.3f}  carried {r['carried']:.3f}  z {r['rank_z']:.1f}"
        )
    table = summary(rows)
    print(json.dumps(table, indent=1))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump({"rows": rows, "mean_absolute_error_points": table}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
