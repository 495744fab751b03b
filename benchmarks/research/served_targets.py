"""The served model distilled onto other targets, on dumps of the same run made both ways.

    python -m benchmarks.research.served_targets --base <dump .npz ...> --variant <dump .npz ...> \
        [--runs <run JSON ...>]

Dumps are `benchmarks.quality --dump-arrays` files (<set>/seed<N>.npz), paired by set and seed; the run
JSON (`--runs`, base and variant) give the served temperature (`served_temperature`), matched to a dump by
its `--dump-arrays` folder. Per pair, against validation gold: the served model's accuracy, macro-F1 and
ECE at the run's temperature, and how many validation texts it gives each class beside the gold counts.
Research: reads validation gold, never test.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from benchmarks.research.lab import ece, macro_f1
from benchmarks.research.script_io import dump_key, grouped_args, softmax


def _temperatures(paths: list[str]) -> dict[str, float]:
    """dump file -> the served temperature of the run that wrote it."""
    found = {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        command = doc.get("command", "")
        parts = command.split() if isinstance(command, str) else list(command)
        if "--dump-arrays" not in parts:
            continue
        folder = parts[parts.index("--dump-arrays") + 1]
        for run in doc["runs"]:
            found[os.path.join(folder, f"seed{run['seed']}.npz")] = float(run["served_temperature"])
    return found


def _cells(path: str, temperatures: dict[str, float]) -> tuple[str, np.ndarray]:
    d = np.load(path)
    gold, logits = d["valid_gold"], d["valid_logits_served"]
    k = logits.shape[1]
    probs = softmax(logits / temperatures.get(os.path.abspath(path), temperatures.get(path, 1.0)))
    pred = d["valid_pred_served"]
    onehot = np.eye(k)[pred]
    cell = f"{(pred == gold).mean():.3f} / {macro_f1(onehot, gold):.3f} / {ece(probs, gold):.3f}"
    return cell, np.bincount(pred, minlength=k)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    groups = grouped_args(argv, ("--base", "--variant", "--runs"), "give --base, --variant and --runs")
    temperatures = _temperatures(groups["--runs"])
    found = {dump_key(p): p for p in groups["--variant"]}
    print(
        "| run | served valid, base (acc / macro-F1 / ECE) | variant | class counts: gold / base / variant |"
    )
    print("|---|---|---|---|")
    for path in sorted(groups["--base"]):
        if dump_key(path) not in found:
            continue
        base, base_counts = _cells(path, temperatures)
        variant, variant_counts = _cells(found[dump_key(path)], temperatures)
        gold = np.bincount(np.load(path)["valid_gold"], minlength=len(base_counts))
        counts = " / ".join(" ".join(str(int(c)) for c in a) for a in (gold, base_counts, variant_counts))
        print(f"| {dump_key(path)[0]} ({dump_key(path)[1]}) | {base} | {variant} | {counts} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
