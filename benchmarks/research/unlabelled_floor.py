"""The class floor on texts read without a label (research).

    python -m benchmarks.research.unlabelled_floor <dump.npz> [<dump.npz> ...]

The class floor (`stages.posterior.class_floor_weights`) is fitted on the training rows, whose refined
posteriors read the row's own label. Texts without one (validation texts read as unseen, evaluation texts)
marginalise over the classifier's P(ỹ | x) instead, and there a class the labeller's labels carry can
lose most of its mass: the floor met on the training rows is not met there. Each rule below sets weights
on the unlabelled read from gold-free quantities only, and is scored on the validation gold (design data;
test is not read): `in-sample` fits the weights on all validation texts (as a run would on its evaluation
texts), `2-fold` on one half and scores the other. The floor's share of a class is the lesser of the
labeller's share and the expected share: the training rows' mean calibrated posterior (times 1 or 0.5),
or the unlabelled texts' own (the engine's, `stages.posterior.unlabelled_floor_weights`).
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch

from sidyp_engine.metrics import accuracy, macro_f1
from sidyp_engine.stages.posterior import reweighted, unfloored, unlabelled_floor_weights


def _train_rows(d) -> tuple[torch.Tensor, torch.Tensor]:
    """The training rows' calibrated refined posteriors and their labels."""
    train = unfloored(
        torch.from_numpy(d["train_refined_posteriors"]).double(),
        torch.from_numpy(d["class_floor_weights"]).double(),
        float(d["floor_temperature"]),
    )
    return train, torch.from_numpy(d["train_noisy"][d["fit_rows"]])


def _weights(probs: np.ndarray, d, rule: str, weighted: bool) -> np.ndarray:
    """`weighted`: `probs` carry the training rows' class floor (the refined read; not the served model)."""
    train, given = _train_rows(d)
    p = torch.from_numpy(probs).double()
    if rule.startswith("own mean"):  # the engine: the texts' own expected shares (weights divided out)
        own = reweighted(p, 1.0 / torch.from_numpy(d["class_floor_weights"]).double()) if weighted else p
        w = unlabelled_floor_weights(p, own, given, starved_ratio=RULES[rule])
    else:  # the training rows' expected shares, as their floor reads them
        w = unlabelled_floor_weights(p, train, given, RULES[rule], starved_ratio=1.0)
    return np.ones(probs.shape[1]) if w is None else w.double().numpy()


def _unlabelled_read(d) -> np.ndarray:
    """The validation texts read without a label, without the unlabelled floor (dumps made with it carry
    its weights)."""
    probs = torch.from_numpy(d["valid_refined_unlabelled"]).double()
    if "unlabelled_floor_weights" in d:
        probs = reweighted(probs, 1.0 / torch.from_numpy(d["unlabelled_floor_weights"]).double())
    return probs.numpy()


# the training rows' rules: the floor's factor on the share; the texts' own: the starved ratio (1: every
# class short of its share)
RULES = {
    "train mean": 1.0,
    "train mean x 0.5": 0.5,
    "own mean": 1.0,
    "own mean, starved only": 0.5,
    "own mean, starved at 1/3": 1 / 3,
}


def _scored(probs, gold, c, d, rule, folds, weighted) -> tuple[float, float]:
    pred = np.empty(len(gold), dtype=int)
    if folds == 1:
        pred[:] = (probs * _weights(probs, d, rule, weighted)).argmax(1)
    else:
        order = np.random.default_rng(0).permutation(len(gold))
        halves = np.array_split(order, 2)
        for fit, score in ((halves[0], halves[1]), (halves[1], halves[0])):
            pred[score] = (probs[score] * _weights(probs[fit], d, rule, weighted)).argmax(1)
    return accuracy(gold, pred), macro_f1(gold, pred, c)


def main(paths: list[str]) -> int:
    print("run | output | as delivered | rule: in-sample | 2-fold (acc / macro-F1 on validation gold)")
    for path in paths:
        d = np.load(path)
        gold = d["valid_gold"]
        c = d["valid_refined_unlabelled"].shape[1]
        logits = d["valid_logits_served"]
        served = np.exp(logits - logits.max(1, keepdims=True))
        outputs = {
            "refined": _unlabelled_read(d),
            "served": served / served.sum(1, keepdims=True),
            "plain": d["valid_logits_plain_model"],
        }
        name = f"{os.path.basename(os.path.dirname(path))}/{os.path.basename(path)}"
        for out, probs in outputs.items():
            if out == "plain":
                pred = probs.argmax(1)
                print(f"{name} | plain | {accuracy(gold, pred):.3f} / {macro_f1(gold, pred, c):.3f}")
                continue
            base = probs.argmax(1)
            cells = [f"{accuracy(gold, base):.3f} / {macro_f1(gold, base, c):.3f}"]
            for rule in RULES:
                a1, f1 = _scored(probs, gold, c, d, rule, 1, out == "refined")
                a2, f2 = _scored(probs, gold, c, d, rule, 2, out == "refined")
                cells.append(f"{rule}: {a1:.3f} / {f1:.3f} | {a2:.3f} / {f2:.3f}")
            print(f"{name} | {out} | " + " | ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
