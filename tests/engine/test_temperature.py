"""Temperature scaling against a reference distribution (sidyp_engine.temperature)."""

from __future__ import annotations

import pytest
import torch

from sidyp_engine.temperature import (
    apply_temperature,
    expected_accuracy,
    fit_temperature,
    fit_temperature_nll,
    probs_to_logits,
)


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


def _planted(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits whose softmax is the true P(y | x), and labels drawn from it."""
    gen = torch.Generator().manual_seed(seed)
    true_logits = torch.randn(n, 4, generator=gen) * 2
    labels = torch.multinomial(torch.softmax(true_logits, dim=1), 1, generator=gen).squeeze(1)
    return true_logits, labels


@pytest.mark.parametrize("planted_t", [2.0, 0.5])
def test_nll_fit_recovers_a_planted_temperature(planted_t):
    true_logits, labels = _planted(5000, 3)
    # softmax(logits / planted_t) is the truth: over-confident logits for planted_t > 1, timid below 1
    logits = true_logits * planted_t
    assert fit_temperature_nll(logits, labels) == pytest.approx(planted_t, rel=0.10)


def test_nll_fit_flattens_over_confident_logits_and_reads_only_labelled_rows():
    true_logits, labels = _planted(2000, 4)
    assert fit_temperature_nll(true_logits * 3, labels) > 1.0
    unlabelled = labels.clone()
    unlabelled[::2] = -1
    kept = unlabelled >= 0
    only_labelled = fit_temperature_nll(true_logits[kept], labels[kept])
    assert fit_temperature_nll(true_logits, unlabelled) == only_labelled


def test_nll_fit_range_ends_and_degenerate_input():
    true_logits, labels = _planted(50, 5)
    # every row right with a margin: the likelihood keeps growing as T shrinks, so as sharp as allowed
    assert fit_temperature_nll(true_logits, true_logits.argmax(1)) == pytest.approx(0.05, rel=1e-6)
    # every row wrong: as flat as allowed
    assert fit_temperature_nll(true_logits, true_logits.argmin(1)) == pytest.approx(20.0, rel=1e-6)
    assert fit_temperature_nll(true_logits, torch.full((50,), -1)) == 1.0
    assert fit_temperature_nll(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)) == 1.0
    with pytest.raises(ValueError, match="labels"):
        fit_temperature_nll(true_logits, labels[:10])
