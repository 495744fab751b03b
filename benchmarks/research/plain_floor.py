"""Should the plain candidate get the class floor too? (issue 13: macro-F1 of the plain-kept runs)

    python -m benchmarks.research.plain_floor /work/sidyp-dev/semeval-mixtral-fewshot-binary:2 \
        --cache-dir /work/bench-cache --out benchmarks/results/issue13e/design/plain_floor.jsonl

The refined posteriors are read with a class floor (`posterior.class_floor_weights`); the plain noisy-label
classifier, kept where the gate finds little noise, is read by plain argmax and on the binary development
sets predicts the minority class for hardly any row. Stage 1 only (from the `benchmarks.quality`
cache); train and validation gold only. For the plain model (the best stage-1 branch, the served form) and
the plain labels (the ensemble's P(ỹ | x)), the weights are fitted on the validation rows' held-out
predictions (label shares of the training rows) or on the training rows' own, and scored:
- on the training rows against train gold (weights from validation: fitted on other rows);
- on the validation rows, cross-fitted (weights from one half scored on the other, both ways).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

from benchmarks.quality import gold_ids
from benchmarks.research.defaults_sweep import emit, load_stage1
from sidyp_engine.metrics import macro_f1
from sidyp_engine.served import ServedClassifier
from sidyp_engine.stages.posterior import class_floor_weights, reweighted


def scores(pred: np.ndarray, gold: np.ndarray, c: int) -> list[float]:
    return [round(float(np.mean(pred == gold)), 4), round(float(macro_f1(gold, pred, c)), 4)]


def floored_argmax(p: torch.Tensor, w: torch.Tensor | None) -> np.ndarray:
    return reweighted(p, w).argmax(1).numpy()


def cross_fitted(p: torch.Tensor, given: torch.Tensor, seed: int) -> np.ndarray:
    """Validation predictions, each half read with the weights fitted on the other half."""
    order = np.random.default_rng(seed).permutation(len(p))
    halves = [order[: len(p) // 2], order[len(p) // 2 :]]
    pred = np.empty(len(p), dtype=np.int64)
    for a, b in (halves, halves[::-1]):
        w = class_floor_weights(p[torch.from_numpy(a)], given)
        pred[b] = floored_argmax(p[torch.from_numpy(b)], w)
    return pred


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="DATA_DIR:SEED")
    ap.add_argument("--cache-dir", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    for spec in args.runs:
        data_dir, seed = spec.rsplit(":", 1)
        s1 = load_stage1(data_dir, int(seed), {}, args.cache_dir)
        inputs, ens, c = s1.inputs, s1.ens, s1.inputs.n_classes
        g_train = gold_ids([s1.data["train"]["gold"][i] for i in inputs.fit_rows], s1.classes)
        g_valid = gold_ids(s1.data["valid"]["gold"], s1.classes)
        given = torch.from_numpy(inputs.train_ids)
        model = ServedClassifier(ens.models[0], s1.setup.tokenizer, inputs.classes, 1.0, s1.cfg.max_length)
        candidates = {
            "plain_model": {
                split: torch.softmax(torch.from_numpy(model.logits(texts)), dim=-1)
                for split, texts in (("train", inputs.train_texts), ("valid", inputs.valid_texts))
            },
            "plain_labels": {split: ens.noisy_posteriors[split] for split in ("train", "valid")},
        }
        for name, p in candidates.items():
            w_valid = class_floor_weights(p["valid"], given)
            w_train = class_floor_weights(p["train"], given)
            row = {
                "data": os.path.basename(os.path.normpath(data_dir)),
                "seed": int(seed),
                "candidate": name,
                "weights_from_valid": None if w_valid is None else [round(float(x), 3) for x in w_valid],
                "weights_from_train": None if w_train is None else [round(float(x), 3) for x in w_train],
                "train_argmax": scores(floored_argmax(p["train"], None), g_train, c),
                "train_floor_from_valid": scores(floored_argmax(p["train"], w_valid), g_train, c),
                "valid_argmax": scores(floored_argmax(p["valid"], None), g_valid, c),
                "valid_floor_cross_fitted": scores(cross_fitted(p["valid"], given, int(seed)), g_valid, c),
                "valid_floor_from_train": scores(floored_argmax(p["valid"], w_train), g_valid, c),
            }
            emit(row, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
