"""The posteriors' class floor: argmax may not starve a class the posteriors expect."""

from __future__ import annotations

import torch

from sidyp_engine.stages.posterior import CLASS_FLOOR, class_floor_weights, reweighted


def _starved(n=1000, seed=0):
    """Class 2 holds 40 % of the mass on a tenth of the rows but never wins: argmax predicts it 0 times."""
    g = torch.Generator().manual_seed(seed)
    probs = torch.zeros(n, 3)
    first = torch.rand(n, generator=g) < 0.5
    probs[first] = torch.tensor([0.8, 0.15, 0.05])
    probs[~first] = torch.tensor([0.15, 0.8, 0.05])
    rare = torch.arange(n) % 10 == 0
    probs[rare] = torch.tensor([0.45, 0.15, 0.40])
    return probs


def test_a_starved_class_is_predicted_for_its_floor_share_and_no_more():
    probs = _starved()
    assert int((probs.argmax(1) == 2).sum()) == 0
    weights = class_floor_weights(probs)
    read = reweighted(probs, weights)
    predicted = torch.bincount(read.argmax(1), minlength=3).float() / len(probs)
    expected = probs.mean(0)
    # the floor is met (to the one step the rows allow: they come in blocks of identical rows) ...
    assert predicted[2] >= CLASS_FLOOR * expected[2] - 0.01
    # ... by the rows where the class was closest to winning, and the other classes keep their ranking
    assert bool((read.argmax(1) == 2).logical_and(~(torch.arange(len(probs)) % 10 == 0)).sum() == 0)
    assert torch.allclose(read.sum(1), torch.ones(len(probs)), atol=1e-5)
    assert predicted[0] > 0.3 and predicted[1] > 0.3


def test_without_a_starved_class_nothing_changes():
    probs = torch.softmax(torch.randn(500, 4, generator=torch.Generator().manual_seed(1)) * 3, dim=1)
    assert (probs.argmax(1).bincount(minlength=4) > 0.5 * probs.mean(0) * len(probs)).all()
    assert class_floor_weights(probs) is None
    assert torch.equal(reweighted(probs, None), probs)


def test_a_class_with_no_mass_stays_unpredicted_and_weights_stay_bounded():
    probs = _starved()
    probs[:, 2] = 0.0
    probs = probs / probs.sum(1, keepdim=True)
    assert class_floor_weights(probs) is None  # nothing expected, nothing to raise
    probs[:, 2] = 1e-4  # a sliver of mass on every row: raising it would take an unbounded weight
    weights = class_floor_weights(probs / probs.sum(1, keepdim=True))
    assert torch.isfinite(weights).all() and float(weights.max()) <= 100.0
