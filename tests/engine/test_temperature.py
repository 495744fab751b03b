"""Temperature scaling against a reference distribution (sidyp_engine.temperature)."""

from __future__ import annotations

import pytest
import torch

from sidyp_engine.temperature import apply_temperature, expected_accuracy, fit_temperature, probs_to_logits


def test_recovers_a_known_sharpening_in_both_directions():
    base = torch.randn(400, 4, generator=torch.Generator().manual_seed(0)) * 3
    # the reference is softmax(base / 2): logits `base` are over-confident by exactly T = 2
    assert fit_temperature(base, torch.softmax(base / 2.0, dim=-1)) == pytest.approx(2.0, rel=1e-3)
    assert fit_temperature(base, torch.softmax(base / 0.5, dim=-1)) == pytest.approx(0.5, rel=1e-3)
    # from probabilities, as the pipeline calls it: argmax kept, the reference recovered
    sharp = torch.softmax(base, dim=1)
    t = fit_temperature(probs_to_logits(sharp), torch.softmax(base / 2.0, dim=1))
    calibrated = apply_temperature(probs_to_logits(sharp), t)
    assert torch.equal(calibrated.argmax(1), sharp.argmax(1))
    assert torch.allclose(calibrated.float(), torch.softmax(base / 2.0, dim=1), atol=1e-3)


def test_matches_top_label_confidence_where_the_reference_spreads_its_rest_differently():
    # The model's runner-up mass sits on one class, the reference spreads it evenly: the top-label
    # confidence must still land on the reference's probability of the model's top classes, and the
    # model must then be calibrated against labels drawn from the reference.
    gen = torch.Generator().manual_seed(1)
    n, c = 20_000, 5
    top = torch.randint(0, c, (n,), generator=gen)
    p_top = 0.4 + 0.5 * torch.rand(n, generator=gen)  # the reference's (true) chance that `top` is right
    reference = ((1 - p_top) / (c - 1))[:, None].repeat(1, c)
    reference[torch.arange(n), top] = p_top
    logits = torch.full((n, c), -8.0)
    logits[torch.arange(n), top] = 4.0 * (p_top - 0.2)  # over-confident, order of confidence kept
    logits[torch.arange(n), (top + 1) % c] = 0.0
    t = fit_temperature(logits, reference)
    probs = apply_temperature(logits.double(), t)
    assert float(probs.max(1).values.mean()) == pytest.approx(expected_accuracy(logits, reference), abs=1e-6)
    labels = torch.multinomial(reference, 1, generator=gen).squeeze(1)
    accuracy = float((probs.argmax(1) == labels).double().mean())
    assert float(probs.max(1).values.mean()) == pytest.approx(accuracy, abs=0.015)


def test_range_ends_and_degenerate_input():
    base = torch.randn(50, 4, generator=torch.Generator().manual_seed(2)) * 3
    # a uniform reference expects 25 % accuracy: flatten as far as allowed
    assert fit_temperature(base, torch.full_like(base, 0.25)) == pytest.approx(20.0, rel=1e-6)
    # a one-hot reference that agrees with every prediction expects 100 %: as sharp as allowed
    agree = torch.nn.functional.one_hot(base.argmax(1), 4).double()
    assert fit_temperature(base, agree) == pytest.approx(0.05, rel=1e-6)
    assert fit_temperature(torch.zeros(0, 4), torch.zeros(0, 4)) == 1.0
    with pytest.raises(ValueError, match="both be"):
        fit_temperature(base, torch.full((50, 3), 1 / 3))
