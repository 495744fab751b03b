"""Stage "select": do no harm. Keep the plain noisy-label classifier where it is estimated clearly better.

Runs after the served model. The candidates are scored on the validation rows (never trained on), each by
predictions that did not read the row's own noisy label (`sidyp_engine.selection`); with trusted rows the
candidates are scored on those instead (their suggested label / their prediction on those texts). The
noise matrix of the gold-free estimate is the run's own (`CalibrationResult.noise_matrix`: the refined
posteriors of the training rows against their labels).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sidyp_engine import selection
from sidyp_engine.classifier import EnsembleOutput
from sidyp_engine.diffusion import compose_posterior
from sidyp_engine.served import ServedClassifier
from sidyp_engine.stages.inputs import Inputs
from sidyp_engine.stages.posterior import Posteriors
from sidyp_engine.stages.refine import Conditioning, Refiner
from sidyp_engine.temperature import fit_temperature


@dataclass
class Kept:
    selection: selection.Selection
    model: ServedClassifier
    train_posteriors: torch.Tensor  # [N_train, C] of the kept labels
    valid_posteriors: torch.Tensor
    extra_posteriors: torch.Tensor | None
    valid_predictions: dict[str, np.ndarray]  # candidate -> class ids on the validation rows
    noise_matrix: np.ndarray  # the T the gold-free estimates used
    valid_noisy_posteriors: np.ndarray  # the stage-1 ensemble's P(ỹ | x) on the validation rows


def unlabelled_valid_posterior(ens: EnsembleOutput, refiner: Refiner, cond: Conditioning) -> torch.Tensor:
    """The refined P(y | x) of the validation texts as if their labels were unknown (see selection.py)."""
    if cond.valid is None or not len(cond.valid):
        return torch.zeros(0, ens.noisy_posteriors["valid"].shape[1])
    return compose_posterior(ens.noisy_posteriors["valid"], refiner.model.transition(cond.valid))


def plain_model(ens: EnsembleOutput, tokenizer, inputs: Inputs, max_length: int, device) -> ServedClassifier:
    """The best stage-1 branch as a served model (temperature 1 until `select_outputs` fits it)."""
    return ServedClassifier(ens.models[0], tokenizer, inputs.classes, 1.0, max_length, device)


def select_outputs(
    inputs: Inputs,
    ens: EnsembleOutput,
    post: Posteriors,
    refined_valid_unlabelled: torch.Tensor,
    served: ServedClassifier,
    plain: ServedClassifier,
    noise_matrix: np.ndarray,
    trusted_ids: np.ndarray | None,
    seed: int,
    gold_free_may_switch: bool = False,
) -> Kept:
    """Estimate every candidate, decide labels and model, and return what is kept."""
    valid_texts = inputs.valid_texts
    served_logits = served.logits(valid_texts) if valid_texts else np.zeros((0, inputs.n_classes))
    plain_logits = plain.logits(valid_texts) if valid_texts else np.zeros((0, inputs.n_classes))
    valid_preds = {
        selection.PLAIN: ens.noisy_posteriors["valid"].argmax(1).numpy(),
        selection.REFINED: refined_valid_unlabelled.argmax(1).numpy(),
        selection.SERVED: served_logits.argmax(1),
        selection.PLAIN_MODEL: plain_logits.argmax(1),
    }
    preds, noisy, trusted = valid_preds, inputs.valid_ids, None
    train_trusted, valid_trusted = _split_trusted(inputs, trusted_ids)
    if (train_trusted >= 0).any() or (valid_trusted >= 0).any():
        preds, noisy, trusted = _trusted_rows(inputs, ens, post, served, plain, valid_preds, trusted_ids)
    chosen = selection.select(preds, noisy, noise_matrix, trusted, seed, gold_free_may_switch)
    plain.temperature = _temperature_for(plain_logits, chosen.estimates[selection.PLAIN_MODEL].accuracy)
    use_plain = chosen.kept_labels == selection.PLAIN
    extra = ens.noisy_posteriors.get("extra") if use_plain else post.extra
    return Kept(
        selection=chosen,
        model=plain if chosen.kept_model == selection.PLAIN_MODEL else served,
        train_posteriors=ens.noisy_posteriors["train"] if use_plain else post.train,
        valid_posteriors=ens.noisy_posteriors["valid"] if use_plain else post.valid,
        extra_posteriors=extra if inputs.extra_texts else None,
        valid_predictions=valid_preds,
        noise_matrix=noise_matrix,
        valid_noisy_posteriors=ens.noisy_posteriors["valid"].numpy(),
    )


def _split_trusted(inputs: Inputs, trusted_ids: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Trusted label ids of the training rows stage 1 fitted and of the validation rows (-1 = none)."""
    if trusted_ids is None:
        return np.full(len(inputs.train_ids), -1), np.full(len(inputs.valid_ids), -1)
    train = trusted_ids[inputs.fit_rows]
    held = np.flatnonzero(inputs.is_validation)
    valid = trusted_ids[held] if len(held) else np.full(len(inputs.valid_ids), -1)
    return train, valid


def _trusted_rows(inputs, ens, post, served, plain, valid_preds, trusted_ids):
    """Every candidate's prediction on the trusted rows: validation rows as above, training rows by the
    suggested label (labels candidates) and the prediction on the text (models)."""
    train_trusted, valid_trusted = _split_trusted(inputs, trusted_ids)
    rows = np.flatnonzero(train_trusted >= 0)
    texts = [inputs.train_texts[i] for i in rows]
    on_train = {
        selection.PLAIN: ens.noisy_posteriors["train"][rows].argmax(1).numpy(),
        selection.REFINED: post.train[rows].argmax(1).numpy(),
        selection.SERVED: served.logits(texts).argmax(1) if texts else np.zeros(0, dtype=np.int64),
        selection.PLAIN_MODEL: plain.logits(texts).argmax(1) if texts else np.zeros(0, dtype=np.int64),
    }
    keep = valid_trusted >= 0
    preds = {name: np.concatenate([valid_preds[name][keep], on_train[name]]) for name in valid_preds}
    noisy = np.concatenate([inputs.valid_ids[keep], inputs.train_ids[rows]])
    trusted = np.concatenate([valid_trusted[keep], train_trusted[rows]])
    return preds, noisy, trusted


def _temperature_for(logits: np.ndarray, accuracy: float) -> float:
    """T at which the plain model's mean top-label confidence on the validation texts equals its estimate.

    A reference putting `accuracy` on the model's own top class has exactly that expected accuracy.
    """
    if not len(logits) or not np.isfinite(accuracy):
        return 1.0
    n_classes = logits.shape[1]
    reference = np.full(logits.shape, (1 - accuracy) / max(1, n_classes - 1))
    reference[np.arange(len(logits)), logits.argmax(1)] = accuracy
    return fit_temperature(torch.from_numpy(logits), torch.from_numpy(reference))
