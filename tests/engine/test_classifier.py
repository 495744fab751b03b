"""Stage 1: the ensemble records dynamics for every split from the passes it already runs."""

from __future__ import annotations

import pytest
import torch

from sidyp_engine.classifier import encode_pooled, train_ensemble
from sidyp_engine.model import load_tokenizer
from sidyp_engine.types import CalibrationConfig, CalibrationStopped
from tests.conftest import toy_dataset

CPU = torch.device("cpu")


def _config(**fields) -> CalibrationConfig:
    return CalibrationConfig(**fields)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The tiny backbone is too small to gain from threads, and on a busy box two threads lose a lot."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _split(n_per_class=12, noise=0.0, seed=0):
    texts, noisy, gold, classes = toy_dataset(n_per_class, noise, seed)
    ids = torch.tensor([classes.index(c) for c in noisy])
    return texts, ids, classes


def test_dynamics_and_posteriors_have_the_agreed_shapes(tiny_backbone):
    texts, ids, classes = _split()
    ids[5] = -1  # a missing label trains nothing but is still recorded
    valid_texts, valid_ids = texts[:6], ids[:6]
    extra = ["the pizza and the laptop", "a football player"]
    out = train_ensemble(
        _config(branches=2, epochs=2, batch_size=8, learning_rate=1e-3),
        tiny_backbone,
        load_tokenizer(tiny_backbone),
        texts,
        ids,
        valid_texts,
        valid_ids,
        extra,
        len(classes),
        CPU,
    )
    assert out.dynamics["train"].shape == (2, len(texts), 2, 32)
    assert out.dynamics["valid"].shape == (2, 6, 2, 32)
    assert out.dynamics["extra"].shape == (2, 2, 2, 32)
    for split, n in (("train", len(texts)), ("valid", 6), ("extra", 2)):
        p = out.noisy_posteriors[split]
        assert p.shape == (n, 3)
        assert torch.allclose(p.sum(1), torch.ones(n), atol=1e-5)
    # every training row was recorded in every epoch (no zero rows left from the buffer)
    assert (out.dynamics["train"].norm(dim=-1) > 0).all()
    assert out.selected_epoch in (0, 1)
    assert len(out.history) == 2 and len(out.models) == 2


def test_training_pass_embeddings_equal_an_eval_pass(tiny_backbone):
    """No encoder dropout: with a negligible learning rate the recorded training-pass embedding must be
    what an eval-mode pass of the final weights gives, so no re-inference pass is needed."""
    texts, ids, classes = _split(6)
    tok = load_tokenizer(tiny_backbone)
    cfg = _config(branches=1, epochs=1, learning_rate=1e-12)
    out = train_ensemble(cfg, tiny_backbone, tok, texts, ids, texts[:3], ids[:3], None, 3, CPU)
    pooled, _ = encode_pooled(out.models[0], tok, texts, 128, torch.device("cpu"))
    assert torch.allclose(out.dynamics["train"][0, :, 0], pooled, atol=1e-4)
    assert torch.allclose(out.dynamics["valid"][0, :, 0], pooled[:3], atol=1e-4)


def test_training_fits_the_labels(tiny_backbone):
    texts, ids, classes = _split(12)
    out = train_ensemble(
        _config(branches=2, epochs=4, batch_size=8, learning_rate=2e-3),
        tiny_backbone,
        load_tokenizer(tiny_backbone),
        texts,
        ids,
        texts[::4],
        ids[::4],
        None,
        3,
        CPU,
    )
    losses = [h["train_loss"] for h in out.history]
    assert losses[-1] < losses[0]
    assert out.history[out.selected_epoch]["valid_noisy_accuracy"] == max(
        h["valid_noisy_accuracy"] for h in out.history
    )


def test_should_stop_is_checked_every_batch(tiny_backbone):
    texts, ids, classes = _split(12)
    calls = []

    def stop_on_third_check():
        calls.append(1)
        return len(calls) >= 3

    with pytest.raises(CalibrationStopped):
        train_ensemble(
            _config(branches=1, epochs=3, batch_size=4),
            tiny_backbone,
            load_tokenizer(tiny_backbone),
            texts,
            ids,
            texts[:3],
            ids[:3],
            None,
            3,
            CPU,
            should_stop=stop_on_third_check,
        )
    assert len(calls) == 3


def test_class_balance_weights_equalise_total_weight_per_noisy_class():
    from sidyp_engine.classifier import class_balance_weights, noisy_accuracy

    noisy = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, -1, -1])  # class 2 never used, two missing labels
    w = class_balance_weights(noisy, 3)
    assert w.tolist() == pytest.approx([8 / (2 * 6), 8 / (2 * 2), 0.0])
    totals = [float(w[c]) * int((noisy == c).sum()) for c in range(2)]
    assert totals[0] == pytest.approx(totals[1])
    # a model that always answers the over-used class: 0.75 agreement, 0.5 balanced agreement
    always_zero = torch.tensor([[1.0, 0.0, 0.0]]).repeat(10, 1)
    assert noisy_accuracy(always_zero, noisy) == pytest.approx(0.75)
    assert noisy_accuracy(always_zero, noisy, balanced=True) == pytest.approx(0.5)
