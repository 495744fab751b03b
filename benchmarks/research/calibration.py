"""Two follow-ups to FINDINGS.md: candidate-set coverage of the balanced k=25 prior, and re-calibrating
the composed P(y|x) with a temperature fitted (on noisy-valid labels only) through the estimated T."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from lab import acc, ece, onehot  # noqa: E402
from posterior import backward_matrix, loo_prior, setup  # noqa: E402
from recipes import DATASETS, estimate_T, head  # noqa: E402


def sharpen(p: np.ndarray, tau: float) -> np.ndarray:
    q = np.exp(np.log(p.clip(1e-12)) / tau)
    return q / q.sum(1, keepdims=True)


def main():
    for name in DATASETS:
        d, X, y, gold, Xv, yv = setup(name)
        K = d.K
        prior = loo_prior(X, y, K, 25, True)
        order = np.argsort(-prior, 1)
        print(f"\n## {name}: balanced k=25 prior on train (gold only to score)")
        print(
            f"argmax right {np.mean(order[:, 0] == gold):.3f}, gold in top 2 {np.mean((order[:, :2] == gold[:, None]).any(1)):.3f}"
        )
        for mass in (0.5, 0.7, 0.9):
            cum = np.cumsum(np.take_along_axis(prior, order, 1), 1)
            size = (cum < mass).sum(1) + 1
            covered = np.array([gold[i] in order[i, : size[i]] for i in range(len(y))])
            print(
                f"cumulative mass >= {mass}: mean set size {size.mean():.2f}, gold covered {covered.mean():.3f}"
            )
        T = estimate_T(prior, y, K)
        R = backward_matrix(prior, y, K)
        model = head(X, onehot(y, K), 0, True)
        pv, pt = model(Xv) @ R, model(d.X["test"]) @ R
        taus = np.exp(np.linspace(np.log(0.05), np.log(2.0), 40))
        # likelihood of the noisy valid labels under P_tau(y|x) pushed through T
        nll = [-np.mean(np.log((sharpen(pv, t) @ T)[np.arange(len(yv)), yv].clip(1e-12))) for t in taus]
        tau = taus[int(np.argmin(nll))]
        g = d.gold["test"]
        print(
            f"mix: test acc {acc(pt, g):.3f}, ECE {ece(pt, g):.3f}; tau fitted on noisy valid via T = {tau:.3f}: "
            f"ECE {ece(sharpen(pt, tau), g):.3f}; mean confidence {sharpen(pt, tau).max(1).mean():.3f}"
        )
        for t in (0.1, 0.2, 0.3, 0.5):
            print(f"  tau {t}: ECE {ece(sharpen(pt, t), g):.3f}")


if __name__ == "__main__":
    main()
