"""calibrate() end to end where the labels are mostly right: the plain classifier must come back."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sidyp_engine import calibrate
from sidyp_engine.selection import METHOD_MIN_NOISE
from sidyp_engine.types import CalibrationConfig
from tests.conftest import toy_dataset


@pytest.mark.slow  # a whole calibrate run (~9 s): in `make test`, not `make test-fast`
def test_binary_accurate_labeller_gets_the_plain_classifier_back(tiny_backbone):
    torch.set_num_threads(1)
    texts, noisy, gold, classes = toy_dataset(n_per_class=20, noise=0.05, seed=4)
    keep = [i for i, g in enumerate(gold) if g in ("sports", "food")]  # two classes, 95 % right
    texts, noisy = (
        [texts[i] for i in keep],
        [noisy[i] if noisy[i] in ("sports", "food") else gold[i] for i in keep],
    )
    config = CalibrationConfig(
        backbone=tiny_backbone, epochs=2, branches=2, diffusion_epochs=2, batch_size=16, learning_rate=1e-3
    )
    result = calibrate(texts, noisy, ["sports", "food"], config=config, collect_diagnostics=True)
    chosen = result.diagnostics["selection"]
    if chosen["method_noise_share"] < METHOD_MIN_NOISE:
        # the plain classifier, or the linear probe where it agrees clearly more with the held-out labels
        assert chosen["kept"] in ("plain", "probe") and chosen["kept_model"] in ("plain_model", "probe")
        assert "below the 40%" in chosen["reason"]
        for decision in ("labels", "model"):
            probe_kept = chosen["kept" if decision == "labels" else "kept_model"] == "probe"
            assert probe_kept == (chosen["margins"].get(f"probe_{decision}", -1.0) > 0)
            assert not probe_kept or f"{decision}: the linear probe, clearly better" in chosen["reason"]
        # delivered: the stage-1 ensemble's labels, and the report's share is still the method's estimate
        assert result.noise_share == chosen["method_noise_share"]
        assert abs(result.noise_share - chosen["noise_share"]["accuracy"]) < 1e-4
    else:  # the tiny backbone can make the method claim many wrong labels; then it must say so
        assert chosen["kept"] == "refined"
    assert np.isfinite(result.posteriors).all()
