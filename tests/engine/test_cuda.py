"""calibrate() on a CUDA device, end to end: every stage, trusted rows, the served model moved between devices.

Skipped where torch sees no GPU (CI and this project's CPU boxes); run on a GPU machine, where the first run
of the whole pipeline on CUDA found a CPU tensor meeting a CUDA one in the refiner's model selection.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sidyp_engine import calibrate
from sidyp_engine.served import ServedClassifier
from sidyp_engine.types import CalibrationConfig
from tests.conftest import toy_dataset

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_calibrate_runs_every_stage_on_cuda_and_serves_from_either_device(tiny_backbone, tmp_path):
    texts, noisy, gold, classes = toy_dataset(n_per_class=16, noise=0.3, seed=2)
    valid_texts, valid_noisy, _, _ = toy_dataset(n_per_class=6, noise=0.3, seed=3)
    trusted = [g if i % 5 == 0 else None for i, g in enumerate(gold)]
    config = CalibrationConfig(
        backbone=tiny_backbone,
        epochs=2,
        branches=2,
        diffusion_epochs=2,
        batch_size=16,
        learning_rate=1e-3,
        device="cuda",
    )

    def run():  # the second call finds every stage's checkpoint in the work dir and loads it onto the GPU
        return calibrate(
            texts,
            list(noisy),
            classes,
            valid_texts=valid_texts,
            valid_labels=list(valid_noisy),
            extra_texts=valid_texts[:5],
            config=config,
            work_dir=tmp_path / "work",
            trusted_labels=trusted,
        )

    result = run()
    assert result.posteriors.shape == (len(texts), len(classes))
    assert np.isfinite(result.posteriors).all()
    np.testing.assert_allclose(result.posteriors.sum(1), 1.0, atol=1e-4)
    assert result.model.device.type == "cuda"
    on_gpu = result.model.predict_proba(valid_texts)
    result.model.save(tmp_path / "served")
    on_cpu = ServedClassifier.load(tmp_path / "served", device="cpu").predict_proba(valid_texts)
    # autocast runs the GPU encoder in half precision: the two agree to that precision
    np.testing.assert_allclose(on_gpu, on_cpu, atol=0.02)
    again = run()
    np.testing.assert_allclose(again.posteriors, result.posteriors, atol=1e-5)
