"""Metrics against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from sidyp_engine.metrics import accuracy, ece, macro_f1, nll, score_all


def test_accuracy():
    assert accuracy([0, 1, 2, 2], [0, 2, 2, 1]) == 0.5
    with pytest.raises(ValueError):
        accuracy([0, 1], [0])


def test_macro_f1_by_hand():
    y_true = [0, 0, 1, 1, 2]
    y_pred = [0, 1, 1, 1, 0]
    # class 0: tp 1, true 2, pred 2 -> 2/4 = 0.5; class 1: tp 2, true 2, pred 3 -> 4/5 = 0.8;
    # class 2: tp 0 -> 0. Class 3 neither occurs nor is predicted and is left out.
    assert macro_f1(y_true, y_pred, n_classes=4) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert macro_f1([1, 1], [1, 1], n_classes=3) == 1.0


def test_ece_by_hand():
    probs = np.array(
        [
            [0.9, 0.1],  # conf 0.9, correct
            [0.8, 0.2],  # conf 0.8, wrong (label 1)
            [0.3, 0.7],  # conf 0.7, correct
            [0.45, 0.55],  # conf 0.55, wrong (label 0)
        ]
    )
    y = np.array([0, 1, 1, 0])
    # 15 bins of width 1/15: 0.9 -> bin 13, 0.8 -> bin 11, 0.7 -> bin 10, 0.55 -> bin 8: one per bin,
    # so ECE = mean |correct - conf| = (0.1 + 0.8 + 0.3 + 0.55) / 4
    assert ece(probs, y) == pytest.approx((0.1 + 0.8 + 0.3 + 0.55) / 4)
    # with 2 bins, (0, .5] and (.5, 1]: all four land in the upper bin: |2/4 - 0.7375|
    assert ece(probs, y, n_bins=2) == pytest.approx(abs(0.5 - (0.9 + 0.8 + 0.7 + 0.55) / 4))
    # a perfectly confident, perfectly right classifier is perfectly calibrated
    assert ece(np.eye(3), [0, 1, 2]) == 0.0


def test_nll_and_score_all():
    probs = np.array([[0.5, 0.5], [0.25, 0.75]])
    assert nll(probs, [0, 1]) == pytest.approx(-(np.log(0.5) + np.log(0.75)) / 2)
    s = score_all(probs, [1, 1], n_classes=2)
    # argmax of a tie is class 0
    assert s["accuracy"] == 0.5
    assert set(s) == {"accuracy", "macro_f1", "ece", "nll"}
