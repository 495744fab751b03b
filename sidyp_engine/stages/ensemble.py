"""Stage "classifier" (stage 1): the M-branch ensemble on the noisy labels, and its checkpoint codec;
stage "plain": the plain fine-tune on the same labels, the do-no-harm fallback the "select" stage may keep;
and stage "refit": where that fallback is kept with trusted rows, the plain fine-tune again on every row with
the trusted labels in place of the given ones (what is delivered)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from sidyp_engine.classifier import EnsembleOutput, release_memory, train_ensemble
from sidyp_engine.model import TextClassifier
from sidyp_engine.stages.inputs import Inputs, corrected_labels, fit_labels
from sidyp_engine.types import CalibrationConfig, ProgressCallback, ShouldStop, progress_as_stage


def train_classifiers(
    cfg: CalibrationConfig,
    inputs: Inputs,
    backbone: str,
    tokenizer,
    device: torch.device,
    progress: ProgressCallback | None = None,
    should_stop: ShouldStop | None = None,
    trusted_ids: np.ndarray | None = None,
) -> EnsembleOutput:
    """Stage 1 for the validated inputs: dynamics and noisy posteriors for train, validation and extra.
    Trusted rows are fitted as unlabelled (`inputs.fit_labels`)."""
    return train_ensemble(
        cfg,
        backbone,
        tokenizer,
        inputs.train_texts,
        torch.from_numpy(fit_labels(inputs, trusted_ids)),
        inputs.valid_texts,
        inputs.y_valid,
        inputs.extra_texts,
        inputs.n_classes,
        device,
        progress,
        should_stop,
    )


def plain_config(cfg: CalibrationConfig) -> CalibrationConfig:
    """The recipe of plain fine-tuning: stage 1 with one branch (so no co-regularisation) and the plain
    cross-entropy, the same epochs, seed and epoch choice (noisy validation accuracy). It is what a user gets
    by fine-tuning on the labels as they are, and what the benchmark's noisy baseline trains."""
    return cfg.model_copy(update={"branches": 1, "class_balanced": False})


def train_plain(
    cfg: CalibrationConfig,
    inputs: Inputs,
    backbone: str,
    tokenizer,
    device: torch.device,
    progress: ProgressCallback | None = None,
    should_stop: ShouldStop | None = None,
    trusted_ids: np.ndarray | None = None,
) -> EnsembleOutput:
    """The plain fine-tune (`plain_config`) on the inputs stage 1 saw, its progress reported as "plain".

    Delivered when refinement is judged not to help, it is then the very model plain fine-tuning gives
    (it seeds itself as stage 1 does, so a run reproduces it), not a stage-1 branch trained beside others
    with co-regularisation, which differed from it by +-2 points either way on the development sets.
    """
    report = progress_as_stage(progress, "plain")
    out = train_classifiers(
        plain_config(cfg), inputs, backbone, tokenizer, device, report, should_stop, trusted_ids
    )
    out.dynamics = {}  # the noise score reads stage 1's; without them `encode_stage1` stores only the rest
    return out


def refit_plain(
    cfg: CalibrationConfig,
    inputs: Inputs,
    backbone: str,
    tokenizer,
    device: torch.device,
    trusted_ids: np.ndarray,
    progress: ProgressCallback | None = None,
    should_stop: ShouldStop | None = None,
) -> EnsembleOutput:
    """The plain fine-tune (`plain_config`) on every row, trusted rows at their trusted label; progress "refit".

    `train_plain` leaves the trusted rows unlabelled so that they can score it and fit its temperature;
    that makes it another draw of plain fine-tuning on fewer rows, which can land points away from what a
    user gets by fine-tuning on their labels (docs/method.md, thirty-first round). Where the plain classifier is
    kept, this fit is delivered: the user's labels with their checks applied, the baseline's recipe and seed.
    """
    train, valid = corrected_labels(inputs, trusted_ids)
    out = train_ensemble(
        plain_config(cfg),
        backbone,
        tokenizer,
        inputs.train_texts,
        torch.from_numpy(train),
        inputs.valid_texts,
        torch.from_numpy(valid),
        inputs.extra_texts,
        inputs.n_classes,
        device,
        progress_as_stage(progress, "refit"),
        should_stop,
    )
    out.dynamics = {}
    return out


def keep_best_branch(ens: EnsembleOutput) -> EnsembleOutput:
    """Only the best branch is used from here on (it seeds the served model); the dynamics and noisy
    posteriors carry the rest. Freeing the others keeps them out of the frozen-embedding pass."""
    ens.models = ens.models[:1]
    release_memory()
    return ens


def encode_stage1(ens: EnsembleOutput) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {f"dynamics.{k}": v for k, v in ens.dynamics.items()}
    tensors |= {f"noisy_posteriors.{k}": v for k, v in ens.noisy_posteriors.items()}
    # only the best branch is kept: it is what the served model starts from; the dynamics carry the rest
    tensors |= {f"model.{k}": v for k, v in ens.models[0].state_dict().items()}
    return tensors, {"selected_epoch": ens.selected_epoch, "history": ens.history}


def stage1_decoder(backbone: str, n_classes: int, device: torch.device):
    """The inverse of `encode_stage1` for this backbone, class count and device."""

    def decode(tensors: dict[str, torch.Tensor], data: dict[str, Any]) -> EnsembleOutput:
        model = TextClassifier(backbone, n_classes, pretrained=False)
        model.load_state_dict(_with_prefix(tensors, "model."))
        # as in a fresh stage 1 (see classifier.py): the served model then trains the same parameters
        model.backbone.get_input_embeddings().weight.requires_grad_(False)
        model.to(device).eval()
        return EnsembleOutput(
            models=[model],
            dynamics=_with_prefix(tensors, "dynamics."),
            noisy_posteriors=_with_prefix(tensors, "noisy_posteriors."),
            selected_epoch=int(data["selected_epoch"]),
            history=list(data.get("history", [])),
        )

    return decode


def _with_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
