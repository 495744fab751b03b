"""The refined labels of the trusted training rows as they would be had nobody checked them (cross-fitted).

The run anchors the prior with every trusted label and fits the refiner to those rows' one-hot priors, so
its refined label on a trusted training row partly reads that row's own trusted label: scored against it,
the refined labels looked better than on any row nobody checked (docs/method.md, "Twenty-seventh round").
The select stage scores them instead by these: the trusted rows are split into folds, each fold's trusted
labels hidden (its rows keep their noisy label, as any row does), and the prior, the refiner and the
posteriors re-run for it. The same re-fits read those rows once more without their label, as an evaluation
text is read: that scores the refined posteriors the run delivers for the evaluation texts (`stages.select`,
forty-third round). Nothing delivered is changed; the refiner re-fits seed themselves (`seeded_rng`),
so the stages after this one compute what they computed without it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sidyp_engine.classifier import EnsembleOutput
from sidyp_engine.stages.inputs import Inputs
from sidyp_engine.stages.posterior import compose_posteriors, unlabelled_confidence
from sidyp_engine.stages.prior import NoiseFlags, dynamic_prior
from sidyp_engine.stages.refine import Conditioning, train_refiner
from sidyp_engine.types import CalibrationConfig, ShouldStop

# Two folds: each re-fit keeps half the trusted anchors, as close to the delivered run as one more fit allows.
TRUSTED_FOLDS = 2


def _quiet(*_args, **_kwargs) -> None:
    """The re-fits report nothing of their own: the posterior stage says it is making them."""


@dataclass
class Unchecked:
    """The trusted training rows (in the order of `np.flatnonzero` over the fitted rows' trusted ids) as the
    re-fits that never read their trusted label see them."""

    labels: np.ndarray  # refined label ids, each row read with its noisy label (as a delivered label is)
    unlabelled_labels: np.ndarray  # refined label ids, each row read without a label (as an evaluation text)
    unlabelled_confidence: np.ndarray  # the calibrated top-label confidence of that reading


def refined_labels_unchecked(
    cfg: CalibrationConfig,
    inputs: Inputs,
    ens: EnsembleOutput,
    flags: NoiseFlags,
    frozen: dict[str, torch.Tensor],
    cond: Conditioning,
    trusted_ids: np.ndarray | None,
    device: torch.device,
    should_stop: ShouldStop | None = None,
) -> Unchecked | None:
    """The refined labels of each trusted training row from a prior and refiner that never read its trusted
    label, with and without its noisy label; None without such rows."""
    if trusted_ids is None:
        return None
    rows = np.flatnonzero(trusted_ids[inputs.fit_rows] >= 0)
    if not len(rows):
        return None
    fold = np.random.default_rng(cfg.seed).permutation(len(rows)) % TRUSTED_FOLDS
    # the training rows' labels read only the training and validation rows: the evaluation texts' passes
    # (their floor weights) would be computed and dropped
    labelled = Conditioning(cond.train, cond.valid, None)
    found = Unchecked(
        np.full(len(rows), -1, dtype=np.int64), np.full(len(rows), -1, dtype=np.int64), np.zeros(len(rows))
    )
    for f in range(TRUSTED_FOLDS):
        hidden = rows[fold == f]
        if not len(hidden):
            continue
        ids = trusted_ids.copy()
        ids[inputs.fit_rows[hidden]] = -1
        prior = dynamic_prior(cfg, inputs, ens, flags, frozen, _quiet, ids)
        refiner = train_refiner(cfg, inputs, labelled, prior, device, None, should_stop)
        post = compose_posteriors(inputs, ens, refiner, labelled, prior, _quiet, unlabelled_rows=hidden)
        found.labels[fold == f] = post.train[torch.from_numpy(hidden)].argmax(1).numpy()
        found.unlabelled_labels[fold == f] = post.train_unlabelled.argmax(1).numpy()
        found.unlabelled_confidence[fold == f] = unlabelled_confidence(post.train_unlabelled, post)
    return found
