"""Stage "select": do no harm. Keep the plain noisy-label classifier where it is estimated clearly better.

Runs after the served model. The candidates are scored on the validation rows (never trained on), each by
predictions that did not read the row's own noisy label (`sidyp_engine.selection`); with trusted rows the
candidates are scored on those instead (their suggested label / their prediction on those texts), and
with enough of them the models' temperatures are fitted to their labels (NLL) instead of a reference.
Gold-free, each candidate's accuracy is the one the validation rows' refined posteriors expect of it; the
method-of-moments estimates (noise matrix from anchor points of the stage-1 ensemble on the held-out texts,
`selection_noise_matrix`) are kept beside them for comparison. Neither decides (the noise gate does).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from sidyp_engine import estimates, probe, selection
from sidyp_engine.classifier import EnsembleOutput, noisy_accuracy
from sidyp_engine.served import ServedClassifier
from sidyp_engine.stages.inputs import Inputs, corrected_labels, fit_labels
from sidyp_engine.stages.posterior import Posteriors, reweighted, unfloored, unlabelled_confidence
from sidyp_engine.stages.trusted import Unchecked
from sidyp_engine.temperature import fit_temperature, fit_temperature_nll

# Fewest trusted rows that set the models' temperatures (NLL fit) in place of the gold-free rule. Planted
# (docs/method.md, defaults of the select stage): 30 rows put the held-out ECE at a median 0.043, 20 rows
# at 0.053; below that one scalar fitted to a handful of rows swings more than the reference it replaces.
MIN_TRUSTED_FOR_TEMPERATURE = 30
# Fewest validation texts a gold-free estimate is carried from to the evaluation texts. ATC's threshold is a
# quantile of their confidences; the design splits (docs/method.md, twelfth round) had 89 rows or more, and
# on `make demo`'s 19 the carried temperature doubled the delivered model's ECE (0.068 -> 0.126).
MIN_VALIDATION_FOR_CARRYING = 80
GOLD_FREE_TEMPERATURE = selection.GOLD_FREE_TEMPERATURE
SERVED_MOMENTS_TEMPERATURE = selection.SERVED_MOMENTS_TEMPERATURE


@dataclass
class Probe:
    """The linear probe candidate: its served form and P(ỹ | x) per split (training rows out of fold)."""

    model: ServedClassifier
    train: torch.Tensor  # [N_train, C] out-of-fold: each row from a probe that never saw its label
    valid: torch.Tensor
    extra: torch.Tensor | None
    valid_logits: np.ndarray  # untempered, for the temperature fits
    extra_logits: np.ndarray | None = None  # untempered, what its evaluation-text confidences are read from


def linear_probe(
    inputs: Inputs,
    frozen: dict[str, torch.Tensor],
    encoder: str,
    max_length: int,
    device,
    seed: int,
    trusted_ids: np.ndarray | None = None,
    trusted_in_place: bool = False,
) -> Probe:
    """The probe fitted on the training rows' frozen embeddings and noisy labels (sidyp_engine.probe),
    trusted rows left out as in stage 1 (`inputs.fit_labels`), or with `trusted_in_place` each at its
    trusted label (`inputs.corrected_labels`: the refit of a kept probe)."""
    if trusted_in_place:
        y = torch.from_numpy(corrected_labels(inputs, trusted_ids)[0])
    else:
        y = torch.from_numpy(fit_labels(inputs, trusted_ids))
    weight, bias = probe.fit_probe(frozen["train"], y, inputs.n_classes)
    model = probe.probe_classifier(encoder, weight, bias, inputs.classes, max_length, device)
    valid_logits = probe.probe_logits(frozen["valid"], weight, bias)
    extra = probe.probe_logits(frozen["extra"], weight, bias) if inputs.extra_texts else None
    return Probe(
        model,
        probe.out_of_fold_probs(frozen["train"], y, inputs.n_classes, seed),
        torch.softmax(valid_logits, dim=-1),
        None if extra is None else torch.softmax(extra, dim=-1),
        valid_logits.numpy(),
        None if extra is None else extra.numpy(),
    )


@dataclass
class Kept:
    selection: selection.Selection
    model: ServedClassifier
    train_posteriors: torch.Tensor  # [N_train, C] of the kept labels
    valid_posteriors: torch.Tensor
    extra_posteriors: torch.Tensor | None
    valid_predictions: dict[str, np.ndarray]  # candidate -> class ids on the validation rows
    noise_matrix: np.ndarray  # the T the gold-free estimates used
    valid_noisy_posteriors: np.ndarray  # the stage-1 ensemble's P(ỹ | x) on the validation rows (research)
    valid_logits: dict[str, np.ndarray]  # SERVED / PLAIN_MODEL -> untempered logits on the validation rows
    trusted_rows: TrustedRows | None = None  # the candidates on the trusted rows (research)


def selection_noise_matrix(ens: EnsembleOutput) -> np.ndarray:
    """T for the gold-free estimates: anchor points of the stage-1 ensemble's held-out P(ỹ | x).

    Validation and extra texts only (never trained on, so not over-fitted to their labels). Not the run's
    own T (refined posteriors against the labels): that one scores the method by its own claims, and on
    the design runs it missed the measured accuracies by twice as much (docs/method.md).
    """
    held_out = [ens.noisy_posteriors[k] for k in ("valid", "extra") if k in ens.noisy_posteriors]
    rows = torch.cat([p for p in held_out if len(p)]) if any(len(p) for p in held_out) else None
    if rows is None:
        return np.eye(ens.noisy_posteriors["train"].shape[1])
    return estimates.anchor_noise_matrix(rows.numpy())


def calibrated(probs: torch.Tensor, post: Posteriors, unlabelled: bool = False) -> torch.Tensor:
    """`probs` (delivered refined posteriors; `unlabelled`: of texts read without a label) without the class
    floor's weights: the calibrated P(y | x) the estimates read. The floor reweights classes for the argmax
    (docs/method.md, "The class floor"); an expected share of wrong labels or of right predictions is a
    property of the calibrated ones."""
    return unfloored(probs, post.weights(unlabelled), post.floor_temperature)


def method_wrong_share(post: Posteriors, inputs: Inputs, seed: int) -> estimates.Estimate | None:
    """The run's own estimate of the wrong-label share: mean 1 - P(y = given | x, given) of the calibrated
    refined posteriors over the caller's labelled rows (training rows and the validation rows held out of
    them), with a bootstrap interval over the rows (the posteriors' own error is not in it)."""
    given = [(calibrated(post.train, post), inputs.train_ids)]
    if inputs.is_validation.any():
        given.append((calibrated(post.valid, post), inputs.valid_ids))
    right = [
        p[torch.from_numpy(np.flatnonzero(ids >= 0)), torch.from_numpy(ids[ids >= 0])] for p, ids in given
    ]
    wrong = (1.0 - torch.cat(right)).numpy()
    return estimates.mean_estimate(wrong, "posterior", seed) if len(wrong) else None


def plain_model(
    plain: EnsembleOutput, tokenizer, inputs: Inputs, max_length: int, device
) -> ServedClassifier:
    """The plain fine-tune as a served model (temperature 1 until `select_outputs` fits it)."""
    return ServedClassifier(plain.models[0], tokenizer, inputs.classes, 1.0, max_length, device)


def select_outputs(
    inputs: Inputs,
    ens: EnsembleOutput,
    plain_ens: EnsembleOutput,
    post: Posteriors,
    served: ServedClassifier,
    plain: ServedClassifier,
    noise_matrix: np.ndarray,
    trusted_ids: np.ndarray | None,
    seed: int,
    gold_free_may_switch: bool = False,
    probe_candidate: Probe | None = None,
    refined_unchecked: Unchecked | None = None,
) -> Kept:
    """Estimate every candidate, decide labels and model, set the models' temperatures, return what is kept.

    `ens` is stage 1 (its held-out P(ỹ | x) are kept for research); `plain_ens` the plain fine-tune, whose
    P(ỹ | x) are the "plain" labels and whose model is "plain_model". `refined_unchecked`: the trusted
    training rows from re-fits that never read their trusted label (`stages.trusted`): their refined labels
    score the refined labels there in place of the delivered ones, and their reading without a label scores
    the refined posteriors of the evaluation texts."""
    models = {selection.SERVED: served, selection.PLAIN_MODEL: plain}
    valid_logits = {
        name: _logits(model, inputs.valid_texts, inputs.n_classes) for name, model in models.items()
    }
    if probe_candidate is not None:  # its logits come from the embeddings the prior stage already has
        models[selection.PROBE] = probe_candidate.model
        valid_logits[selection.PROBE] = probe_candidate.valid_logits
    valid_preds = {
        selection.PLAIN: plain_ens.noisy_posteriors["valid"].argmax(1).numpy(),
        selection.REFINED: post.valid_unlabelled.argmax(1).numpy(),
        **{name: logits.argmax(1) for name, logits in valid_logits.items()},
    }
    rows = _trusted_rows(
        inputs,
        plain_ens,
        post,
        models,
        valid_preds,
        valid_logits,
        trusted_ids,
        probe_candidate,
        refined_unchecked,
    )
    if rows is None:
        preds, noisy, trusted = valid_preds, inputs.valid_ids, None
    else:
        preds, noisy, trusted = rows.predictions, rows.noisy, rows.trusted
    wrong = method_wrong_share(post, inputs, seed)
    # the reference for the gold-free estimates: the validation rows' refined posteriors (with their label)
    reference = calibrated(post.valid, post).numpy() if rows is None and len(post.valid) else None
    chosen = selection.select(
        preds,
        noisy,
        noise_matrix,
        trusted,
        seed,
        gold_free_may_switch,
        wrong,
        reference=reference,
        classes=list(inputs.classes),
        refined_unforced=_refined_unforced(post),
        rows_per_class=float((inputs.train_ids >= 0).sum()) / inputs.n_classes,
    )
    chosen.trusted_sample = _trusted_sample(inputs, ens, trusted_ids)
    chosen.temperature_source, followed = _set_temperatures(
        models, valid_logits, chosen, rows, post.vote_shares, inputs.valid_ids
    )
    eval_logits = _evaluation_logits(models, inputs, probe_candidate)
    evaluation_confidences = _evaluation_confidences(models, valid_logits, eval_logits, post)
    served_shift = _served_shift(models, valid_logits, eval_logits, rows)
    on_evaluation = _candidates_on_evaluation(
        chosen, evaluation_confidences, rows, models, seed, served_shift
    )
    chosen.evaluation_estimate = _evaluation_estimate(
        models,
        valid_logits,
        eval_logits,
        chosen.kept_model,
        rows,
        inputs.extra_texts,
        followed,
        seed,
        served_shift,
    )
    chosen.evaluation_estimates = _with_the_kept_row(
        on_evaluation, chosen.kept_model, chosen.evaluation_estimate
    )
    if chosen.evaluation_estimate is not None and chosen.evaluation_estimate.method == "carried":
        chosen.temperature_source += selection.CARRIED_TEMPERATURE
    labels = {
        selection.REFINED: (post.train, post.valid, post.extra),
        selection.PLAIN: tuple(plain_ens.noisy_posteriors.get(k) for k in ("train", "valid", "extra")),
    }
    if probe_candidate is not None:
        labels[selection.PROBE] = (probe_candidate.train, probe_candidate.valid, probe_candidate.extra)
    train_rows, valid_rows, extra_rows = labels[chosen.kept_labels]
    return Kept(
        selection=chosen,
        model=models[chosen.kept_model],
        train_posteriors=train_rows,
        valid_posteriors=valid_rows,
        extra_posteriors=extra_rows if inputs.extra_texts else None,
        valid_predictions=valid_preds,
        noise_matrix=noise_matrix,
        valid_noisy_posteriors=ens.noisy_posteriors["valid"].numpy(),
        valid_logits=valid_logits,
        trusted_rows=rows,
    )


def to_refit(chosen: selection.Selection) -> tuple[str | None, str]:
    """(labels, model): the kept candidates that trusted rows fit again after the decision. Every model; the
    labels unless they are the refined ones, which already carry the trusted labels (None)."""
    return (None if chosen.kept_labels == selection.REFINED else chosen.kept_labels), chosen.kept_model


@dataclass
class Refits:
    """The fits on every row with the trusted labels in place, for what `to_refit` names."""

    plain: EnsembleOutput | None = None  # `refit_plain`: the plain labels and model
    served: ServedClassifier | None = None  # `distill_served(trusted_in_place=True)`
    probe: Probe | None = None  # `linear_probe(trusted_in_place=True)`: its labels and model


def with_refits(
    kept: Kept, refits: Refits, tokenizer, inputs: Inputs, max_length: int, device, n_trusted: int
) -> Kept:
    """`kept` with what `to_refit` names replaced by its fit on every row with the trusted labels in place.

    The held-out fits the trusted rows scored stay what the estimates and the decision describe. A refitted
    model takes its held-out fit's temperature: the trusted rows are now among its training rows, so a
    temperature fitted on them would read memorised rows as unseen texts (over-confident), and it is the
    same recipe and seed on nearly the same labels."""
    chosen = kept.selection
    labels, model_name = to_refit(chosen)
    rows = (kept.train_posteriors, kept.valid_posteriors, kept.extra_posteriors)
    if labels == selection.PLAIN:
        posteriors = refits.plain.noisy_posteriors
        rows = (posteriors["train"], posteriors["valid"], posteriors.get("extra"))
    elif labels == selection.PROBE:
        rows = (refits.probe.train, refits.probe.valid, refits.probe.extra)
    if model_name == selection.PLAIN_MODEL:
        model = ServedClassifier(refits.plain.models[0], tokenizer, inputs.classes, 1.0, max_length, device)
    else:
        model = refits.served if model_name == selection.SERVED else refits.probe.model
    model.temperature = kept.model.temperature
    chosen.refit = {
        "trusted_rows": int(n_trusted), "labels": labels, "model": model_name, "temperature": model.temperature
    }  # fmt: skip
    chosen.reason += (
        f"; delivered: {selection.refit_summary(labels, model_name)}, fitted again on every row with the "
        f"{n_trusted} trusted labels in place of the given ones (the figures above are of the fits that "
        "left them out, which they scored)"
    )
    extra = rows[2] if inputs.extra_texts else None
    return replace(
        kept, model=model, train_posteriors=rows[0], valid_posteriors=rows[1], extra_posteriors=extra
    )


def _refined_unforced(post: Posteriors) -> np.ndarray | None:
    """The validation texts' refined labels read without a label, with the training rows' class floor but
    not the further floor on unlabelled texts (None when there is none)."""
    if post.unlabelled_weights is None or post.valid_unlabelled is None:
        return None
    own = reweighted(calibrated(post.valid_unlabelled, post, unlabelled=True), post.class_weights)
    return own.argmax(1).numpy()


def _trusted_sample(inputs: Inputs, ens: EnsembleOutput, trusted_ids: np.ndarray | None) -> dict | None:
    """Stage 1's P(ỹ = given | x) on the trusted rows against the other validation rows: no stage-1 model
    fitted either (trusted training rows are unlabelled there), so a random draw reads alike."""
    train_trusted, valid_trusted = _split_trusted(inputs, trusted_ids)  # all -1 without trusted ids
    if not ((train_trusted >= 0).any() or (valid_trusted >= 0).any()):
        return None

    def given_probability(probs: torch.Tensor, noisy: np.ndarray, rows: np.ndarray) -> np.ndarray:
        rows = rows[noisy[rows] >= 0]
        return probs[torch.from_numpy(rows), torch.from_numpy(noisy[rows])].numpy()

    valid_probs = ens.noisy_posteriors["valid"]
    trusted = np.concatenate(
        [
            given_probability(
                ens.noisy_posteriors["train"], inputs.train_ids, np.flatnonzero(train_trusted >= 0)
            ),
            given_probability(valid_probs, inputs.valid_ids, np.flatnonzero(valid_trusted >= 0)),
        ]
    )
    others = given_probability(valid_probs, inputs.valid_ids, np.flatnonzero(valid_trusted < 0))
    return estimates.trusted_sample_check(trusted, others)


def _logits(model: ServedClassifier, texts: list[str], n_classes: int) -> np.ndarray:
    return model.logits(texts) if texts else np.zeros((0, n_classes), dtype=np.float32)


def _split_trusted(inputs: Inputs, trusted_ids: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Trusted label ids of the training rows stage 1 fitted and of the validation rows (-1 = none)."""
    if trusted_ids is None:
        return np.full(len(inputs.train_ids), -1), np.full(len(inputs.valid_ids), -1)
    train = trusted_ids[inputs.fit_rows]
    held = np.flatnonzero(inputs.is_validation)
    valid = trusted_ids[held] if len(held) else np.full(len(inputs.valid_ids), -1)
    return train, valid


@dataclass
class TrustedRows:
    """The rows with a trusted label, validation rows first: every candidate's prediction on them."""

    predictions: dict[str, np.ndarray]  # candidate -> class ids
    noisy: np.ndarray  # the rows' noisy label ids (-1 = none)
    trusted: np.ndarray  # their trusted label ids
    logits: dict[str, np.ndarray]  # SERVED / PLAIN_MODEL -> untempered logits [n, C]
    n_valid: int  # the first n_valid rows are validation rows (never trained on)
    # the refined posteriors read without a label, as on an evaluation text: (label ids, calibrated top-label
    # confidence); None where the trusted training rows have no such reading
    refined_unlabelled: tuple[np.ndarray, np.ndarray] | None = None


def _trusted_rows(
    inputs,
    plain_ens,
    post,
    models,
    valid_preds,
    valid_logits,
    trusted_ids,
    probe_candidate=None,
    refined_unchecked=None,
) -> TrustedRows | None:
    """Every candidate on the trusted rows (None without any): validation rows as above, training rows by
    the suggested label (labels candidates) and the prediction on the text (models). The refined labels
    of training rows are `refined_unchecked`'s where given: the delivered ones read the row's own trusted
    label (`stages.trusted`)."""
    train_trusted, valid_trusted = _split_trusted(inputs, trusted_ids)
    keep, rows = valid_trusted >= 0, np.flatnonzero(train_trusted >= 0)
    if not keep.any() and not len(rows):
        return None
    texts = [inputs.train_texts[i] for i in rows]
    logits = {
        name: np.concatenate([valid_logits[name][keep], _logits(model, texts, inputs.n_classes)])
        for name, model in models.items()
    }
    on_train = {
        selection.PLAIN: plain_ens.noisy_posteriors["train"][rows].argmax(1).numpy(),
        selection.REFINED: post.train[rows].argmax(1).numpy()
        if refined_unchecked is None
        else refined_unchecked.labels,
    }
    if probe_candidate is not None:
        on_train[selection.PROBE] = probe_candidate.train[rows].argmax(1).numpy()
    preds = {name: np.concatenate([valid_preds[name][keep], on_train[name]]) for name in on_train}
    preds |= {name: rows_logits.argmax(1) for name, rows_logits in logits.items()}
    noisy = np.concatenate([inputs.valid_ids[keep], inputs.train_ids[rows]])
    trusted = np.concatenate([valid_trusted[keep], train_trusted[rows]])
    unlabelled = None
    if refined_unchecked is not None or not len(rows):
        # validation rows are read without their label already; training rows as the re-fits read them
        valid_conf = unlabelled_confidence(post.valid_unlabelled, post)
        train_part = (
            (np.zeros(0, np.int64), np.zeros(0))
            if refined_unchecked is None
            else (refined_unchecked.unlabelled_labels, refined_unchecked.unlabelled_confidence)
        )
        unlabelled = (
            np.concatenate([valid_preds[selection.REFINED][keep], train_part[0]]),
            np.concatenate([valid_conf[keep], train_part[1]]),
        )
    return TrustedRows(preds, noisy, trusted, logits, int(keep.sum()), unlabelled)


def _set_temperatures(
    models, valid_logits, chosen: selection.Selection, rows, vote_shares: bool, valid_noisy: np.ndarray
) -> tuple[str, dict[str, estimates.Estimate]]:
    """Every model's temperature, fitted to the trusted labels when there are enough; returns the source and,
    gold-free, the estimate each model's confidence now follows on the validation texts (`valid_noisy`: the
    validation rows' given labels, -1 where none)."""
    source = _temperature_source(rows)
    if source is None:  # the served model keeps the temperature its distillation fitted, but see below
        # the others' confidence is held to their moment estimates, not the refined posteriors' view of
        # them (where a plain model is kept the gate has just judged those posteriors not to be trusted),
        # and flattened only as far as the estimate's interval insists (`_confidence_target`)
        found = chosen.moment_estimates or chosen.estimates
        followed = dict(found)
        for name, model in models.items():
            if name != selection.SERVED:
                agreement = _label_agreement(valid_logits[name], valid_noisy)
                target = _confidence_target(valid_logits[name], found[name], agreement=agreement)
                model.temperature = _temperature_for(valid_logits[name], target.accuracy)
                # a model that copies its labels: its figure is the held estimate, not its own confidence
                followed[name] = found[name] if found[name].method == estimates.HELD else target
        if selection.SERVED not in found:
            return GOLD_FREE_TEMPERATURE, followed
        # the distillation matched the served confidence to the refined posteriors' expectation
        followed[selection.SERVED] = chosen.estimates[selection.SERVED]
        if vote_shares:
            # Without the noise model the refined posteriors are vote shares of the noisy labels: their
            # spread holds the label noise, so the accuracy they expect of the served model (the
            # distillation's target confidence) is low by it; the moment estimate is read as well and
            # the greater one kept (docs/method.md, "Eleventh round").
            posterior = chosen.estimates[selection.SERVED].accuracy
            moments = found[selection.SERVED].accuracy
            if np.isfinite(moments) and moments > posterior:
                served = models[selection.SERVED]
                served.temperature = _temperature_for(valid_logits[selection.SERVED], moments)
                followed[selection.SERVED] = found[selection.SERVED]
                return SERVED_MOMENTS_TEMPERATURE, followed
        return GOLD_FREE_TEMPERATURE, followed
    labels = torch.from_numpy(rows.trusted)
    for name, model in models.items():
        model.temperature = fit_temperature_nll(torch.from_numpy(rows.logits[name]), labels)
    return source, {}


def _evaluation_logits(models, inputs: Inputs, probe_candidate) -> dict:
    """Every model's untempered logits on the extra (evaluation) texts, {} without them: the same kind as
    its validation logits, which its confidence there is compared with. The plain model's recorded
    P(ỹ | x) are not: float32 probabilities saturate, and their logs cut a confident model's margins at
    log(1e-12), so its evaluation texts all read less confident than its validation texts and the share
    above any validation threshold fell to 0. The served and plain models cost one pass each."""
    if not inputs.extra_texts:
        return {}
    found = {
        name: models[name].logits(inputs.extra_texts) for name in (selection.SERVED, selection.PLAIN_MODEL)
    }
    if probe_candidate is not None and probe_candidate.extra_logits is not None:
        found[selection.PROBE] = probe_candidate.extra_logits
    return found


def _top_confidence(logits: np.ndarray, temperature: float) -> np.ndarray:
    return (
        torch.softmax(torch.from_numpy(np.asarray(logits)).double() / temperature, dim=-1)
        .max(1)
        .values.numpy()
    )


def _evaluation_confidences(models, valid_logits, eval_logits, post) -> dict:
    """Candidate -> (top-label confidences on the validation texts, on the evaluation texts), each read as
    the candidate predicts: the models at their temperatures, the plain labels as the plain model, the
    refined labels by their posteriors without a label (as for an unseen text)."""
    if not eval_logits:
        return {}
    found = {
        name: (
            _top_confidence(valid_logits[name], models[name].temperature),
            _top_confidence(eval_logits[name], models[name].temperature),
        )
        for name in eval_logits
    }
    found[selection.PLAIN] = found[selection.PLAIN_MODEL]
    if post.extra is not None:  # both as the calibrated refined posteriors of texts without a label
        found[selection.REFINED] = (
            unlabelled_confidence(post.valid_unlabelled, post),
            unlabelled_confidence(post.extra, post),
        )
    return found


def _candidates_on_evaluation(
    chosen: selection.Selection,
    confidences: dict,
    rows: TrustedRows | None,
    models,
    seed: int,
    served_shift: estimates.ShiftReader | None = None,
) -> dict[str, estimates.Estimate]:
    """Every candidate's accuracy on the evaluation texts, as the kept model's is estimated there (ATC):
    the report's rows then say how each would do on the texts the user scores, which can be easier or
    harder than the validation texts. Gold-free, each reported estimate is carried there by the
    candidate's confidence (not from fewer than 80 validation texts). With enough trusted rows to set the
    temperatures, the candidates' accuracies are transferred from them (`_transferred`; the plain labels
    are the plain model's; the refined labels are their posteriors read without a label, as on an
    evaluation text, from re-fits that never read the trusted labels). {} otherwise."""
    if rows is None:
        return {
            name: chosen.estimates[name]
            if _copies_its_labels(chosen, name)
            else estimates.carried_accuracy(source, chosen.estimates[name], target, seed)
            for name, (source, target) in confidences.items()
            if name in chosen.estimates and len(source) >= MIN_VALIDATION_FOR_CARRYING
        }
    if _temperature_source(rows) is None:
        return {}
    scored = {name: _on_trusted_rows(rows, name, models[name].temperature) for name in rows.logits}
    if rows.refined_unlabelled is not None:
        labels, confidence = rows.refined_unlabelled
        scored[selection.REFINED] = confidence, labels == rows.trusted
    found = {}
    for name, (source, right) in scored.items():
        if name in confidences:
            valid, target = confidences[name]
            found[name] = _transferred(name, source, right, valid, target, seed, served_shift)
    if selection.PLAIN_MODEL in found:
        found[selection.PLAIN] = found[selection.PLAIN_MODEL]
    return found


# Models fitted to the noisy labels: their confidence reads how sure the labeller is, and ATC from the trusted
# rows carried its threshold's sampling error to the evaluation texts (docs/method.md, "Forty-second round").
FITTED_TO_NOISY_LABELS = (selection.PLAIN_MODEL, selection.PROBE)


def _on_trusted_rows(rows: TrustedRows, name: str, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    """A model's top-label confidence on the trusted rows at `temperature`, and whether it is right there."""
    logits = np.asarray(rows.logits[name])
    return _top_confidence(logits, temperature), logits.argmax(1) == rows.trusted


def _served_shift(
    models, valid_logits, eval_logits, rows: TrustedRows | None
) -> estimates.ShiftReader | None:
    """The served model's confidences that read the shift from the validation texts to the evaluation texts,
    thresholded on the trusted rows (None without trusted rows or evaluation texts). The served model is
    distilled from the refined posteriors and its confidence ranks its rightness on the trusted rows where
    theirs, as vote shares, need not (docs/method.md, "Forty-fourth round")."""
    if rows is None or selection.SERVED not in eval_logits:
        return None
    temperature = models[selection.SERVED].temperature
    return estimates.ShiftReader(
        *_on_trusted_rows(rows, selection.SERVED, temperature),
        _top_confidence(valid_logits[selection.SERVED], temperature),
        _top_confidence(eval_logits[selection.SERVED], temperature),
    )


def _transferred(
    name: str,
    source,
    right,
    valid_conf,
    target_conf,
    seed: int,
    served_shift: estimates.ShiftReader | None = None,
) -> estimates.Estimate:
    """A candidate's accuracy on the evaluation texts from the trusted rows (`source`: its top-label
    confidence on them, `right`: whether it predicts their trusted label). The served model: ATC. The plain
    model: the trusted-row accuracy plus the shift the served model's ATC reads from the validation texts
    to the evaluation texts (`served_shift`; its own confidence is the labeller's certainty). The probe:
    plus the shift its own ATC reads (`estimates.shifted_accuracy`). The refined posteriors: ATC where their
    confidence ranks the trusted rows' rightness, else the trusted-row accuracy plus the served model's
    shift (`estimates.ranked_transfer`). A shift is read from enough validation texts only
    (MIN_VALIDATION_FOR_CARRYING); without, ATC, and for the refined posteriors the trusted-row accuracy
    (docs/method.md, "Forty-second round" to "Forty-fourth round")."""
    served_reads = (
        served_shift is not None and len(served_shift.reference_conf) >= MIN_VALIDATION_FOR_CARRYING
    )
    if name == selection.REFINED:
        otherwise = estimates.shifted_accuracy(right, served_shift, seed) if served_reads else None
        return estimates.ranked_transfer(source, right, target_conf, seed, otherwise)
    if name == selection.PLAIN_MODEL and served_reads:
        return estimates.shifted_accuracy(right, served_shift, seed)
    if (
        name in FITTED_TO_NOISY_LABELS
        and valid_conf is not None
        and len(valid_conf) >= MIN_VALIDATION_FOR_CARRYING
    ):
        return estimates.shifted_accuracy(
            right, estimates.ShiftReader(source, right, valid_conf, target_conf), seed
        )
    return estimates.transferred_accuracy(source, right, target_conf, seed)


def _copies_its_labels(chosen: selection.Selection, name: str) -> bool:
    """Gold-free, the candidate's moment estimate was held to the run's wrong-label share: it reproduces its
    labels, and its confidence says how sure the labeller is, not whether it is right (on the design dumps
    its confidence ranked its validation correctness no better than chance: docs/method.md, "Twenty-fourth
    round"). Its estimate is then not carried to other texts by confidence."""
    moments = (chosen.moment_estimates or {}).get(name)
    return moments is not None and moments.method == estimates.HELD


def _with_the_kept_row(
    table: dict[str, estimates.Estimate], kept_model: str, kept: estimates.Estimate | None
) -> dict[str, estimates.Estimate]:
    """The candidates' rows on the evaluation texts, the kept model's row being its headline figure. The
    plain labels' row reads the plain model, so a kept plain model's figure is theirs too: the report sets
    the plain classifier's row beside the delivered model's, and one model must not read two ways there."""
    if kept is None:
        return table
    rows = {**table, kept_model: kept}
    if kept_model == selection.PLAIN_MODEL:
        rows[selection.PLAIN] = kept
    return rows


def _evaluation_estimate(
    models,
    valid_logits,
    eval_logits,
    name: str,
    rows: TrustedRows | None,
    texts,
    followed,
    seed: int,
    served_shift: estimates.ShiftReader | None = None,
) -> estimates.Estimate | None:
    """The kept model's accuracy on the extra (evaluation) texts, carried to them by its confidence (ATC),
    and gold-free its temperature set there; None without extra texts. With enough trusted rows to set its temperature, from them
    (`_transferred`): they measure the texts they were drawn from, and where the
    evaluation texts are easier or harder, their accuracy is not the evaluation texts' (docs/method.md,
    tenth round). Gold-free, from the estimate its confidence follows on the validation texts
    (`estimates.carried_accuracy`), and its temperature is then matched on the evaluation texts to the
    carried estimate, so that its confidence follows the texts it will be used on (docs/method.md,
    twelfth round); a plain model or the probe flattened only as far as its interval insists (`_confidence_target`).
    A model that copies its labels gets its held estimate, not carried (`_copies_its_labels`)."""
    trusted = _temperature_source(rows) is not None
    # gold-free, not from a few trusted rows (the temperatures follow neither them nor a carried estimate)
    # nor from too few validation texts
    gold_free = rows is None and name in followed and len(valid_logits[name]) >= MIN_VALIDATION_FOR_CARRYING
    if not texts or not (trusted or gold_free):
        return None
    if not trusted and followed[name].method == estimates.HELD:  # copies its labels: `_copies_its_labels`
        return followed[name]
    model = models[name]
    # a kept probe gets its own pass through the encoder it is served with, not the frozen embeddings'
    # logits: the delivered model's exact logits (its temperature is set on them below)
    found = eval_logits.get(name) if name != selection.PROBE else None
    target_logits = torch.from_numpy(model.logits(texts) if found is None else found).double()
    target = torch.softmax(target_logits / model.temperature, dim=-1).max(1).values.numpy()
    if trusted:
        valid = _top_confidence(valid_logits[name], model.temperature) if name in valid_logits else None
        source, right = _on_trusted_rows(rows, name, model.temperature)
        return _transferred(name, source, right, valid, target, seed, served_shift)
    source_logits = torch.from_numpy(valid_logits[name]).double()
    source = torch.softmax(source_logits / model.temperature, dim=-1).max(1).values.numpy()
    carried = estimates.carried_accuracy(source, followed[name], target, seed)
    if np.isfinite(carried.accuracy):
        # a plain model or the probe is flattened only as far as the carried interval insists
        target_np = target_logits.numpy()
        aim = carried
        if name != selection.SERVED and followed[name].method != "bound":
            aim = _confidence_target(target_np, carried, model.temperature)
        model.temperature = _temperature_for(target_np, aim.accuracy, model.temperature)
    return carried


def _temperature_source(rows: TrustedRows | None) -> str | None:
    """How the report names the rows the temperatures are fitted on (None: too few trusted rows).

    All trusted rows: validation rows were never trained on, and trusted training rows are left out of every
    fit (stage 1 and the probe take them as unlabelled, the distillation skips them), so both give the
    logits an unseen text gets. Fitted to its noisy label, a trusted training row would bias the fit
    (the model reproduces that label on it; on semeval the temperature came out 1.14 where the
    validation gold asks 1.05-1.09, docs/method.md).
    """
    if rows is None or len(rows.trusted) < MIN_TRUSTED_FOR_TEMPERATURE:
        return None
    n_rows, n_valid = len(rows.trusted), rows.n_valid
    if n_valid == n_rows:
        return f"trusted rows (n={n_rows}, validation)"
    return f"trusted rows (n={n_rows}: {n_valid} validation, {n_rows - n_valid} training)"


def _label_agreement(logits: np.ndarray, noisy: np.ndarray) -> float | None:
    """The share of rows with a given label whose label the model predicts; None without such rows."""
    found = noisy_accuracy(torch.as_tensor(logits), torch.as_tensor(noisy))
    return found if np.isfinite(found) else None


def _locates_nothing(estimate: estimates.Estimate) -> bool:
    """A `bound` (near-singular T), or an estimate whose interval is all of [0, 1] (a bound held to the
    run's wrong-label share keeps the bound's interval): its point is not where the accuracy is known to be."""
    return estimate.method == "bound" or (estimate.low <= 0.0 and estimate.high >= 1.0)


def _confidence_target(
    logits: np.ndarray,
    estimate: estimates.Estimate,
    temperature: float = 1.0,
    agreement: float | None = None,
) -> estimates.Estimate:
    """The accuracy a plain model's (or the probe's) confidence follows without trusted rows. Above the
    estimate, its own mean top-label confidence at `temperature` is flattened no further than the top of the
    estimate's interval (left as it is inside it); below the estimate, it is raised to the estimate. The
    plain fine-tune is the baseline a user compares with, and the moment estimate reads a few points low
    where the noise is low, so it lowers the baseline's confidence only as far as its interval insists;
    an under-confident model (a short fine-tune on few rows) it sharpens fully (docs/method.md,
    "Eighteenth round").

    Where T is near-singular the moments only bound the accuracy (agreement +- the wrong-label share:
    `estimates._bound`), and the point inside is an ill-conditioned solve. The confidence then follows the
    model's `agreement` with its noisy labels, the bound's centre, no higher than a held point (an upper
    bound: `estimates.held_to_wrong_share`) (docs/method.md, "Thirty-seventh round"). Without an agreement
    (a carried estimate's interval on the evaluation texts) the point is followed. A held estimate whose
    interval does locate the accuracy is followed to its point too, being that interval's real top
    ("Thirty-eighth round")."""
    if not len(logits) or not np.isfinite(estimate.accuracy):
        return estimate
    if _locates_nothing(estimate):
        if agreement is None:
            return estimate
        point = min(agreement, estimate.accuracy) if estimate.method == estimates.HELD else agreement
        point = float(np.clip(point, estimate.low, estimate.high))
        return estimates.Estimate(point, estimate.low, estimate.high, estimate.method, estimate.rows)
    own = float(_top_confidence(logits, temperature).mean())
    # a held point is the top the wrong-label share allows; the interval above it is the moments' own
    top = estimate.accuracy if estimate.method == estimates.HELD else estimate.high
    point = min(own, top) if own > estimate.accuracy else estimate.accuracy
    return estimates.Estimate(point, estimate.low, estimate.high, estimate.method, estimate.rows)


def _temperature_for(logits: np.ndarray, accuracy: float, current: float = 1.0) -> float:
    """T at which a model's mean top-label confidence on these texts equals its estimated accuracy there;
    `current` where it already does (a `_confidence_target` left inside its interval).

    A reference putting `accuracy` on the model's own top class has exactly that expected accuracy.
    """
    if not len(logits) or not np.isfinite(accuracy):
        return current
    if abs(float(_top_confidence(logits, current).mean()) - accuracy) < 1e-9:
        return current
    n_classes = logits.shape[1]
    reference = np.full(logits.shape, (1 - accuracy) / max(1, n_classes - 1))
    reference[np.arange(len(logits)), logits.argmax(1)] = accuracy
    return fit_temperature(torch.from_numpy(logits), torch.from_numpy(reference))
