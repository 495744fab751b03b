"""Stage "posterior" (stage 4): P(y | x) = sum_ỹ P(y | ỹ, x) P(ỹ | x), then one temperature.

Calibration without gold labels: the refiner reproduces the confidence of its prior's targets, which is
too high. One temperature on the posteriors (argmax unchanged) is fitted on the validation texts so that
their mean confidence equals the accuracy their priors expect of the refined argmax
(sidyp_engine.temperature); the priors are first smoothed to match how well they predict the noisy
validation labels (through the noise matrix when the prior is the noise model's).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sidyp_engine.classifier import EnsembleOutput
from sidyp_engine.data import MISSING
from sidyp_engine.diffusion import compose_posterior
from sidyp_engine.prior import fit_vote_smoothing
from sidyp_engine.stages.inputs import Inputs
from sidyp_engine.stages.prior import Prior, Report
from sidyp_engine.stages.refine import Conditioning, Refiner
from sidyp_engine.temperature import apply_temperature, fit_temperature, probs_to_logits

# The read-out's class floor: no class is predicted (argmax) for fewer than this share of the training rows
# of the lesser of what the posteriors expect of it (their mean) and what the labeller used it for (1: the
# whole of that lesser share; chosen on nine development sets, docs/method.md). Argmax
# starves a class the labeller misuses (the noise model learns that its labels mostly mean other classes),
# and a class never predicted scores 0 in macro-F1; the labeller's own use caps it, as diffuse posteriors
# spread mass onto classes the data hardly has (docs/method.md, "The class floor").
CLASS_FLOOR = 1.0
MAX_CLASS_WEIGHT = 100.0
# The floor once more on the texts read without a label (validation texts read as unseen, evaluation
# texts): they marginalise over the classifier's P(ỹ | x) where training rows read their own label, and a
# class the training rows keep can vanish there (semeval noise 30-40 %: 0 of 178 validation texts for a
# class with 9 % of the labels; docs/method.md, "Nineteenth round"). Fitted on all such texts together
# against their own expected shares, only when there are enough of them for a 5 % class's quota to be a
# few rows.
UNLABELLED_FLOOR_MIN_ROWS = 80
UNLABELLED_STARVED_RATIO = 0.5


@dataclass
class Posteriors:
    train: torch.Tensor  # [N_train, C]
    valid: torch.Tensor  # [N_valid, C]
    extra: torch.Tensor | None  # [E, C]
    temperature: float
    vote_smoothing: float
    class_weights: torch.Tensor | None = None  # [C] the class floor's weights (None: all 1)
    floor_temperature: float = 1.0  # the temperature after the weights (see `floored`)
    # the prior was the k-NN vote of the noisy labels without the noise model: the posteriors' spread holds
    # the label noise (stages/select.py: _set_temperatures)
    vote_shares: bool = False
    # the validation texts read without their label, as an evaluation text is (floored like `extra`)
    valid_unlabelled: torch.Tensor | None = None
    # [C] the floor's further weights on texts read without a label (None: all 1)
    unlabelled_weights: torch.Tensor | None = None
    # training rows the caller asked for (`unlabelled_rows`) read without their label (floored like `extra`)
    train_unlabelled: torch.Tensor | None = None

    def weights(self, unlabelled: bool = False) -> torch.Tensor | None:
        """The class weights the delivered read-out carries: of labelled rows, or of texts without one."""
        if not unlabelled or self.unlabelled_weights is None:
            return self.class_weights
        if self.class_weights is None:
            return self.unlabelled_weights
        return self.class_weights * self.unlabelled_weights


def class_floor_weights(
    probs: torch.Tensor, given: torch.Tensor, floor: float = CLASS_FLOOR, rounds: int = 3
) -> torch.Tensor | None:
    """Weights w [C] with which argmax(p * w) predicts every class for at least `floor` times the lesser of
    its expected share mean(p) and its share of the given labels (`given`, -1 = none), or None when no
    class falls short (the posteriors are read as they are)."""
    shares = _floor_shares(probs, given, floor)
    if shares is None or not len(probs):
        return None
    return quota_weights(probs, torch.ceil(shares * len(probs)).long(), rounds)


def unlabelled_floor_weights(
    probs: torch.Tensor,
    calibrated: torch.Tensor,
    given: torch.Tensor,
    floor: float = CLASS_FLOOR,
    starved_ratio: float = UNLABELLED_STARVED_RATIO,
) -> torch.Tensor | None:
    """Further weights w [C] with which argmax(p * w) of the texts read without a label (`probs`, already
    carrying the training rows' floor) predicts every class for at least the lesser of what their own
    calibrated posteriors (`calibrated`, the same texts without any weights) expect of it and the
    labeller's share of it (`given`, the training rows' labels); None when no class falls short or there
    are fewer than UNLABELLED_FLOOR_MIN_ROWS texts. Their own expectation, not the training rows': those
    read the row's label and expect more of a class the labeller over-uses (docs/method.md, "Nineteenth
    round"). Only a class predicted for under `starved_ratio` of that share is raised; one merely short of
    it is left (with two classes, raising the labeller's over-used one undoes what the method found). A
    ratio of 1 raises every class short of its share."""
    shares = _floor_shares(calibrated, given, floor)
    if shares is None or len(probs) < UNLABELLED_FLOOR_MIN_ROWS:
        return None
    return starved_weights(probs, shares, starved_ratio)


def starved_weights(probs: torch.Tensor, shares: torch.Tensor, starved_ratio: float) -> torch.Tensor | None:
    """Weights w [C] with which argmax(p * w) predicts each class argmax(p) gives under `starved_ratio` of
    its share (`shares` [C]) for that whole share; other classes are left (None: no class is raised)."""
    predicted = torch.bincount(probs.argmax(1), minlength=probs.shape[1]).double() / len(probs)
    shares = torch.where(predicted < starved_ratio * shares, shares, torch.zeros_like(shares))
    return quota_weights(probs, torch.ceil(shares * len(probs)).long())


def _floor_shares(probs: torch.Tensor, given: torch.Tensor, floor: float) -> torch.Tensor | None:
    """Per class, `floor` times the share the floor guarantees: of `probs`' mean and the labels `given`
    (None: no labelled rows)."""
    labelled = given[given >= 0]
    if not len(probs) or not len(labelled):
        return None
    used = torch.bincount(labelled, minlength=probs.shape[1])[: probs.shape[1]].double() / len(labelled)
    return floor * floor_share(probs.double().mean(0), used)


def floor_share(expected: torch.Tensor, used: torch.Tensor) -> torch.Tensor:
    """The share of rows the floor guarantees each class: the lesser of its expected share and the
    labeller's (other rules compared in docs/method.md, "The class floor's share at 40 % noise";
    `benchmarks/research/floor_share_run.py` runs the benchmark with one of them in its place)."""
    return torch.minimum(expected, used)


def quota_weights(probs: torch.Tensor, quota: torch.Tensor, rounds: int = 3) -> torch.Tensor | None:
    """Weights w [C] with which argmax(p * w) predicts class k for at least quota[k] rows (None: no class
    falls short).

    Only a starved class's weight moves, to the smallest value that makes its quota of rows prefer it:
    the rows where it was closest to winning (a label-shift correction, p * w renormalised being the
    posterior under another class prior). Weights are capped at MAX_CLASS_WEIGHT; a few rounds settle
    the interaction of several starved classes.
    """
    n, c = probs.shape
    p = probs.double()
    predicted = torch.bincount(p.argmax(1), minlength=c)
    starved = torch.nonzero(predicted < quota).flatten().tolist()
    if not starved:
        return None
    w = torch.ones(c, dtype=torch.float64)
    for _ in range(rounds):
        for k in starved:
            scored = p * w
            others = torch.cat([scored[:, :k], scored[:, k + 1 :]], dim=1).max(dim=1).values
            needed = others / p[:, k].clamp_min(1e-12)  # the weight at which row i would prefer class k
            m = int(quota[k])
            # 0.1 % above the quota row's threshold: it wins clearly (not a tie that rounding the stored
            # probabilities could turn), at the price of the few rows within that margin joining it
            w[k] = min(MAX_CLASS_WEIGHT, max(1.0, float(needed.kthvalue(m).values) * (1 + 1e-3)))
    return w.float()


def reweighted(probs: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """p * w, rows renormalised (p unchanged without weights)."""
    if weights is None or not len(probs):
        return probs
    out = probs * weights.to(probs.dtype)
    return out / out.sum(dim=1, keepdim=True).clamp_min(1e-12)


def floored(probs: torch.Tensor, weights: torch.Tensor | None, temperature: float) -> torch.Tensor:
    """The delivered read-out: p * w renormalised, then one temperature (p unchanged without weights)."""
    if weights is None or not len(probs):
        return probs
    return apply_temperature(probs_to_logits(reweighted(probs, weights)), temperature).float()


def unfloored(probs: torch.Tensor, weights: torch.Tensor | None, temperature: float) -> torch.Tensor:
    """The calibrated posteriors back from `floored` ones (exact but for probabilities under 1e-8)."""
    if weights is None or not len(probs):
        return probs
    return reweighted(apply_temperature(probs_to_logits(probs), 1.0 / temperature).float(), 1.0 / weights)


def unlabelled_confidence(probs: torch.Tensor, post: Posteriors) -> np.ndarray:
    """Top-label confidence of delivered refined posteriors of texts read without a label, calibrated (the
    class floor's weights taken back out, `unfloored`): what the accuracy estimates read."""
    calibrated = unfloored(probs, post.weights(unlabelled=True), post.floor_temperature)
    return calibrated.max(1).values.double().numpy()


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
    inputs: Inputs,
    ens: EnsembleOutput,
    refiner: Refiner,
    cond: Conditioning,
    prior: Prior,
    report: Report,
    unlabelled_rows: np.ndarray | None = None,
) -> Posteriors:
    """The refined posteriors of every split; with `unlabelled_rows` (training row indices) also those rows
    read without their label, as an evaluation text is (`Posteriors.train_unlabelled`: what scores the
    refined posteriors on trusted rows that the prior and the refiner never read, `stages.trusted`)."""
    noisy_post, transition = ens.noisy_posteriors, refiner.model.transition
    y_valid = inputs.y_valid
    train_transition = transition(cond.train)
    train = refined_posterior(train_transition, noisy_post["train"], inputs.y_train)
    train_unlabelled = None
    if unlabelled_rows is not None:
        rows = torch.from_numpy(np.asarray(unlabelled_rows, dtype=np.int64))
        train_unlabelled = compose_posterior(noisy_post["train"][rows], train_transition[rows])
    report("posterior", 0.5, "validation and extra texts")
    if len(y_valid):
        valid_transition = transition(cond.valid)
        valid = refined_posterior(valid_transition, noisy_post["valid"], y_valid)
        valid_unlabelled = compose_posterior(noisy_post["valid"], valid_transition)
    else:
        valid = valid_unlabelled = torch.zeros(0, inputs.n_classes)
    extra = None
    if cond.extra is not None:
        # extra texts have no label: marginalise over the classifier's P(ỹ | x)
        no_label = torch.full((len(inputs.extra_texts),), MISSING, dtype=torch.long)
        extra = refined_posterior(transition(cond.extra), noisy_post["extra"], no_label)
    temperature, smoothing = 1.0, 0.0
    if len(y_valid) and (y_valid >= 0).any():
        smoothing = fit_vote_smoothing(prior.valid.probs, y_valid, prior.channel)
        target = (1 - smoothing) * prior.valid.probs + smoothing / inputs.n_classes
        temperature = fit_temperature(probs_to_logits(valid), target)

    def scaled(p: torch.Tensor) -> torch.Tensor:
        return apply_temperature(probs_to_logits(p), temperature).float()

    train, valid, valid_unlabelled = scaled(train), scaled(valid), scaled(valid_unlabelled)
    extra = None if extra is None else scaled(extra)
    train_unlabelled = None if train_unlabelled is None else scaled(train_unlabelled)
    weights = class_floor_weights(train, inputs.y_train)
    # the weights move the confidence too: a second temperature makes the floored posteriors' mean
    # confidence what the calibrated ones expect of the floored labels (on the validation rows), as the
    # first did for the refiner's (docs/method.md, "Re-deciding the inner defaults")
    floor_temperature = 1.0
    if weights is not None and len(valid):
        floor_temperature = fit_temperature(probs_to_logits(reweighted(valid, weights)), valid.double())
    unlabelled = torch.cat([valid_unlabelled] + ([extra] if extra is not None else []))
    unlabelled_weights = unlabelled_floor_weights(reweighted(unlabelled, weights), unlabelled, inputs.y_train)
    post = Posteriors(
        train,
        valid,
        extra,
        temperature,
        smoothing,
        weights,
        floor_temperature,
        vote_shares=not prior.noise_model_on,
        valid_unlabelled=valid_unlabelled,
        unlabelled_weights=unlabelled_weights,
    )
    report(
        "posterior",
        0.9,
        "class floor",
        {
            "max_class_weight": 1.0 if weights is None else float(weights.max()),
            "floor_temperature": floor_temperature,
            "max_unlabelled_class_weight": 1.0
            if unlabelled_weights is None
            else float(unlabelled_weights.max()),
        },
    )

    def read(p: torch.Tensor, unlabelled: bool = False) -> torch.Tensor:
        return floored(p, post.weights(unlabelled), floor_temperature)

    post.train, post.valid = read(train), read(valid)
    post.valid_unlabelled = read(valid_unlabelled, unlabelled=True)
    post.extra = None if extra is None else read(extra, unlabelled=True)
    post.train_unlabelled = None if train_unlabelled is None else read(train_unlabelled, unlabelled=True)
    return post
