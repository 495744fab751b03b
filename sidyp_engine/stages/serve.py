"""Stage "served": one classifier distilled from the refined posteriors, temperature-scaled on validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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
) -> ServedClassifier:
    has_valid = len(inputs.valid_texts) > 0
    return ServedClassifier.distill(
        ens.models[0],
        backbone,
        inputs.classes,
        inputs.train_texts,
        post.train,
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
