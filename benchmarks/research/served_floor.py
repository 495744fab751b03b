"""The served model's class floor, matched to the refined labels (research).

    python -m benchmarks.research.served_floor <dump.npz> [<dump.npz> ...]

The served model is distilled from the refined posteriors of the training rows, which read the row's own
label; on texts without one it behaves like the refined read of unseen texts, and can starve the class
that read starves. The refined read of those texts has its own floor (`unlabelled_floor_weights`); the
served model has none. Each rule sets class weights on the served model's validation probabilities from
gold-free quantities only and is scored on the validation gold (design data; test is not read):
`in-sample` fits the weights on all validation texts (as a run would on its pooled unlabelled texts),
`2-fold` on one half and scores the other. The target share of a class is the refined delivered read's
predicted share of the same texts (`refined share`), the lesser of that and the labeller's, or the served
model's own mean (the rule set aside in the nineteenth round); `starved` raises only a class predicted
for under half of its target, `short` every class under it.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch

from sidyp_engine.metrics import accuracy, macro_f1
from sidyp_engine.stages.posterior import starved_weights


def _target(rule: str, served: np.ndarray, refined_pred: np.ndarray, labels: np.ndarray) -> np.ndarray:
    c = served.shape[1]
    refined = np.bincount(refined_pred, minlength=c) / len(refined_pred)
    used = np.bincount(labels[labels >= 0], minlength=c)[:c] / max(1, (labels >= 0).sum())
    if rule.startswith("refined share and labeller"):
        return np.minimum(refined, used)
    if rule.startswith("refined share"):
        return refined
    return np.minimum(served.mean(0), used)  # own mean


def _weights(served, refined_pred, labels, rule) -> np.ndarray:
    share = torch.from_numpy(_target(rule, served, refined_pred, labels))
    ratio = 0.5 if rule.endswith("starved") else 1.0
    w = starved_weights(torch.from_numpy(served), share, ratio)
    return np.ones(served.shape[1]) if w is None else w.double().numpy()


RULES = [
    "refined share, starved",
    "refined share, short",
    "refined share and labeller, starved",
    "refined share and labeller, short",
    "own mean, starved",
]


def main(paths: list[str]) -> int:
    print(
        "run | served as delivered | refined (delivered) | plain | rule: in-sample | 2-fold  (acc / macro-F1, validation gold)"
    )
    for path in paths:
        d = np.load(path)
        gold, labels = d["valid_gold"], d["train_noisy"][d["fit_rows"]]
        c = d["valid_refined_unlabelled"].shape[1]
        served = torch.softmax(torch.from_numpy(d["valid_logits_served"]).double(), dim=1).numpy()
        refined_pred = d["valid_refined_unlabelled"].argmax(1)
        plain = d["valid_pred_plain_model"]

        def cell(pred, gold=gold, c=c):
            return f"{accuracy(gold, pred):.3f} / {macro_f1(gold, pred, c):.3f}"

        cells = [cell(served.argmax(1)), cell(refined_pred), cell(plain)]
        order = np.random.default_rng(0).permutation(len(gold))
        halves = np.array_split(order, 2)
        for rule in RULES:
            in_sample = (served * _weights(served, refined_pred, labels, rule)).argmax(1)
            folded = np.empty(len(gold), dtype=int)
            for fit, score in ((halves[0], halves[1]), (halves[1], halves[0])):
                w = _weights(served[fit], refined_pred[fit], labels, rule)
                folded[score] = (served[score] * w).argmax(1)
            cells.append(f"{rule}: {cell(in_sample)} | {cell(folded)}")
        name = f"{os.path.basename(os.path.dirname(path))}/{os.path.basename(path)}"
        print(f"{name} | " + " | ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
