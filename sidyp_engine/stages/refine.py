"""Stage "refiner" (stage 3): the simplex diffusion refiner learns P(y | ỹ, x) from the dynamic prior."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
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


# Folds of the cross-fitted read of the training rows (0: the refiner reads the rows it was fitted on).
REFINER_FOLDS = 0


def crossfit_train_transition(
    cfg: CalibrationConfig,
    inputs: Inputs,
    cond: Conditioning,
    prior: Prior,
    device: torch.device,
    folds: int,
    should_stop: ShouldStop | None = None,
) -> torch.Tensor:
    """P(y | ỹ, x) [N_train, C, C] of each training row from a refiner fitted on the other folds.

    The refiner is fitted to the training rows' priors; read on those same rows it partly gives their
    prior back, while on texts it never saw it gives what it learned across rows. Each fold's rows are
    read by a refiner that never saw them, as a validation text is."""
    n = len(inputs.y_train)
    fold = torch.from_numpy(np.random.default_rng(cfg.seed).permutation(n) % folds)
    out = torch.zeros(n, inputs.n_classes, inputs.n_classes)
    y_valid = inputs.y_valid
    for f in range(folds):
        held, fit = fold == f, fold != f
        refiner = DiffusionRefiner(refiner_config(cfg), device=device)
        refiner.fit(
            cond.train[:, fit],
            inputs.y_train[fit],
            prior.train.probs[fit],
            prior.train.candidates[fit],
            prior.train.certain[fit],
            valid=(cond.valid, y_valid, prior.valid.probs) if len(y_valid) else None,
            should_stop=should_stop,
        )
        out[held] = refiner.transition(cond.train[:, held])
    return out


def encode_refiner(refiner: Refiner) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    return refiner.model.state_dict(), {"metadata": refiner.model.metadata(), "history": refiner.history}


def refiner_decoder(device: torch.device):
    def decode(tensors: dict[str, torch.Tensor], data: dict[str, Any]) -> Refiner:
        model = DiffusionRefiner.from_state_dict(tensors, data["metadata"], device=device)
        return Refiner(model, data.get("history", {}))

    return decode
