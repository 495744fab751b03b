"""Served model: distillation onto soft targets, temperature scaling, safetensors round trip."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from sidyp_engine.model import TextClassifier
from sidyp_engine.served import META_FILE, WEIGHTS_FILE, ServedClassifier
from sidyp_engine.types import CalibrationConfig, CalibrationStopped, InvalidInputError
from tests.conftest import toy_dataset


def _soft_targets(gold, classes, sharp=0.8):
    """Soft targets that favour the gold class (the refined posteriors would, ideally)."""
    c = len(classes)
    t = np.full((len(gold), c), (1 - sharp) / (c - 1), dtype=np.float32)
    for i, g in enumerate(gold):
        t[i, classes.index(g)] = sharp
    return t


@pytest.fixture(scope="module")
def served(tiny_backbone):
    texts, _, gold, classes = toy_dataset(n_per_class=16, noise=0.0, seed=1)
    vtexts, _, vgold, _ = toy_dataset(n_per_class=5, noise=0.0, seed=2)
    torch.manual_seed(0)
    init = TextClassifier(tiny_backbone, len(classes))
    before = {k: v.clone() for k, v in init.state_dict().items()}
    cfg = CalibrationConfig(backbone=tiny_backbone, batch_size=8, learning_rate=1e-3, device="cpu", seed=3)
    model = ServedClassifier.distill(
        init,
        tiny_backbone,
        classes,
        texts,
        _soft_targets(gold, classes),
        vtexts,
        _soft_targets(vgold, classes),
        cfg,
    )
    # distillation works on a copy: the stage-1 model it started from is untouched
    assert all(torch.equal(before[k], v) for k, v in init.state_dict().items())
    return model, vtexts, vgold, classes


def test_distilled_model_learns_soft_targets_and_matches_confidence_to_the_targets(served):
    model, vtexts, vgold, classes = served
    probs = model.predict_proba(vtexts)
    assert probs.shape == (len(vtexts), len(classes))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    acc = (probs.argmax(1) == np.array([classes.index(g) for g in vgold])).mean()
    assert acc > 0.6  # three separable topics; chance is 1/3
    # the temperature was fitted so that the mean confidence on the validation texts equals the accuracy
    # their targets expect of the model's predictions (0.8 on the gold class, 0.1 elsewhere)
    targets = _soft_targets(vgold, classes)
    expected = float(targets[np.arange(len(vtexts)), probs.argmax(1)].mean())
    assert 0.05 < model.temperature < 20
    assert float(probs.max(1).mean()) == pytest.approx(expected, abs=1e-3)
    labels = model.predict(vtexts[:2])
    assert labels[0][0] in classes and 0 < labels[0][1] <= 1


def test_save_load_round_trip_identical(served, tmp_path):
    model, vtexts, _, _ = served
    model.save(tmp_path)
    names = set(os.listdir(tmp_path))
    assert {WEIGHTS_FILE, META_FILE, "config.json", "tokenizer.json"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pkl", ".pickle")) for n in names)
    loaded = ServedClassifier.load(tmp_path)  # its load time is checked in benchmarks/timing_checks.py
    assert loaded.classes == model.classes
    assert loaded.temperature == pytest.approx(model.temperature)
    np.testing.assert_allclose(loaded.predict_proba(vtexts), model.predict_proba(vtexts), atol=1e-6)


def test_load_refuses_dir_without_safetensors(served, tmp_path):
    model, _, _, _ = served
    with pytest.raises(InvalidInputError, match=WEIGHTS_FILE):
        ServedClassifier.load(tmp_path)
    model.save(tmp_path)
    os.remove(tmp_path / WEIGHTS_FILE)
    # a pickle checkpoint next to it must not be picked up instead
    torch.save(model.model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(InvalidInputError, match=WEIGHTS_FILE):
        ServedClassifier.load(tmp_path)


def test_distill_rejects_bad_targets_and_stops_on_request(tiny_backbone):
    texts, _, gold, classes = toy_dataset(n_per_class=4, noise=0.0)
    cfg = CalibrationConfig(backbone=tiny_backbone, batch_size=4, device="cpu")
    with pytest.raises(InvalidInputError, match="soft_targets"):
        ServedClassifier.distill(None, tiny_backbone, classes, texts, np.ones((3, 3)), None, None, cfg)
    with pytest.raises(CalibrationStopped):
        ServedClassifier.distill(
            None,
            tiny_backbone,
            classes,
            texts,
            _soft_targets(gold, classes),
            None,
            None,
            cfg,
            should_stop=lambda: True,
        )


# from a stage-1 model: dropout; from a new head (slow: it loads the backbone twice): its initialisation too
@pytest.mark.parametrize("from_stage1", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_distillation_does_not_depend_on_the_global_random_state(tiny_backbone, from_stage1):
    """A resumed job loads stage 1 instead of training it, which leaves torch's global RNG elsewhere: the
    served model it distils must be the one a fresh run distils, and the caller's RNG must be left as it was."""
    texts, _, gold, classes = toy_dataset(n_per_class=6, noise=0.0, seed=4)
    cfg = CalibrationConfig(backbone=tiny_backbone, batch_size=4, learning_rate=1e-3, device="cpu", seed=5)
    torch.manual_seed(0)
    init = TextClassifier(tiny_backbone, len(classes)) if from_stage1 else None
    weights = []
    for global_seed in (11, 12):
        torch.manual_seed(global_seed)
        state_before = torch.get_rng_state()
        model = ServedClassifier.distill(
            init, tiny_backbone, classes, texts, _soft_targets(gold, classes, 0.7), None, None, cfg
        )
        assert torch.equal(torch.get_rng_state(), state_before)
        weights.append({k: v.clone() for k, v in model.model.state_dict().items()})
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
