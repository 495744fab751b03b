"""Stage "served": one classifier distilled from the refined posteriors, temperature-scaled on validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from sidyp_engine.classifier import EnsembleOutput
from sidyp_engine.served import ServedClassifier
from sidyp_engine.stages.inputs import Inputs
from sidyp_engine.stages.posterior import Posteriors
from sidyp_engine.types import CalibrationConfig, ProgressCallback, ShouldStop


def distill_served(
    cfg: CalibrationConfig,
    inputs: Inputs,
    ens: EnsembleOutput,
    backbone: str,
    post: Posteriors,
    device: torch.device,
    progress: ProgressCallback | None = None,
    should_stop: ShouldStop | None = None,
    trusted_ids: np.ndarray | None = None,
) -> ServedClassifier:
    """Distil the refined posteriors of the training rows, trusted rows left out.

    Trusted rows stay unseen by the distillation so that the temperature fitted to their labels in the
    select stage is measured on texts the model did not just learn (a fit on them would reward the
    over-confidence distillation teaches).
    """
    has_valid = len(inputs.valid_texts) > 0
    rows = np.arange(len(inputs.train_texts))
    if trusted_ids is not None:
        rows = rows[trusted_ids[inputs.fit_rows] < 0]
    return ServedClassifier.distill(
        ens.models[0],
        backbone,
        inputs.classes,
        [inputs.train_texts[i] for i in rows],
        post.train[torch.from_numpy(rows)],
        inputs.valid_texts if has_valid else None,
        post.valid if has_valid else None,
        config=cfg,
        progress=progress,
        should_stop=should_stop,
        device=device,
    )


def served_codec(served_dir: Path | None, device: torch.device):
    """(encode, decode) for Checkpoints.run: the model lives in `served_dir`, the checkpoint is a marker."""

    def encode(served: ServedClassifier) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        assert served_dir is not None
        served.save(served_dir)
        return {"done": torch.ones(1)}, {}

    def decode(tensors: dict[str, torch.Tensor], data: dict[str, Any]) -> ServedClassifier | None:
        if served_dir is None or not served_dir.is_dir():
            return None
        return ServedClassifier.load(served_dir, device=device)

    return encode, decode
