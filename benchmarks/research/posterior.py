"""Stage 3-4 composition: forward noise-matrix correction, backward mixing P(y|x) = sum_j P(ỹ=j|x) R[j, y],
and a learned x-conditional P(y|ỹ, x), all fed by a class-balanced leave-one-out k-NN prior.

    python benchmarks/research/posterior.py mix       # table 4 of FINDINGS.md (3 seeds)
    python benchmarks/research/posterior.py forward   # table 5 (T estimates incl. an oracle, 1 seed)
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from detectors import all_scores  # noqa: E402
from lab import acc, ece, knn_prior, load, macro_f1, onehot, within_class_select  # noqa: E402
from recipes import DATASETS, estimate_T, head  # noqa: E402


def noisy_balanced_accuracy(p: np.ndarray, y_noisy: np.ndarray) -> float:
    """Mean per-class recall against the noisy validation labels: the only selector a user has."""
    pred = p.argmax(1)
    return float(np.mean([(pred[y_noisy == c] == c).mean() for c in np.unique(y_noisy)]))


def loo_prior(X, y, K, k=25, balance=True, keep=None):
    """k-NN prior of every train example from the (kept) reference set, never voting for itself."""
    keep = np.ones(len(y), bool) if keep is None else keep
    idx = -np.ones(len(y), int)
    idx[keep] = np.arange(keep.sum())
    return knn_prior(X[keep], y[keep], X, K, k=k, exclude_self=idx, balance=balance)


def backward_matrix(prior: np.ndarray, y: np.ndarray, K: int) -> np.ndarray:
    """R[j, y] = P(true y | noisy j): the prior averaged over the examples of each noisy class."""
    R = onehot(y, K).T @ prior + 1e-6
    return R / R.sum(1, keepdims=True)


def composed(noisy_model, cond_model, K):
    """P(y|x) = sum_j P(ỹ=j|x) P(y|ỹ=j, x) with a classifier on [x, onehot(ỹ)]."""

    def predict(Z):
        pz = noisy_model(Z)
        out = np.zeros((len(Z), K))
        for j in range(K):
            out += pz[:, j : j + 1] * cond_model(
                np.hstack([Z, np.tile(onehot(np.array([j]), K), (len(Z), 1))])
            )
        return out

    return predict


def setup(name):
    d = load(name)
    m = d.noisy["train"] >= 0
    mv = d.noisy["valid"] >= 0
    return d, d.X["train"][m], d.noisy["train"][m], d.gold["train"][m], d.X["valid"][mv], d.noisy["valid"][mv]


def mix(seeds=(0, 1, 2)):
    for name in DATASETS:
        d, X, y, _, Xv, yv = setup(name)
        K = d.K
        Y = onehot(y, K)
        rows: dict[str, list] = {}

        def score(label, p, d=d, Xv=Xv, yv=yv, rows=rows):
            pt, g = p(d.X["test"]), d.gold["test"]
            result = [acc(pt, g), macro_f1(pt, g), ece(pt, g), noisy_balanced_accuracy(p(Xv), yv)]
            rows.setdefault(label, []).append(result)

        for seed in seeds:
            noisy, noisy_bal = head(X, Y, seed), head(X, Y, seed, True)
            score("a. LR on noisy labels (baseline)", noisy)
            score("g. LR on noisy labels, class-balanced loss", noisy_bal)
            for k in (10, 25, 50):
                for balance in (True, False):
                    R = backward_matrix(loo_prior(X, y, K, k, balance), y, K)
                    score(
                        f"mix: balanced P(ỹ|x) @ R, k={k}, {'balanced' if balance else 'plain'} k-NN votes",
                        lambda Z, R=R, m=noisy_bal: m(Z) @ R,
                    )
            prior = loo_prior(X, y, K, 25, True)
            cond = head(np.hstack([X, Y]), prior, seed, True)
            score("composed: balanced P(ỹ|x), learned P(y|ỹ,x), k=25", composed(noisy_bal, cond, K))
            score("direct: LR on the k=25 prior, balanced loss", head(X, prior, seed, True))
        print(f"\n## {name} (mean ± sd over {len(seeds)} seeds)")
        print("| recipe | test acc | test macro-F1 | test ECE | noisy-valid balanced acc |")
        print("|---|---|---|---|---|")
        for label, r in rows.items():
            r = np.array(r)
            print(
                f"| {label} | {r[:, 0].mean():.3f} ± {r[:, 0].std():.3f} | {r[:, 1].mean():.3f} | "
                f"{r[:, 2].mean():.3f} | {r[:, 3].mean():.3f} |",
                flush=True,
            )


def forward():
    for name in DATASETS:
        d, X, y, gold, Xv, yv = setup(name)
        K = d.K
        Y = onehot(y, K)
        scores = all_scores(X, y, K)
        print(f"\n## {name}: forward-corrected LR (seed 0)")
        print(
            "| T estimated from | T diagonal | plain loss: test acc / noisy-valid bal | balanced loss: test acc / noisy-valid bal |"
        )
        print("|---|---|---|---|")
        estimates = {
            "balanced k-NN prior, all examples, k=10": loo_prior(X, y, K, 10),
            "balanced k-NN prior, all examples, k=25": loo_prior(X, y, K, 25),
            "balanced k-NN prior, centroid_margin 30%/class": loo_prior(
                X, y, K, 10, keep=within_class_select(scores["centroid_margin"], y, K, 0.3)
            ),
            "balanced LR in-sample": head(X, Y, 0, True)(X),
            "ORACLE (gold, for reference only)": onehot(gold, K),
        }
        for label, q in estimates.items():
            T = estimate_T(q, y, K)
            cells = []
            for balanced in (False, True):
                p = head(X, Y, 0, balanced, transition=T)
                cells.append(
                    f"{acc(p(d.X['test']), d.gold['test']):.3f} / {noisy_balanced_accuracy(p(Xv), yv):.3f}"
                )
            diag = " ".join(f"{v:.2f}" for v in np.diag(T))
            print(f"| {label} | {diag} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    {"mix": mix, "forward": forward}[sys.argv[1] if len(sys.argv) > 1 else "mix"]()
