"""The served model with trusted rows: the distillation that left them out, or the one fitted with them? (research)

    python -m benchmarks.research.served_refit <run.json> ... [--out <jsonl>]

Each argument is a `benchmarks.quality --trusted N --dump-arrays D` JSON; its dump is read from the
`--dump-arrays` directory of its recorded command (`<D>/seed<S>.npz`). Where the run kept the distilled
served model, the dump holds the validation logits of both distillations: `valid_logits_served` (trusted
rows left out: the fit they scored and fitted the temperature on) and `valid_logits_refit_model` (trusted
rows at their trusted label: what is delivered). Both are read at the one temperature the run carried
(`refit.temperature`) and scored against the validation gold, which neither fitted. The test split is not
read.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex

import numpy as np
import torch

from sidyp_engine.metrics import ece, macro_f1, nll


def scores(logits: np.ndarray, temperature: float, gold: np.ndarray, n_classes: int) -> dict[str, float]:
    probs = torch.softmax(torch.from_numpy(logits).double() / temperature, dim=-1).numpy()
    pred = probs.argmax(1)
    return {
        "accuracy": float((pred == gold).mean()),
        "macro_f1": macro_f1(gold, pred, n_classes),
        "ece": ece(probs, gold),
        "nll": nll(probs, gold),
    }


def compare(path: str) -> dict | None:
    """The two distillations' validation scores for one run (None where no served model was refitted)."""
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    command = shlex.split(doc["command"])
    dump_dir = command[command.index("--dump-arrays") + 1]
    run = doc["runs"][0]
    refit = run["estimates"].get("refit") or {}
    fitted = refit.get("fitted", [])  # runs on 18c405f wrote "fitted": ["served"]
    if refit.get("model") != "served" and "served" not in fitted:
        return None
    a = np.load(os.path.join(dump_dir, f"seed{run['seed']}.npz"))
    gold = a["valid_gold"]
    keep = gold >= 0
    n_classes = a["selection_noise_matrix"].shape[0]
    temperature = float(refit["temperature"])
    held_out, refitted = a["valid_logits_served"][keep], a["valid_logits_refit_model"][keep]
    return {
        "set": os.path.basename(os.path.normpath(doc["dataset"])),
        "seed": run["seed"],
        "trusted_rows": refit["trusted_rows"],
        "temperature": temperature,
        "valid_rows": int(keep.sum()),
        "held_out": scores(held_out, temperature, gold[keep], n_classes),
        "refit": scores(refitted, temperature, gold[keep], n_classes),
        "predictions_changed": float((held_out.argmax(1) != refitted.argmax(1)).mean()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.research.served_refit")
    p.add_argument("runs", nargs="+")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    rows = [row for row in map(compare, args.runs) if row is not None]
    print(f"{'set (seed)':44} {'held-out acc / F1 / ECE':>24} {'refit acc / F1 / ECE':>24} {'changed':>8}")
    for r in rows:
        h, f = r["held_out"], r["refit"]
        print(
            f"{r['set'] + ' (' + str(r['seed']) + ')':44} "
            f"{h['accuracy']:7.3f} {h['macro_f1']:7.3f} {h['ece']:7.3f}  "
            f"{f['accuracy']:7.3f} {f['macro_f1']:7.3f} {f['ece']:7.3f} {r['predictions_changed']:8.3f}"
        )
    if rows:
        for metric in ("accuracy", "macro_f1", "ece", "nll"):
            diff = [r["refit"][metric] - r["held_out"][metric] for r in rows]
            print(
                f"refit minus held-out, {metric}: mean {np.mean(diff):+.4f}, min {min(diff):+.4f}, max {max(diff):+.4f}"
            )
    if args.out:
        with open(args.out, "a", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
