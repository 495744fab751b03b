"""A small hand-made CalibrationResult-shaped object for the report, plot and HTML tests."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

CLASSES = ["a", "b", "c", "d"]
# Evaluation rows: gold, and the served model's top class per row (the probabilities below put 0.7 on it).
EVAL_GOLD = ["a", "a", "a", "b", "b", "c", None, "zzz"]
SERVED_PRED = ["a", "a", "b", "b", "c", "c", "a", "a"]


def one_hot_probs(preds: list[str], top: float = 0.7) -> np.ndarray:
    probs = np.full((len(preds), len(CLASSES)), (1 - top) / (len(CLASSES) - 1))
    for i, p in enumerate(preds):
        probs[i, CLASSES.index(p)] = top
    return probs


def fake_result(classes=CLASSES, given=None, diagnostics=None) -> SimpleNamespace:
    given = given if given is not None else ["a"] * 6 + ["b"] * 6 + ["c"] * 2 + [None]
    n, c = len(given), len(classes)
    posteriors = np.full((n, c), 0.1 / (c - 1))
    posteriors[:, 0] = 0.9
    suggested = [classes[0]] * n
    quality = np.array([posteriors[i, classes.index(g)] if g else 0.0 for i, g in enumerate(given)])
    issue = np.array([g is not None and g != classes[0] for g in given])
    return SimpleNamespace(
        classes=list(classes),
        given_labels=list(given),
        suggested_labels=suggested,
        label_quality=quality,
        is_label_issue=issue,
        posteriors=posteriors,
        is_validation=np.array([i % 5 == 0 for i in range(n)]),
        noise_matrix=np.eye(c) * 0.8 + 0.2 / c,
        noise_share=0.3,
        extra_posteriors=one_hot_probs(SERVED_PRED, 0.6),
        extra_noisy_posteriors=one_hot_probs(["a"] * len(EVAL_GOLD), 0.5),
        model=SimpleNamespace(temperature=1.25),
        timings={"classifier": 1.0, "total": 2.5},
        diagnostics=dict(diagnostics or {}),
    )
