"""Which share should the class floor guarantee each class? (issue 13: macro-F1 at 40 % noise)

    python -m benchmarks.research.class_floor_quota /work/dumps/*/seed*.npz

Reads `benchmarks.quality --dump-arrays` files made since the dumps carry `class_floor_weights` (the
calibrated posteriors are recovered with `stages.posterior.unfloored`). Each rule sets a quota per class
from gold-free quantities of the training rows (their calibrated refined posteriors, their noisy labels),
`stages.posterior.quota_weights` turns it into class weights, and both the delivered training labels and
the refined posterior of the validation texts (read as unseen, the way test texts are) are read with
them. Scored against train and validation gold (design data); test is not read.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from benchmarks.research.readout import scores as score
from sidyp_engine.stages.posterior import quota_weights, reweighted, unfloored

# share rules for `stages.posterior.floor_share` (the engine's is "lesser"); floor_share_run uses them too
RULES = {
    "lesser": torch.minimum,
    "mean": lambda expected, used: 0.5 * (expected + used),
    "geometric": lambda expected, used: torch.sqrt(expected * used),
    "labeller": lambda expected, used: used,
    "greater": torch.maximum,
}


def inverted_shares(used: torch.Tensor, noise_matrix: np.ndarray) -> torch.Tensor:
    """Class shares pi with pi @ T = the labeller's shares (non-negative least squares, renormalised):
    the true class marginals the noise matrix implies, read without the refined posteriors."""
    from scipy.optimize import nnls

    pi, _ = nnls(np.asarray(noise_matrix, dtype=np.float64).T, used.numpy())
    return torch.from_numpy(pi / max(pi.sum(), 1e-12))


def quotas(
    post: torch.Tensor, noisy: torch.Tensor, noise_matrix: np.ndarray | None = None
) -> dict[str, torch.Tensor | None]:
    """Rows per class each rule guarantees ("none": plain argmax)."""
    n, c = post.shape
    labelled = noisy[noisy >= 0]
    used = torch.bincount(labelled, minlength=c)[:c].double() / max(1, len(labelled))
    soft = post.double().mean(0)
    out: dict[str, torch.Tensor | None] = {"none": None}
    out |= {name: torch.ceil(rule(soft, used) * n).long() for name, rule in RULES.items()}
    if noise_matrix is not None:
        # the anchor T's implied marginals, in place of (or beside) the posteriors' expectation
        inv = inverted_shares(used, noise_matrix)
        out["inverted T, lesser with labeller"] = torch.ceil(torch.minimum(inv, used) * n).long()
        out["greater of expected and inverted T, lesser with labeller"] = torch.ceil(
            torch.minimum(torch.maximum(soft, inv), used) * n
        ).long()
    return out


def main(paths: list[str]) -> int:
    for path in paths:
        d = np.load(path)
        if "class_floor_weights" not in d.files:
            print(f"{path}: no class_floor_weights (an older dump), skipped")
            continue
        w0 = torch.from_numpy(d["class_floor_weights"]).float()
        t0 = float(d["floor_temperature"])
        post = unfloored(torch.from_numpy(d["train_refined_posteriors"]), w0, t0)
        valid = reweighted(torch.from_numpy(d["valid_refined_unlabelled"]), 1.0 / w0)
        fit = d["fit_rows"]
        gold, noisy = d["train_gold"][fit], torch.from_numpy(d["train_noisy"][fit])
        vgold, c = d["valid_gold"], post.shape[1]
        plain = d["valid_logits_plain_model"].argmax(1)
        print(
            f"\n{path}  acc/macro-F1  (plain model valid {score(plain, vgold, c)}; "
            f"noisy train labels {score(np.maximum(noisy.numpy(), 0), gold, c)})"
        )
        t_anchor = d["selection_noise_matrix"]
        used = np.bincount(noisy[noisy >= 0].numpy(), minlength=c) / max(1, int((noisy >= 0).sum()))
        print(
            "  shares: gold "
            + " ".join(f"{x:.3f}" for x in np.bincount(gold[gold >= 0], minlength=c) / (gold >= 0).sum())
            + "\n          labeller "
            + " ".join(f"{x:.3f}" for x in used)
            + "\n          expected "
            + " ".join(f"{x:.3f}" for x in post.double().mean(0).numpy())
            + "\n          inverted T "
            + " ".join(f"{x:.3f}" for x in inverted_shares(torch.from_numpy(used), t_anchor).numpy())
        )
        for name, quota in quotas(post, noisy, t_anchor).items():
            w = None if quota is None else quota_weights(post, quota)
            w = torch.ones(c) if w is None else w
            labels = (post * w).argmax(1).numpy()
            unseen = (valid * w).argmax(1).numpy()
            print(
                f"  {name:<10} labels {score(labels, gold, c)}  refined valid {score(unseen, vgold, c)}"
                f"  max weight {float(w.max()):.1f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
