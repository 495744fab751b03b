"""Stage "posterior" (stage 4): P(y | x) = sum_ỹ P(y | ỹ, x) P(ỹ | x), then one temperature.

Calibration without gold labels: the refiner reproduces the confidence of its prior's targets, which is
too high. One temperature on the posteriors (argmax unchanged) is fitted on the validation texts so that
their mean confidence equals the accuracy their priors expect of the refined argmax
(sidyp_engine.temperature); the priors are first smoothed to match how well they predict the noisy
validation labels (through the noise matrix when the prior is the noise model's).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sidyp_engine.classifier import EnsembleOutput
from sidyp_engine.data import MISSING
from sidyp_engine.diffusion import compose_posterior
from sidyp_engine.prior import fit_vote_smoothing
from sidyp_engine.stages.inputs import Inputs
from sidyp_engine.stages.prior import Prior, Report
from sidyp_engine.stages.refine import Conditioning, Refiner
from sidyp_engine.temperature import apply_temperature, fit_temperature, probs_to_logits


@dataclass
class Posteriors:
    train: torch.Tensor  # [N_train, C]
    valid: torch.Tensor  # [N_valid, C]
    extra: torch.Tensor | None  # [E, C]
    temperature: float
    vote_smoothing: float


def refined_posterior(
    transition: torch.Tensor, noisy_posterior: torch.Tensor, noisy: torch.Tensor
) -> torch.Tensor:
    """P(y | x) for rows of known provenance.

    Rows with a noisy label condition on it: P(y | x, ỹ = given) is the transition row of the label the
    labeller actually gave, which is the Bayes posterior once ỹ is observed. Rows without one (missing
    label, extra texts) marginalise over ỹ with the classifier's P(ỹ | x): sum_j P(ỹ = j | x) P(y | ỹ = j, x).
    """
    out = compose_posterior(noisy_posterior, transition)
    labelled = noisy >= 0
    if labelled.any():
        rows = torch.nonzero(labelled).flatten()
        given = transition[rows, noisy[rows]]
        out[rows] = given / given.sum(dim=1, keepdim=True).clamp_min(1e-12)
    return out


def compose_posteriors(
    inputs: Inputs, ens: EnsembleOutput, refiner: Refiner, cond: Conditioning, prior: Prior, report: Report
) -> Posteriors:
    noisy_post, transition = ens.noisy_posteriors, refiner.model.transition
    y_valid = inputs.y_valid
    train = refined_posterior(transition(cond.train), noisy_post["train"], inputs.y_train)
    report("posterior", 0.5, "validation and extra texts")
    if len(y_valid):
        valid = refined_posterior(transition(cond.valid), noisy_post["valid"], y_valid)
    else:
        valid = torch.zeros(0, inputs.n_classes)
    extra = None
    if cond.extra is not None:
        # extra texts have no label: marginalise over the classifier's P(ỹ | x)
        no_label = torch.full((len(inputs.extra_texts),), MISSING, dtype=torch.long)
        extra = refined_posterior(transition(cond.extra), noisy_post["extra"], no_label)
    if not (len(y_valid) and (y_valid >= 0).any()):
        return Posteriors(train, valid, extra, 1.0, 0.0)
    smoothing = fit_vote_smoothing(prior.valid.probs, y_valid, prior.channel)
    target = (1 - smoothing) * prior.valid.probs + smoothing / inputs.n_classes
    temperature = fit_temperature(probs_to_logits(valid), target)

    def scaled(p: torch.Tensor) -> torch.Tensor:
        return apply_temperature(probs_to_logits(p), temperature).float()

    return Posteriors(
        scaled(train), scaled(valid), None if extra is None else scaled(extra), temperature, smoothing
    )
