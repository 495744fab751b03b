"""The plain fine-tune with trusted rows: held out of its fit, or fitted at their trusted label? (research)

    python -m benchmarks.research.plain_refit --data <set dir> --seed S [--trusted 100] --out <jsonl>

Draws the benchmark's trusted rows (`quality_estimates.draw_trusted`) and trains plain fine-tuning
(`plain_config`) three ways on the same seed:
  held_out   the trusted rows unlabelled (`train_plain`: the "plain" stage, which they score);
  refit      every row, the trusted rows at their trusted label (`refit_plain`: what a kept plain
             classifier is delivered as);
  baseline   every row at its given label (the benchmark's noisy baseline).
Each is scored on the validation gold (accuracy / macro-F1); one JSON line per run is appended to --out.
The test split is not read.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from benchmarks.quality import gold_ids, read_split
from benchmarks.quality_estimates import draw_trusted
from sidyp_engine.device import resolve_device
from sidyp_engine.metrics import macro_f1
from sidyp_engine.model import load_tokenizer, resolve_backbone
from sidyp_engine.pipeline import trusted_label_ids
from sidyp_engine.stages.ensemble import refit_plain, train_plain
from sidyp_engine.stages.inputs import validate
from sidyp_engine.types import CalibrationConfig


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.research.plain_refit")
    p.add_argument("--data", required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--trusted", type=int, default=100)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    train = read_split(os.path.join(args.data, "train.csv"))
    valid = read_split(os.path.join(args.data, "valid.csv"))
    classes = sorted({y for y in train["noisy"] + valid["noisy"] if y is not None})
    cfg = CalibrationConfig(seed=args.seed)
    inputs = validate(cfg, train["texts"], train["noisy"], classes, valid["texts"], valid["noisy"], None)
    trusted_ids = trusted_label_ids(draw_trusted(train, args.trusted, args.seed), inputs)
    backbone = resolve_backbone(cfg.backbone)
    tokenizer, device = load_tokenizer(backbone), resolve_device(cfg.device)
    gold = gold_ids(valid["gold"], inputs.classes)
    keep = np.array([g is not None for g in valid["gold"]])
    fits = {
        "held_out": lambda: train_plain(cfg, inputs, backbone, tokenizer, device, trusted_ids=trusted_ids),
        "refit": lambda: refit_plain(cfg, inputs, backbone, tokenizer, device, trusted_ids),
        "baseline": lambda: train_plain(cfg, inputs, backbone, tokenizer, device),
    }
    record: dict = {
        "set": os.path.basename(os.path.normpath(args.data)),
        "seed": args.seed,
        "trusted": int((trusted_ids >= 0).sum()),
        "trusted_given_wrong": int(((trusted_ids >= 0) & (trusted_ids != inputs.ids)).sum()),
        "valid_rows": int(keep.sum()),
    }
    for name, fit in fits.items():
        started = time.perf_counter()
        out = fit()
        pred = out.noisy_posteriors["valid"].argmax(1).numpy()[keep]
        record[name] = {
            "accuracy": round(float((pred == gold[keep]).mean()), 4),
            "macro_f1": round(macro_f1(gold[keep], pred, inputs.n_classes), 4),
            "epoch": out.selected_epoch + 1,
            "seconds": round(time.perf_counter() - started, 1),
        }
        print(args.data, args.seed, name, record[name], flush=True)
        del out
    with open(args.out, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
