"""calibrate() end to end where the labels are mostly right: the plain classifier must come back."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sidyp_engine import calibrate
from sidyp_engine.selection import METHOD_MIN_ROWS_PER_CLASS
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
    # 40 rows in two classes: too few for the method whatever share of wrong labels the run reads (a tiny
    # backbone can make it claim many), so the plain classifier comes back and the reason says why
    assert chosen["few_rows"] and chosen["rows_per_class"] < METHOD_MIN_ROWS_PER_CLASS
    assert f"labelled training rows per class, under the {METHOD_MIN_ROWS_PER_CLASS}" in chosen["reason"]
    # the plain classifier, or the linear probe where it agrees clearly more with the held-out labels
    assert chosen["kept"] in ("plain", "probe") and chosen["kept_model"] in ("plain_model", "probe")
    for decision in ("labels", "model"):
        probe_kept = chosen["kept" if decision == "labels" else "kept_model"] == "probe"
        assert probe_kept == (chosen["margins"].get(f"probe_{decision}", -1.0) > 0)
        assert not probe_kept or f"{decision}: the linear probe, clearly better" in chosen["reason"]
    # the report's share is still the method's estimate
    assert result.noise_share == chosen["method_noise_share"]
    assert abs(result.noise_share - chosen["noise_share"]["accuracy"]) < 1e-4
    assert np.isfinite(result.posteriors).all()
