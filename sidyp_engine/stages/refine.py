"""Stage "refiner" (stage 3): the simplex diffusion refiner learns P(y | ỹ, x) from the dynamic prior."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from sidyp_engine.classifier import EnsembleOutput
from sidyp_engine.diffusion import DiffusionRefiner, RefinerConfig, refiner_conditioning
from sidyp_engine.stages.inputs import Inputs
from sidyp_engine.stages.prior import Prior
from sidyp_engine.types import CalibrationConfig, ProgressCallback, ShouldStop


@dataclass
class Conditioning:
    """Denoiser conditioning per split: frozen sentence embedding + the stage-1 dynamics."""

    train: torch.Tensor
    valid: torch.Tensor
    extra: torch.Tensor | None


@dataclass
class Refiner:
    model: DiffusionRefiner
    history: dict[str, Any]


def conditioning(inputs: Inputs, ens: EnsembleOutput, frozen: dict[str, torch.Tensor]) -> Conditioning:
    extra = refiner_conditioning(ens.dynamics["extra"], frozen["extra"]) if inputs.extra_texts else None
    return Conditioning(
        refiner_conditioning(ens.dynamics["train"], frozen["train"]),
        refiner_conditioning(ens.dynamics["valid"], frozen["valid"]),
        extra,
    )


def refiner_config(cfg: CalibrationConfig) -> RefinerConfig:
    """The refiner's settings for a calibration: what CalibrationConfig sets, the refiner's defaults else."""
    return RefinerConfig(epochs=cfg.diffusion_epochs, branches=cfg.branches, seed=cfg.seed)


def train_refiner(
    cfg: CalibrationConfig,
    inputs: Inputs,
    cond: Conditioning,
    prior: Prior,
    device: torch.device,
    progress: ProgressCallback | None = None,
    should_stop: ShouldStop | None = None,
) -> Refiner:
    refiner = DiffusionRefiner(refiner_config(cfg), device=device)
    y_valid = inputs.y_valid
    history = refiner.fit(
        cond.train,
        inputs.y_train,
        prior.train.probs,
        prior.train.candidates,
        prior.train.certain,
        valid=(cond.valid, y_valid, prior.valid.probs) if len(y_valid) else None,
        progress=progress,
        should_stop=should_stop,
    )
    return Refiner(refiner, history)


def encode_refiner(refiner: Refiner) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    return refiner.model.state_dict(), {"metadata": refiner.model.metadata(), "history": refiner.history}


def refiner_decoder(device: torch.device):
    def decode(tensors: dict[str, torch.Tensor], data: dict[str, Any]) -> Refiner:
        model = DiffusionRefiner.from_state_dict(tensors, data["metadata"], device=device)
        return Refiner(model, data.get("history", {}))

    return decode
