"""Design data for the read-out of the refined posteriors: argmax against class-weighted argmax rules.

    python -m benchmarks.research.readout /work/dumps/*/seed*.npz

The refined posteriors' argmax favours large classes (macro-F1 fell below the noisy baseline on semeval and
the 40 % development set while accuracy rose). Each rule here sets one weight per class from gold-free
quantities of the training rows (their refined posteriors), then reads every output as argmax(p * w):
the delivered labels (training rows), the refined posterior of the validation texts and the served
model's validation logits (log w added). Scored against train and validation gold only (design data).
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from sidyp_engine.metrics import accuracy, macro_f1
from sidyp_engine.stages.posterior import class_floor_weights


def match_marginal(probs: np.ndarray, target: np.ndarray, iterations: int = 300) -> np.ndarray:
    """Weights w (geometric mean 1) with which argmax(probs * w) predicts each class at the target share."""
    n, c = probs.shape
    w = np.ones(c)
    for _ in range(iterations):
        share = np.bincount((probs * w).argmax(1), minlength=c) / n
        w *= ((target + 1e-3) / (share + 1e-3)) ** 0.3
        w /= np.exp(np.log(w).mean())
    return w


def rules(train_post: np.ndarray, noisy: np.ndarray) -> dict[str, np.ndarray]:
    c = train_post.shape[1]
    soft = train_post.mean(0)
    full = match_marginal(train_post, soft)
    out = {"argmax": np.ones(c), "match_soft_marginal": full, "match_soft_marginal^0.5": full**0.5}
    share = np.bincount(train_post.argmax(1), minlength=c) / len(train_post)
    floor = np.maximum(share, 0.5 * soft)  # raise only the classes argmax starves, to half their soft share
    out["floor_half_soft (marginal matching)"] = match_marginal(train_post, floor / floor.sum())
    # the engine's rule: half the lesser of the soft share and the labeller's use, starved classes only
    w = class_floor_weights(torch.from_numpy(train_post), torch.from_numpy(noisy))
    out["engine class floor"] = np.ones(c) if w is None else w.numpy()
    for alpha in (0.25, 0.5, 1.0):
        out[f"divide_marginal^{alpha}"] = 1.0 / np.maximum(soft, 1e-4) ** alpha
    return out


def scores(pred: np.ndarray, gold: np.ndarray, c: int) -> str:
    return f"{accuracy(gold, pred):.3f}/{macro_f1(gold, pred, c):.3f}"


def main(paths: list[str]) -> int:
    for path in paths:
        d = np.load(path)
        train_post, train_gold = d["train_refined_posteriors"], d["train_gold"][d["fit_rows"]]
        c = train_post.shape[1]
        valid_gold = d["valid_gold"]
        print(f"\n{path}  (acc/macro-F1; train n={len(train_gold)}, valid n={len(valid_gold)})")
        print(
            f"  noisy labels: train {scores(np.maximum(d['train_noisy'][d['fit_rows']], 0), train_gold, c)}"
        )
        print(f"  plain model valid {scores(d['valid_logits_plain_model'].argmax(1), valid_gold, c)}")
        if "valid_logits_probe" in d:
            print(f"  probe valid {scores(d['valid_logits_probe'].argmax(1), valid_gold, c)}")
        gold_share = np.bincount(train_gold[train_gold >= 0], minlength=c)[:c] / max(
            1, (train_gold >= 0).sum()
        )
        print(f"  train gold share   {np.round(gold_share, 3).tolist()}")
        print(f"  soft marginal      {np.round(train_post.mean(0), 3).tolist()}")
        print(
            f"  argmax share       {np.round(np.bincount(train_post.argmax(1), minlength=c) / len(train_post), 3).tolist()}"
        )
        for name, w in rules(train_post, d["train_noisy"][d["fit_rows"]]).items():
            labels = (train_post * w).argmax(1)
            refined = (d["valid_refined_unlabelled"] * w).argmax(1)
            served = (d["valid_logits_served"] + np.log(w)).argmax(1)
            print(
                f"  {name:<22} labels {scores(labels, train_gold, c)}  refined valid "
                f"{scores(refined, valid_gold, c)}  served valid {scores(served, valid_gold, c)}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
