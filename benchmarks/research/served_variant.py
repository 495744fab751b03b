"""Scores of `served_variant_run` side files: the served model as the engine distils it against the
variant, each at its own temperature (and with `soup` the two stage-1 starting points read as they are,
temperature 1).

    python -m benchmarks.research.served_variant RUN.json:SIDE.npz ... [--split valid|test] [--out F.jsonl]

RUN.json is the benchmark JSON of the same run (its data dir and classes). Validation gold is design data;
`--split test` is the single scoring of a decision.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex

import numpy as np

from benchmarks.quality import gold_ids, read_split, score, subsample
from benchmarks.research.script_io import softmax

ROWS = (
    ("stage-1 best branch", "stage1_branch", None),
    ("stage-1 soup", "stage1_soup", None),
    ("served (engine)", "call0_base", "call0_base_temperature"),
    ("served (variant)", "call0_variant", "call0_variant_temperature"),
    ("refit (engine)", "call1_base", "call1_base_temperature"),
    ("refit (variant)", "call1_variant", "call1_variant_temperature"),
)


def scores(run_json: str, side: str, split: str) -> dict:
    with open(run_json, encoding="utf-8") as f:
        run = json.load(f)
    classes = run["classes"]
    command = shlex.split(run["command"])
    data = command[command.index("--data") + 1]
    rows = read_split(os.path.join(data, f"{split}.csv"))
    if split == "test" and "--limit-test" in command:  # the benchmark's own fixed subset
        rows = subsample(rows, int(command[command.index("--limit-test") + 1]))
    gold = rows["gold"]
    keep = np.array([g is not None for g in gold])
    y = gold_ids([g for g in gold if g is not None], classes)
    a = dict(np.load(side))
    for key in list(a):  # side files of the first design runs, made when soup was the only variant
        if key.startswith("call") and "_soup_" in key:
            a[key.replace("_soup_", "_variant_")] = a.pop(key)
    texts = "valid" if split == "valid" else "extra"
    out = {"run": os.path.basename(run_json), "split": split, "n": int(keep.sum()), "rows": {}}
    for name, key, temp in ROWS:
        if f"{key}_{texts}_logits" not in a:
            continue
        t = float(a[temp]) if temp else 1.0
        probs = softmax(a[f"{key}_{texts}_logits"][keep] / t)
        out["rows"][name] = {k: round(v, 4) for k, v in score(probs, y, len(classes)).items()} | {"T": t}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("pairs", nargs="+", help="RUN.json:SIDE.npz")
    p.add_argument("--split", default="valid", choices=["valid", "test"])
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    lines, diffs = [], {}
    for pair in args.pairs:
        run_json, side = pair.split(":")
        s = scores(run_json, side, args.split)
        lines.append(json.dumps(s))
        print(f"{s['run']} ({args.split}, n={s['n']}): accuracy / macro-F1 / ECE / NLL")
        for name, r in s["rows"].items():
            print(
                f"  {name:22s} {r['accuracy']:.3f} {r['macro_f1']:.3f} {r['ece']:.3f} {r['nll']:.3f}  T {r['T']:.3f}"
            )
        for base, variant in (("served (engine)", "served (variant)"), ("refit (engine)", "refit (variant)")):
            if base in s["rows"] and variant in s["rows"]:
                for k in ("accuracy", "macro_f1", "ece", "nll"):
                    diffs.setdefault((variant, k), []).append(s["rows"][variant][k] - s["rows"][base][k])
    for (name, k), v in diffs.items():
        print(f"{name} minus the engine's, {k}: mean {np.mean(v):+.4f}, min {min(v):+.4f}, max {max(v):+.4f}")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
