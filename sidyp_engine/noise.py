"""Stage 2a: training-dynamics noise score and the likely-noisy set.

The score is the paper's: for every branch and epoch, the distance of an example's embedding to the
centroid of its noisy class; score = mean + std over epochs (averaged over branches). Examples whose
representation keeps sitting far from, or jumps around, their labelled class are likely mislabelled.
Centroids come from training rows and their noisy labels only (never from test texts or gold labels).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

# The automatic noisy share is clipped to this range: the mixture fit can run away to a degenerate
# component on tiny or unimodal data, and flagging (almost) nothing or everything helps no one.
AUTO_FRACTION_RANGE = (0.02, 0.8)


@torch.no_grad()
def noise_scores(dynamics: torch.Tensor, noisy: torch.Tensor) -> torch.Tensor:
    """Score per example (higher = more likely mislabelled); NaN for rows without a label.

    dynamics: [M, N, E, D] embeddings per branch and epoch; noisy: [N] int64 ids, -1 = missing.
    Embeddings are L2-normalised first: the encoder's norms drift across epochs, and unnormalised
    distances would make the std over epochs measure that drift rather than the example's instability.
    """
    noisy = torch.as_tensor(noisy, dtype=torch.long)
    m, n, e, _ = dynamics.shape
    labelled = noisy >= 0
    scores = torch.full((n,), float("nan"))
    if not labelled.any():
        return scores
    ids = noisy[labelled]
    n_classes = int(ids.max()) + 1
    per_branch = torch.zeros(m, int(labelled.sum()))
    for b in range(m):  # one branch at a time keeps peak memory at one [N, E, D] float32 copy
        z = torch.nn.functional.normalize(dynamics[b, labelled].float(), dim=-1)  # [n, E, D]
        sums = torch.zeros(n_classes, e, z.shape[-1]).index_add_(0, ids, z)
        counts = torch.bincount(ids, minlength=n_classes).clamp_min(1).view(-1, 1, 1).float()
        centroids = sums / counts  # [C, E, D]
        dist = (z - centroids[ids]).norm(dim=-1)  # [n, E]
        spread = dist.std(dim=1, unbiased=False) if e > 1 else torch.zeros(dist.shape[0])
        per_branch[b] = dist.mean(dim=1) + spread
    scores[labelled] = per_branch.mean(dim=0)
    return scores


def _two_component_fraction(x: np.ndarray, iterations: int = 200) -> float:
    """Weight of the higher-mean component of a 1-D two-Gaussian mixture fitted by EM."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 4 or np.allclose(x, x[0]):
        return AUTO_FRACTION_RANGE[0]
    lo, hi = np.quantile(x, [0.25, 0.75])
    mu = np.array([lo, hi])
    var_floor = 1e-3 * x.var() + 1e-12
    var = np.full(2, max(x.var() / 4, var_floor))
    pi = np.array([0.5, 0.5])
    prev = -np.inf
    for _ in range(iterations):
        log_p = -0.5 * ((x[:, None] - mu) ** 2 / var + np.log(2 * math.pi * var)) + np.log(pi)
        top = log_p.max(axis=1, keepdims=True)
        log_norm = top + np.log(np.exp(log_p - top).sum(axis=1, keepdims=True))
        resp = np.exp(log_p - log_norm)
        nk = resp.sum(axis=0) + 1e-12
        pi = nk / len(x)
        mu = (resp * x[:, None]).sum(axis=0) / nk
        var = np.maximum((resp * (x[:, None] - mu) ** 2).sum(axis=0) / nk, var_floor)
        ll = float(log_norm.sum())
        if ll - prev < 1e-8 * abs(ll):
            break
        prev = ll
    return float(pi[int(np.argmax(mu))])


def estimate_noisy_fraction(scores: torch.Tensor, noisy: torch.Tensor) -> float:
    """The 'auto' noisy share: weight of the high-score component of a two-Gaussian mixture on the scores.

    The mixture is fitted to the scores of all labelled rows together: they are distances between unit
    vectors, so every class's scores share one scale (standardising per class over-estimated the share:
    docs/method.md). The detector is weak on LLM noise, so treat this as a rough estimate; a known share
    can be passed as a number instead.
    """
    noisy = torch.as_tensor(noisy, dtype=torch.long)
    values = scores[noisy >= 0].double().numpy()
    values = values[np.isfinite(values)]
    frac = _two_component_fraction(values)
    return float(min(max(frac, AUTO_FRACTION_RANGE[0]), AUTO_FRACTION_RANGE[1]))


def select_likely_noisy(
    scores: torch.Tensor, noisy: torch.Tensor, fraction: Literal["auto"] | float = "auto"
) -> tuple[torch.Tensor, float]:
    """Flag the highest-scoring `fraction` of every noisy class; returns (mask [N] bool, fraction used).

    Selection is within each class: pooled over classes, the flagged set collapses onto the classes the
    labeller over-uses (see docs / quality notes). Rows with a missing label are never flagged (they
    have no label to be wrong about) and are not part of the clean set either; callers treat them as unknown.
    """
    noisy = torch.as_tensor(noisy, dtype=torch.long)
    scores = torch.as_tensor(scores, dtype=torch.float32)
    frac = estimate_noisy_fraction(scores, noisy) if fraction == "auto" else float(fraction)
    if not 0.0 <= frac < 1.0:
        raise ValueError(f"noise fraction must be in [0, 1), got {frac}")
    mask = torch.zeros(len(noisy), dtype=torch.bool)
    for c in torch.unique(noisy[noisy >= 0]).tolist():
        rows = torch.nonzero(noisy == c).flatten()
        k = int(round(frac * len(rows)))
        if k <= 0:
            continue
        k = min(k, len(rows) - 1)  # keep at least one clean example per class for the k-NN prior
        if k <= 0:
            continue
        top = torch.topk(scores[rows], k).indices
        mask[rows[top]] = True
    return mask, frac
