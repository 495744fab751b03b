"""Stage 2 candidates: which score separates right from wrong noisy labels *within a noisy class*?

Prints, per dataset and detector: within-class AUROC for 'noisy label is right' (gold used only to
score), and purity / size of the kept set for fixed per-class fractions and a per-class GMM.
"""

import sys

import numpy as np

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from lab import (  # noqa: E402
    fit_head,
    knn_prior,
    load,
    onehot,
    oof_probs,
    rank01,
    within_class_auroc,
    within_class_rank,
    within_class_select,
)

DATASETS = ("semeval-mixtral-fewshot", "trec-weak-vote")


def dynamics_scores(X, y, K, seeds=(0, 1, 2), epochs=6):
    """Simulated stage 1: MLP heads trained on noisy labels, per-epoch hidden features and logits."""
    dist_scores, aum_scores, conf_scores = [], [], []
    for seed in seeds:
        _, hist = fit_head(
            X, onehot(y, K), seed=seed, hidden=128, epochs=epochs, lr=1e-3, batch_size=32, record=True
        )
        dists, margins, confs = [], [], []
        for feats, logits in hist:
            f = feats / np.linalg.norm(feats, axis=1, keepdims=True).clip(1e-9)
            cent = np.stack([f[y == c].mean(0) if (y == c).any() else np.zeros(f.shape[1]) for c in range(K)])
            dists.append(np.linalg.norm(f - cent[y], axis=1))
            own = logits[np.arange(len(y)), y]
            other = logits.copy()
            other[np.arange(len(y)), y] = -np.inf
            margins.append(own - other.max(1))
            e = np.exp(logits - logits.max(1, keepdims=True))
            confs.append((e / e.sum(1, keepdims=True))[np.arange(len(y)), y])
        dists = np.stack(dists)
        dist_scores.append(-(dists.mean(0) + dists.std(0)))  # paper: mean + std of distance, lower = cleaner
        aum_scores.append(np.mean(margins, 0))
        conf_scores.append(np.mean(confs, 0))
    return np.mean(dist_scores, 0), np.mean(aum_scores, 0), np.mean(conf_scores, 0)


def all_scores(X, y, K):
    """Every detector: higher = more likely clean. Uses only X and the noisy labels y."""
    scores = {}
    dyn_dist, aum, dyn_conf = dynamics_scores(X, y, K)
    scores["dyn_dist (paper)"] = dyn_dist
    scores["dyn_aum"] = aum
    scores["dyn_conf"] = dyn_conf
    oof = oof_probs(X, y, K, epochs=100)
    scores["oof_selfconf"] = oof[np.arange(len(y)), y]
    other = oof.copy()
    other[np.arange(len(y)), y] = 0
    scores["oof_margin"] = oof[np.arange(len(y)), y] - other.max(1)
    # normalised by the class's mean confidence: a wrong label in a rare class still scores low
    knn = knn_prior(X, y, X, K, k=10, exclude_self=np.arange(len(y)))
    scores["knn_agree"] = knn[np.arange(len(y)), y]
    knn_b = knn_prior(X, y, X, K, k=10, exclude_self=np.arange(len(y)), balance=True)
    scores["knn_agree_bal"] = knn_b[np.arange(len(y)), y]
    f = X
    cent = np.stack([f[y == c].mean(0) for c in range(K)])
    cent /= np.linalg.norm(cent, axis=1, keepdims=True)
    sim = f @ cent.T
    scores["centroid_sim"] = sim[np.arange(len(y)), y]
    o = sim.copy()
    o[np.arange(len(y)), y] = -np.inf
    scores["centroid_margin"] = sim[np.arange(len(y)), y] - o.max(1)
    r = {k: within_class_rank(v, y, K) for k, v in scores.items()}
    scores["rank(oof_margin+knn_agree)"] = r["oof_margin"] + r["knn_agree"]
    scores["rank(oof_margin+knn_agree+dyn_dist)"] = r["oof_margin"] + r["knn_agree"] + r["dyn_dist (paper)"]
    scores["rank(centroid_margin+knn_agree)"] = r["centroid_margin"] + r["knn_agree"]
    return scores


def main():
    for name in DATASETS:
        d = load(name)
        m = d.noisy["train"] >= 0
        X, y, gold = d.X["train"][m], d.noisy["train"][m], d.gold["train"][m]
        right = y == gold
        print(f"\n## {name}: base rate of right labels {right.mean():.3f}")
        print(
            "| detector | within-class AUROC | pooled AUROC | purity 30% | purity 50% | GMM purity / kept |"
        )
        print("|---|---|---|---|---|---|")
        for label, s in all_scores(X, y, d.K).items():
            from lab import auroc

            row = [f"{within_class_auroc(s, y, right, d.K):.3f}", f"{auroc(s, right):.3f}"]
            for frac in (0.3, 0.5):
                keep = within_class_select(s, y, d.K, frac)
                row.append(f"{right[keep].mean():.3f}")
            keep = within_class_select(s, y, d.K, "gmm")
            row.append(f"{right[keep].mean():.3f} / {keep.mean():.2f}")
            print(f"| {label} | " + " | ".join(row) + " |", flush=True)
        _ = rank01


if __name__ == "__main__":
    main()
