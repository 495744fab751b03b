"""Stage "prior" (stage 2): dynamics noise score -> likely-clean set per class -> k-NN dynamic prior.

The k-NN prior looks for neighbours in one of two spaces (config.knn_space) and may be refined by the
class-conditional noise model (config.noise_model); 'auto' decides both from how well the classifiers
reproduce the held-out noisy labels (docs/method.md, "Choosing the k-NN space").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sidyp_engine.classifier import EnsembleOutput, embed_texts, noisy_accuracy
from sidyp_engine.model import load_tokenizer
from sidyp_engine.noise import noise_scores, select_likely_noisy
from sidyp_engine.prior import PriorOutput, candidate_sets, knn_prior, noise_model_prior, text_groups
from sidyp_engine.stages.inputs import Inputs
from sidyp_engine.types import CalibrationConfig, ShouldStop

SPLITS = ("train", "valid", "extra")
# Neighbours of the k-NN prior when config.k is None: the stage-1 space clusters tightly by class, so a
# few suffice; in a frozen space the balanced vote needs more of them to be stable (docs/method.md).
DEFAULT_K = {"stage1": 10, "encoder": 50}
# "auto": the classifiers agree with this share of held-out noisy labels only when the labels are a rule.
# Development sets read 0.57-0.91 (stage-1 space better on seven of eight, by up to 30 points) and the
# keyword-rule set 0.99 (frozen space better by 6); set near the rule's side as a wrong "rule" costs more
# (docs/method.md, "Re-deciding the inner defaults").
LABEL_RULE_AGREEMENT = 0.97

Report = Callable[..., None]


def knn_epoch(epochs: int) -> int:
    """0-based stage-1 epoch whose embeddings are the default k-NN space: the middle one (epoch 2 of 4)."""
    return max(0, (epochs - 1) // 2)


def held_out_agreement(noisy_posterior: torch.Tensor | None, noisy: torch.Tensor) -> float:
    """Share of labelled held-out rows whose noisy label is the classifiers' argmax (NaN when none)."""
    if noisy_posterior is None:
        return float("nan")
    return noisy_accuracy(noisy_posterior, noisy)


def labels_are_rule(agreement: float) -> bool:
    """The classifiers reproduce the held-out noisy labels almost always (NaN: unknown, so no)."""
    return agreement >= LABEL_RULE_AGREEMENT


def choose_knn_space(knn_space: str, agreement: float) -> str:
    """'stage1' or 'encoder' for the k-NN prior; see LABEL_RULE_AGREEMENT for 'auto'."""
    if knn_space != "auto":
        return knn_space
    return "encoder" if labels_are_rule(agreement) else "stage1"


def use_noise_model(noise_model: str, space: str) -> bool:
    """Whether the k-NN prior is refined by the noise model. 'auto' turns it on in the stage-1 space only:
    'auto' takes the frozen space for rule-like labels, and keyword rules err by what the text contains,
    not by the true class, so one noise row per true class does not describe them; in the frozen space
    the EM collapsed towards one class on every development set (docs/method.md, "Re-deciding the inner
    defaults")."""
    if noise_model != "auto":
        return noise_model == "on"
    return space == "stage1"


@dataclass
class NoiseFlags:
    scores: torch.Tensor  # [N_train] dynamics noise score
    likely_noisy: torch.Tensor  # [N_train] bool
    noisy_fraction: float
    clean: torch.Tensor  # [N_train] bool: labelled and not likely noisy


def flag_noise(cfg: CalibrationConfig, inputs: Inputs, ens: EnsembleOutput) -> NoiseFlags:
    y = inputs.y_train
    scores = noise_scores(ens.dynamics["train"], y)
    likely_noisy, fraction = select_likely_noisy(scores, y, cfg.noise_fraction)
    return NoiseFlags(scores, likely_noisy, fraction, (~likely_noisy) & (y >= 0))


def frozen_embeddings(
    cfg: CalibrationConfig, inputs: Inputs, encoder: str, device: torch.device, should_stop: ShouldStop | None
) -> torch.Tensor:
    """Frozen sentence embeddings of train + valid + extra: the start of every example's trajectory (what
    the encoder knew before it saw a noisy label). The refiner is always conditioned on them."""
    texts = inputs.train_texts + inputs.valid_texts + inputs.extra_texts
    return embed_texts(encoder, load_tokenizer(encoder), texts, cfg.max_length, device, should_stop)


def split_rows(inputs: Inputs, rows: torch.Tensor) -> dict[str, torch.Tensor]:
    """Rows stacked as train + valid + extra -> one tensor per split."""
    n_tr, n_v = len(inputs.train_texts), len(inputs.valid_texts)
    return {"train": rows[:n_tr], "valid": rows[n_tr : n_tr + n_v], "extra": rows[n_tr + n_v :]}


@dataclass
class Prior:
    """The dynamic prior per split (`extra` None without extra texts) and how it was built."""

    train: PriorOutput
    valid: PriorOutput
    extra: PriorOutput | None
    vote_extra: PriorOutput | None  # the k-NN vote alone for the extra texts (before the noise model)
    space: str  # "stage1" or "encoder"
    k: int
    noise_model_on: bool
    channel: torch.Tensor | None  # [C, C] the noise model's P(noisy | true), when it is on
    metrics: dict[str, float]


def dynamic_prior(
    cfg: CalibrationConfig,
    inputs: Inputs,
    ens: EnsembleOutput,
    flags: NoiseFlags,
    frozen: dict[str, torch.Tensor],
    report: Report,
    trusted_ids: np.ndarray | None = None,
) -> Prior:
    """`trusted_ids`: trusted class id per caller's training row (-1 = none), from `trusted_label_ids`."""
    agreement = held_out_agreement(ens.noisy_posteriors.get("valid"), inputs.y_valid)
    space = choose_knn_space(cfg.knn_space, agreement)
    k = cfg.k if cfg.k is not None else DEFAULT_K[space]
    # stage1: the ensemble's representation half-way through stage 1 (mean over branches), adapted to the
    # task but taken before the late epochs memorise the noisy labels; encoder: the frozen space, for
    # labels that are a rule the fine-tuned space has learnt (its neighbours share the labeller's answer).
    if space == "stage1":
        emb = {s: ens.dynamics[s][:, :, knn_epoch(cfg.epochs)].mean(0) for s in SPLITS}
    else:
        emb = frozen
    report("prior", 0.3, f"k-NN prior (k = {k}) in the {space} space")
    y_tr, y_v, n_c, has_extra = inputs.y_train, inputs.y_valid, inputs.n_classes, bool(inputs.extra_texts)
    rows = vote_rows(inputs, flags, trusted_ids)
    vote = {"groups": rows.groups, "trusted": rows.trusted}
    train = knn_prior(emb["train"], y_tr, rows.clean, n_c, k, **vote)
    valid = knn_prior(emb["train"], y_tr, rows.clean, n_c, k, queries=emb["valid"], query_noisy=y_v, **vote)
    extra = (
        knn_prior(emb["train"], y_tr, rows.clean, n_c, k, queries=emb["extra"], **vote) if has_extra else None
    )
    prior = Prior(train, valid, extra, extra, space, k, use_noise_model(cfg.noise_model, space), None, {})
    if prior.noise_model_on:
        report("prior", 0.6, "noise-model EM over the neighbours' labels")
        _apply_noise_model(prior, emb, inputs, rows)
    prior.metrics = _prior_metrics(prior, flags, agreement, y_tr, rows)
    return prior


@dataclass
class VoteRows:
    """What the vote knows about the training rows besides their embeddings and noisy labels."""

    groups: np.ndarray  # [N_train] text-group id: copies of a text never vote for each other
    trusted: np.ndarray | None  # [N_train] trusted class id (-1 = none), None without trusted labels
    clean: torch.Tensor  # [N_train] bool: likely clean, or trusted
    labelled: torch.Tensor  # [N_train] bool: a noisy or a trusted label


def vote_rows(inputs: Inputs, flags: NoiseFlags, trusted_ids: np.ndarray | None) -> VoteRows:
    """Text groups of the training rows and their trusted labels (the caller's rows -> `train_texts`)."""
    trusted = None if trusted_ids is None else np.asarray(trusted_ids)[inputs.fit_rows]
    clean, labelled = flags.clean, inputs.y_train >= 0
    if trusted is not None:  # a checked row is clean whatever its noise score says
        clean, labelled = clean | torch.from_numpy(trusted >= 0), labelled | torch.from_numpy(trusted >= 0)
    return VoteRows(text_groups(inputs.train_texts), trusted, clean, labelled)


def _apply_noise_model(prior: Prior, emb: dict[str, torch.Tensor], inputs: Inputs, rows: VoteRows) -> None:
    y_tr, y_v, has_extra = inputs.y_train, inputs.y_valid, bool(inputs.extra_texts)
    queries = [emb["valid"]] + ([emb["extra"]] if has_extra else [])
    fitted = noise_model_prior(
        emb["train"], y_tr, prior.train.probs, inputs.n_classes, prior.k, queries,
        groups=rows.groups, trusted=rows.trusted,
    )  # fmt: skip
    prior.train = PriorOutput(fitted.train, *candidate_sets(fitted.train, rows.labelled))
    prior.valid = PriorOutput(fitted.queries[0], *candidate_sets(fitted.queries[0], y_v >= 0))
    if has_extra:
        prior.extra = PriorOutput(fitted.queries[1], *candidate_sets(fitted.queries[1]))
    prior.channel = fitted.noise_matrix


def _prior_metrics(
    prior: Prior, flags: NoiseFlags, agreement: float, y: torch.Tensor, rows: VoteRows
) -> dict[str, Any]:
    labelled = y >= 0
    agrees = (prior.train.probs.argmax(1)[labelled] == y[labelled]).float().mean() if labelled.any() else None
    return {
        "noise_model": float(prior.noise_model_on),
        "noisy_fraction": flags.noisy_fraction,
        "k": float(prior.k),
        "held_out_label_agreement": agreement,
        "clean_set_size": float(rows.clean.sum()),
        "certain_share": float(prior.train.certain.float().mean()),
        "prior_agrees_with_label": float("nan") if agrees is None else float(agrees),
    }
