"""Stage "served": one classifier distilled from the refined posteriors, temperature-scaled on validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sidyp_engine.classifier import EnsembleOutput
from sidyp_engine.served import ServedClassifier
from sidyp_engine.stages.inputs import Inputs
from sidyp_engine.stages.posterior import Posteriors
from sidyp_engine.types import CalibrationConfig, ProgressCallback, ShouldStop, progress_as_stage


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
    trusted_in_place: bool = False,
) -> ServedClassifier:
    """Distil the refined posteriors of the training rows, trusted rows left out, or with
    `trusted_in_place` each at its trusted label (one-hot; the "refit" stage, progress "refit").

    Trusted rows stay unseen by the first distillation so that the temperature fitted to their labels in
    the select stage is measured on texts the model did not just learn (a fit on them would reward the
    over-confidence distillation teaches). Where that model is kept, the refit learns the checked labels
    too and is delivered at the held-out fit's temperature (`stages.select.with_refits`).
    """
    has_valid = len(inputs.valid_texts) > 0
    rows = np.arange(len(inputs.train_texts))
    targets = post.train
    if trusted_ids is not None:
        trusted = trusted_ids[inputs.fit_rows]
        if trusted_in_place:
            checked = torch.from_numpy(np.flatnonzero(trusted >= 0))
            targets = targets.clone()
            targets[checked] = F.one_hot(torch.from_numpy(trusted)[checked], inputs.n_classes).to(
                targets.dtype
            )
            progress = progress_as_stage(progress, "refit")
        else:
            rows = rows[trusted < 0]
    return ServedClassifier.distill(
        ens.models[0],
        backbone,
        inputs.classes,
        [inputs.train_texts[i] for i in rows],
        targets[torch.from_numpy(rows)],
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
