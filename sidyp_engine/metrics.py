"""Scores of predictions against reference labels (numpy only): accuracy, macro-F1, expected calibration error."""

from __future__ import annotations

import numpy as np


def _as_int(a) -> np.ndarray:
    return np.asarray(a, dtype=np.int64).reshape(-1)


def accuracy(y_true, y_pred) -> float:
    y_true, y_pred = _as_int(y_true), _as_int(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {len(y_true)} vs {len(y_pred)}")
    if len(y_true) == 0:
        return float("nan")
    return float((y_true == y_pred).mean())


def macro_f1(y_true, y_pred, n_classes: int) -> float:
    """Unweighted mean of per-class F1 over the classes present in y_true or y_pred.

    A class that neither occurs nor is predicted has an undefined F1 and is left out, as scikit-learn
    does with `labels` unset; a class that occurs but is never predicted (or the reverse) counts as 0.
    """
    y_true, y_pred = _as_int(y_true), _as_int(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {len(y_true)} vs {len(y_pred)}")
    if len(y_true) == 0:
        return float("nan")
    tp = np.bincount(y_true[y_true == y_pred], minlength=n_classes)[:n_classes].astype(float)
    true_count = np.bincount(y_true, minlength=n_classes)[:n_classes].astype(float)
    pred_count = np.bincount(y_pred, minlength=n_classes)[:n_classes].astype(float)
    present = (true_count + pred_count) > 0
    f1 = np.zeros(n_classes)
    denom = true_count + pred_count
    f1[present] = 2 * tp[present] / denom[present]
    return float(f1[present].mean())


def ece(probs, y_true, n_bins: int = 15) -> float:
    """Expected calibration error of the top label: 15 equal-width confidence bins over (0, 1].

    Sum over bins of (share of examples in the bin) * |accuracy in bin - mean confidence in bin|.
    """
    probs = np.asarray(probs, dtype=np.float64)
    y_true = _as_int(y_true)
    if probs.ndim != 2 or probs.shape[0] != len(y_true):
        raise ValueError(f"probs must be [n, C] matching y_true; got {probs.shape} and {len(y_true)}")
    if len(y_true) == 0:
        return float("nan")
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # bins are (lo, hi]; a confidence of exactly 0 (impossible for a distribution) would fall in bin 0
    bin_of = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        in_bin = bin_of == b
        if in_bin.any():
            total += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(total)


def nll(probs, y_true, eps: float = 1e-12) -> float:
    """Mean negative log-likelihood of the reference labels."""
    probs = np.asarray(probs, dtype=np.float64)
    y_true = _as_int(y_true)
    return float(-np.log(np.clip(probs[np.arange(len(y_true)), y_true], eps, 1.0)).mean())


def score_all(probs, y_true, n_classes: int, n_bins: int = 15) -> dict[str, float]:
    """accuracy, macro_f1, ece and nll of a [n, C] probability matrix against reference labels."""
    probs = np.asarray(probs, dtype=np.float64)
    pred = probs.argmax(axis=1)
    return {
        "accuracy": accuracy(y_true, pred),
        "macro_f1": macro_f1(y_true, pred, n_classes),
        "ece": ece(probs, y_true, n_bins),
        "nll": nll(probs, y_true),
    }
