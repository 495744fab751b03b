"""Which gold-free temperature suits the plain fine-tune when the select stage delivers it (design data).

    python -m benchmarks.research.plain_temperature --cache-dir /work/bench-cache \
        --run /work/sidyp-dev/trec-weak-vote-noise20:2:benchmarks/results/issue13g/trec-weak-vote-noise20-seed2.json ...

For each run (data dir, seed, the benchmark JSON of that run), the plain fine-tune's validation
probabilities are read from the benchmark cache (`<cache>/<set>-seed<k>/plain.safetensors`, the engine's
own checkpoint) and scored against the *validation* gold (design data; test is not read) under each rule:
  untempered     T = 1, the model as fine-tuning left it (the benchmark's noisy baseline is scored so);
  moments        the rule on main: mean top confidence = its moment estimate (the JSON's `moment_rows`);
  posterior      mean top confidence = the refined posteriors' estimate (the JSON's `rows`);
  noisy_nll      minimum NLL of the noisy validation labels (temperature scaling with the labels one has);
  gold_nll       minimum NLL of the validation gold: what no run can know, the floor.
Prints one JSON line per run: the temperature and validation ECE of each rule.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
import torch

from benchmarks.quality import gold_ids, read_split
from sidyp_engine.metrics import ece
from sidyp_engine.temperature import fit_temperature, fit_temperature_nll


def _matched(logits: torch.Tensor, accuracy: float) -> float:
    """T at which the mean top confidence equals `accuracy` (as stages/select._temperature_for)."""
    n, c = logits.shape
    reference = torch.full((n, c), (1 - accuracy) / max(1, c - 1), dtype=logits.dtype)
    reference[torch.arange(n), logits.argmax(1)] = accuracy
    return fit_temperature(logits, reference)


def run_row(cache_dir: str, data: str, seed: int, result_json: str) -> dict:
    from safetensors.torch import load_file

    name = os.path.basename(os.path.normpath(data))
    train, valid = read_split(os.path.join(data, "train.csv")), read_split(os.path.join(data, "valid.csv"))
    classes = sorted({y for y in train["noisy"] + valid["noisy"] if y is not None})
    tensors = load_file(os.path.join(cache_dir, f"{name}-seed{seed}", "plain.safetensors"))
    logits = torch.log(tensors["noisy_posteriors.valid"].double().clamp_min(1e-12))
    gold = gold_ids(valid["gold"], classes)
    noisy = np.array([classes.index(y) if y is not None else -1 for y in valid["noisy"]])
    run = json.load(open(result_json, encoding="utf-8"))["runs"][0]
    est = run["estimates"]
    temps = {
        "untempered": 1.0,
        "moments": _matched(logits, est["moment_rows"]["plain_model"]["estimated"]["accuracy"]),
        "posterior": _matched(logits, est["rows"]["plain_model"]["estimated"]["accuracy"]),
        "noisy_nll": fit_temperature_nll(logits[noisy >= 0], torch.from_numpy(noisy[noisy >= 0])),
        "gold_nll": fit_temperature_nll(
            logits[gold < len(classes)], torch.from_numpy(gold[gold < len(classes)])
        ),
    }
    row = {"set": name, "seed": seed, "kept": est["kept_model"], "valid_rows": len(gold)}
    row["valid_accuracy"] = round(float((logits.argmax(1).numpy() == gold).mean()), 4)
    for rule, t in temps.items():
        probs = torch.softmax(logits / t, dim=1).numpy()
        row[rule] = {"temperature": round(float(t), 3), "valid_ece": round(ece(probs, gold), 4)}
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cache-dir", required=True)
    p.add_argument("--run", action="append", required=True, help="DATA_DIR:SEED:RESULT_JSON")
    p.add_argument("--out", default=None, help="append the JSON lines here")
    args = p.parse_args(argv)
    rows = []
    for spec in args.run:
        data, seed, result = spec.split(":")
        rows.append(run_row(args.cache_dir, data, int(seed), result))
        print(json.dumps(rows[-1]), flush=True)
    rules = ("untempered", "moments", "posterior", "noisy_nll", "gold_nll")
    means = {r: round(float(np.mean([row[r]["valid_ece"] for row in rows])), 4) for r in rules}
    print("mean valid ECE:", means, file=sys.stderr)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
