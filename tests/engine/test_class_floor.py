"""The posteriors' class floor: argmax may not starve a class the posteriors and the labeller both expect."""

from __future__ import annotations

import math

import pytest
import torch

from sidyp_engine.stages.posterior import CLASS_FLOOR, MAX_CLASS_WEIGHT, class_floor_weights, reweighted


def _starved(n=1000, seed=0):
    """Class 2 holds 40 % of the mass on a tenth of the rows but never wins: argmax predicts it 0 times.

    The labeller gave class 2 to those rows (and the first class to the rest)."""
    g = torch.Generator().manual_seed(seed)
    probs = torch.zeros(n, 3)
    first = torch.rand(n, generator=g) < 0.5
    probs[first] = torch.tensor([0.8, 0.15, 0.05])
    probs[~first] = torch.tensor([0.15, 0.8, 0.05])
    rare = torch.arange(n) % 10 == 0
    probs[rare] = torch.tensor([0.45, 0.15, 0.40]) + 0.04 * torch.rand(int(rare.sum()), 3, generator=g)
    probs = probs / probs.sum(1, keepdim=True)
    given = torch.where(rare, 2, torch.where(first, 0, 1))
    return probs, given, rare


def test_a_starved_class_gets_its_quota_from_the_rows_closest_to_it():
    probs, given, rare = _starved()
    assert int((probs.argmax(1) == 2).sum()) == 0
    weights = class_floor_weights(probs, given)
    read = reweighted(probs, weights)
    won = read.argmax(1) == 2
    quota = math.ceil(CLASS_FLOOR * float(probs[:, 2].mean()) * len(probs))  # the mean (8 %) < used (10 %)
    assert quota <= int(won.sum()) <= quota + 0.1 * quota  # the quota, and the few rows within 0.1 % of it
    assert not bool((won & ~rare).any())  # only rows where class 2 was close
    assert float(weights[0]) == 1.0 and float(weights[1]) == 1.0  # classes not starved keep their weight
    assert torch.equal(read.argmax(1)[~rare], probs.argmax(1)[~rare])
    assert torch.allclose(read.sum(1), torch.ones(len(probs)), atol=1e-5)


def test_the_labellers_own_use_caps_the_quota():
    probs, given, rare = _starved()
    given = torch.where(rare, 0, given)  # the labeller never says class 2
    given[0] = 2  # ... but once
    weights = class_floor_weights(probs, given)
    assert int((reweighted(probs, weights).argmax(1) == 2).sum()) == 1
    given[0] = 0
    assert class_floor_weights(probs, given) is None  # never used: nothing to raise


def test_without_a_starved_class_nothing_changes():
    probs = torch.softmax(torch.randn(500, 4, generator=torch.Generator().manual_seed(1)) * 3, dim=1)
    given = probs.argmax(1)
    assert class_floor_weights(probs, given) is None
    assert torch.equal(reweighted(probs, None), probs)
    assert class_floor_weights(probs, torch.full((500,), -1)) is None  # no labels: no floor


def test_weights_stay_bounded():
    probs, given, _ = _starved()
    probs[:, 2] = 1e-4  # a sliver of mass on every row: raising it would take an unbounded weight
    probs = probs / probs.sum(1, keepdim=True)
    weights = class_floor_weights(probs, given)
    assert weights is None or float(weights.max()) <= MAX_CLASS_WEIGHT


def test_the_estimates_read_the_posteriors_without_the_floor():
    from sidyp_engine.stages.posterior import Posteriors
    from sidyp_engine.stages.select import calibrated

    probs, given, _ = _starved()
    weights = class_floor_weights(probs, given)
    post = Posteriors(reweighted(probs, weights), probs[:0], None, 1.0, 0.0, weights)
    assert torch.allclose(calibrated(post.train, post), probs, atol=1e-6)
    assert torch.equal(calibrated(probs, Posteriors(probs, probs[:0], None, 1.0, 0.0)), probs)


def test_the_floored_read_out_is_recalibrated_and_inverts_exactly():
    from sidyp_engine.stages.posterior import floored, unfloored
    from sidyp_engine.temperature import expected_accuracy, fit_temperature, probs_to_logits

    gen = torch.Generator().manual_seed(3)
    probs = torch.softmax(torch.randn(400, 4, generator=gen) * 2, dim=1)
    probs[:, 3] *= 0.2  # a class the argmax starves
    probs = probs / probs.sum(dim=1, keepdim=True)
    given = torch.randint(0, 4, (400,), generator=gen)
    weights = class_floor_weights(probs, given, floor=1.0)
    assert weights is not None and weights[3] > 1
    t = fit_temperature(probs_to_logits(reweighted(probs, weights)), probs.double())
    out = floored(probs, weights, t)
    # the argmax is the reweighted one, the mean confidence what the calibrated posteriors expect of it
    assert torch.equal(out.argmax(1), reweighted(probs, weights).argmax(1))
    expected = expected_accuracy(probs_to_logits(out), probs)
    assert float(out.max(dim=1).values.mean()) == pytest.approx(expected, abs=1e-3)
    assert torch.allclose(unfloored(out, weights, t), probs, atol=1e-5)
    assert floored(probs, None, t) is probs and unfloored(probs, None, t) is probs


def test_texts_without_a_label_get_the_share_their_own_posteriors_expect():
    """Texts read without a label (the classifier's P(ỹ | x) marginalised) never predict class 2, though
    their posteriors expect it of 8 % of them and the labeller used it for 10 %: their own weights bring
    it to that 8 %."""
    from sidyp_engine.stages.posterior import (
        UNLABELLED_FLOOR_MIN_ROWS,
        quota_weights,
        unlabelled_floor_weights,
    )

    _, given, _ = _starved(seed=0)  # the training rows' labels
    unlabelled, _, rare = _starved(n=400, seed=1)
    weights = unlabelled_floor_weights(unlabelled, unlabelled, given)
    won = reweighted(unlabelled, weights).argmax(1) == 2
    share = min(float(unlabelled[:, 2].double().mean()), float((given == 2).double().mean()))
    assert share < 0.1  # their own expectation, under the labeller's share
    assert math.ceil(share * 400) <= int(won.sum()) <= 1.1 * math.ceil(share * 400)
    assert not bool((won & ~rare).any())
    assert float(weights[0]) == 1.0 and float(weights[1]) == 1.0
    # too few texts for a quota to mean anything: read as they are
    assert unlabelled_floor_weights(unlabelled[: UNLABELLED_FLOOR_MIN_ROWS - 1], unlabelled, given) is None
    # a class the labeller never used is not raised either
    assert unlabelled_floor_weights(unlabelled, unlabelled, torch.where(given == 2, 0, given)) is None
    # a class short of its share but not starved (over half of it predicted) is left as it is: with two
    # classes, raising the labeller's over-used one would undo what the method found
    short = torch.tensor([0, 0, math.ceil(0.7 * share * 400)])
    half = reweighted(unlabelled, quota_weights(unlabelled, short))
    predicted = float((half.argmax(1) == 2).double().mean())
    assert 0.5 * share < predicted < share
    assert unlabelled_floor_weights(half, unlabelled, given) is None
    assert unlabelled_floor_weights(half, unlabelled, given, starved_ratio=1.0) is not None
