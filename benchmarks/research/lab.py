"""Shared, cheap building blocks for the stage 2-4 research on frozen MiniLM embeddings.

Gold labels are passed only to the *_metrics helpers, which score; nothing that fits or selects sees them.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

CACHE_DIR = Path("/tmp/sidyp-research")
torch.set_num_threads(1)  # leave the other core to the rest of the team


@dataclass
class Data:
    name: str
    classes: list[str]
    X: dict[str, np.ndarray]
    noisy: dict[str, np.ndarray]
    gold: dict[str, np.ndarray]

    @property
    def K(self) -> int:
        return len(self.classes)


def load(name: str) -> Data:
    z = np.load(CACHE_DIR / f"{name}.npz")
    splits = ("train", "valid", "test")
    return Data(
        name,
        [str(c) for c in z["classes"]],
        {s: z[f"X_{s}"] for s in splits},
        {s: z[f"noisy_{s}"] for s in splits},
        {s: z[f"gold_{s}"] for s in splits},
    )


def onehot(y: np.ndarray, K: int) -> np.ndarray:
    out = np.zeros((len(y), K), np.float32)
    out[np.arange(len(y)), y] = 1.0
    return out


def _head(in_dim: int, hidden: int, K: int) -> tuple[torch.nn.Module, torch.nn.Linear]:
    """(body, output layer): identity + linear (softmax regression), or Linear-GELU + linear (MLP)."""
    if hidden:
        body = torch.nn.Sequential(torch.nn.Linear(in_dim, hidden), torch.nn.GELU())
    else:
        body = torch.nn.Identity()
    return body, torch.nn.Linear(hidden or in_dim, K)


def _soft_cross_entropy(logits, targets, weights, transition) -> torch.Tensor:
    """Weighted cross-entropy to soft targets; with `transition`, of P(y|x) pushed through T (forward loss)."""
    if transition is None:
        logp = F.log_softmax(logits, -1)
    else:
        logp = torch.log((F.softmax(logits, -1) @ transition).clamp_min(1e-8))
    return -((targets * logp).sum(-1) * weights).sum() / weights.sum().clamp_min(1e-8)


def fit_head(
    X: np.ndarray,
    targets: np.ndarray,
    seed: int = 0,
    hidden: int = 0,
    epochs: int = 100,
    lr: float = 1e-2,
    weight_decay: float = 1e-4,
    sample_weight: np.ndarray | None = None,
    batch_size: int = 0,
    record: bool = False,
    transition: np.ndarray | None = None,
):
    """Softmax regression (hidden=0) or one-hidden-layer MLP on soft targets.

    batch_size=0 is full batch. record=True returns per-epoch (hidden features, logits) of X: the
    'training dynamics' a fine-tuned classifier would give. transition (K x K, rows true, cols noisy)
    trains with forward loss correction: the model's P(y|x) is pushed through T before the loss.
    """
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    Xt = torch.from_numpy(X)
    Tt = torch.from_numpy(targets.astype(np.float32))
    W = torch.ones(len(X)) if sample_weight is None else torch.from_numpy(sample_weight.astype(np.float32))
    body, out = _head(X.shape[1], hidden, targets.shape[1])
    model = torch.nn.Sequential(body, out)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    T = None if transition is None else torch.from_numpy(transition.astype(np.float32))
    history = []
    n = len(X)
    bs = batch_size or n
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g) if batch_size else torch.arange(n)
        for start in range(0, n, bs):
            idx = perm[start : start + bs]
            loss = _soft_cross_entropy(model(Xt[idx]), Tt[idx], W[idx], T)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if record:
            with torch.no_grad():
                feats = body(Xt)
                history.append((feats.numpy().copy(), out(feats).numpy().copy()))
    model.eval()

    def predict(Xq: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return F.softmax(model(torch.from_numpy(Xq)), -1).numpy()

    return (predict, history) if record else predict


def knn_prior(
    X_ref: np.ndarray,
    y_ref: np.ndarray,
    X_query: np.ndarray,
    K: int,
    k: int = 10,
    exclude_self: np.ndarray | None = None,
    w_ref: np.ndarray | None = None,
    balance: bool = False,
) -> np.ndarray:
    """Distance-weighted k-NN class distribution (cosine; inputs are L2-normalised).

    exclude_self[i] = index into X_ref of query i itself (or -1): it is removed before voting, so a
    reference point never just gets its own label back. balance divides votes by class frequency in
    the reference set (the clean set is usually skewed towards the labeller's favourite classes).
    """
    sims = X_query @ X_ref.T
    if exclude_self is not None:
        rows = np.nonzero(exclude_self >= 0)[0]
        sims[rows, exclude_self[rows]] = -np.inf
    nn = np.argpartition(-sims, k, axis=1)[:, :k]
    s = np.take_along_axis(sims, nn, 1)
    w = 1.0 / np.clip(1.0 - s, 1e-3, None)  # distance weighting on cosine distance
    if w_ref is not None:
        w = w * w_ref[nn]
    votes = np.zeros((len(X_query), K))
    np.add.at(votes, (np.repeat(np.arange(len(X_query)), k), y_ref[nn].ravel()), w.ravel())
    if balance:
        freq = np.bincount(y_ref, minlength=K).astype(float)
        votes = votes / np.clip(freq, 1, None) * freq.mean()
    votes += 1e-6
    return votes / votes.sum(1, keepdims=True)


def oof_probs(X: np.ndarray, y: np.ndarray, K: int, folds: int = 5, seed: int = 0, **fit_kw) -> np.ndarray:
    rng = np.random.default_rng(seed)
    fold = rng.integers(0, folds, len(X))
    out = np.zeros((len(X), K), np.float32)
    for f in range(folds):
        tr, te = fold != f, fold == f
        out[te] = fit_head(X[tr], onehot(y[tr], K), seed=seed, **fit_kw)(X[te])
    return out


def within_class_select(score: np.ndarray, y: np.ndarray, K: int, frac: float | str) -> np.ndarray:
    """Boolean mask of examples kept as clean: the top `frac` by score inside each noisy class
    (higher score = cleaner). frac='gmm' fits a two-component GMM on the scores per class."""
    keep = np.zeros(len(y), bool)
    for c in range(K):
        idx = np.nonzero(y == c)[0]
        if len(idx) == 0:
            continue
        if frac == "gmm":
            keep[idx] = gmm_clean(score[idx])
        else:
            n_keep = max(1, int(round(frac * len(idx))))
            keep[idx[np.argsort(-score[idx])[:n_keep]]] = True
    return keep


def gmm_clean(s: np.ndarray) -> np.ndarray:
    from sklearn.mixture import GaussianMixture

    if len(s) < 4 or np.ptp(s) < 1e-9:
        return np.ones(len(s), bool)
    z = ((s - s.mean()) / (s.std() + 1e-9)).reshape(-1, 1)
    gm = GaussianMixture(2, random_state=0).fit(z)
    hi = int(np.argmax(gm.means_.ravel()))
    return gm.predict_proba(z)[:, hi] > 0.5


def rank01(a: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(a)) / max(1, len(a) - 1)


def within_class_rank(score: np.ndarray, y: np.ndarray, K: int) -> np.ndarray:
    out = np.zeros(len(y))
    for c in range(K):
        idx = np.nonzero(y == c)[0]
        if len(idx):
            out[idx] = rank01(score[idx])
    return out


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if positive.all() or (~positive).all():
        return float("nan")
    return float(roc_auc_score(positive, score))


def within_class_auroc(score, y, positive, K) -> float:
    """Per-noisy-class AUROC of score for 'label is right', averaged weighted by class size."""
    vals, ws = [], []
    for c in range(K):
        m = y == c
        a = auroc(score[m], positive[m])
        if not np.isnan(a):
            vals.append(a)
            ws.append(m.sum())
    return float(np.average(vals, weights=ws))


def acc(p: np.ndarray, gold: np.ndarray) -> float:
    return float((p.argmax(1) == gold).mean())


def macro_f1(p: np.ndarray, gold: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(gold, p.argmax(1), average="macro"))


def ece(p: np.ndarray, gold: np.ndarray, bins: int = 15) -> float:
    conf = p.max(1)
    right = p.argmax(1) == gold
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            total += m.mean() * abs(conf[m].mean() - right[m].mean())
    return float(total)
