"""`calibrate()`: the whole SiDyP run, from noisy labels to refined posteriors and a served model.

Stages (progress stage names in quotes), each a function in `sidyp_engine.stages`:
  "validate"   check inputs, hold out a stratified validation share when none is given;
  "classifier" stage 1, the M-branch ensemble on the noisy labels, recording training dynamics;
  "prior"      stage 2, dynamics noise score -> likely-clean set per class -> k-NN dynamic prior;
  "refiner"    stage 3, the simplex diffusion refiner learns P(y | ỹ, x) from the dynamic prior;
  "posterior"  stage 4, P(y | x) = sum_ỹ P(y | ỹ, x) P(ỹ | x);
  "served"     one classifier distilled from the refined posteriors, temperature-scaled on validation;
  "plain"      the plain fine-tune on the noisy labels (stage 1 with one branch): the fallback;
  "select"     do no harm: the plain noisy-label classifier is delivered instead when the labels are mostly
               right (the noise gate) or trusted rows show it better; trusted rows also refit temperatures;
  "refit"      with trusted rows: the kept model and labels (unless refined) fitted again on every row with the
               trusted labels in place of the given ones (the plain fine-tune, the distillation or the probe),
               delivered in place of the fits they scored.

With `work_dir`, the costly stages are checkpointed there (`sidyp_engine.checkpoints`, keyed by a hash of
the inputs and config) and reused when the same call is repeated, so a re-delivered job resumes.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sidyp_engine import selection
from sidyp_engine.checkpoints import Checkpoints, call_key
from sidyp_engine.classifier import release_memory
from sidyp_engine.device import resolve_device
from sidyp_engine.model import load_tokenizer, resolve_backbone
from sidyp_engine.prior import noise_matrix as estimate_noise_matrix
from sidyp_engine.stages.ensemble import (
    encode_stage1,
    keep_best_branch,
    plain_config,
    refit_plain,
    stage1_decoder,
    train_classifiers,
    train_plain,
)
from sidyp_engine.stages.inputs import Inputs, count_truncated, validate
from sidyp_engine.stages.posterior import Posteriors, compose_posteriors, unlabelled_confidence
from sidyp_engine.stages.prior import dynamic_prior, flag_noise, frozen_embeddings, knn_epoch, split_rows
from sidyp_engine.stages.refine import conditioning, encode_refiner, refiner_decoder, train_refiner
from sidyp_engine.stages.select import (
    Kept,
    Refits,
    linear_probe,
    plain_model,
    select_outputs,
    selection_noise_matrix,
    to_refit,
    with_refits,
)
from sidyp_engine.stages.serve import distill_served, served_codec
from sidyp_engine.stages.trusted import refined_labels_unchecked
from sidyp_engine.types import (
    CalibrationConfig,
    CalibrationResult,
    InvalidInputError,
    Progress,
    ProgressCallback,
    ShouldStop,
)


class _Reporter:
    """Progress events and per-stage wall time."""

    def __init__(self, progress: ProgressCallback | None):
        self.progress = progress
        self.timings: dict[str, float] = {}

    def __call__(self, stage: str, fraction: float, message: str = "", metrics: dict | None = None) -> None:
        if self.progress is not None:
            self.progress(Progress(stage, float(fraction), message, dict(metrics or {})))

    @contextlib.contextmanager
    def timed(self, stage: str):
        started = time.perf_counter()
        yield
        self.timings[stage] = time.perf_counter() - started

    @contextlib.contextmanager
    def stage(self, stage: str, message: str):
        """Time the stage and say it started."""
        with self.timed(stage):
            self(stage, 0.0, message)
            yield


def calibrate(
    train_texts: Sequence[str],
    train_labels: Sequence[str | None],
    classes: Sequence[str],
    valid_texts: Sequence[str] | None = None,
    valid_labels: Sequence[str | None] | None = None,
    extra_texts: Sequence[str] | None = None,
    config: CalibrationConfig | None = None,
    progress: ProgressCallback | None = None,
    should_stop: ShouldStop | None = None,
    work_dir: str | os.PathLike | None = None,
    collect_diagnostics: bool = False,
    trusted_labels: Sequence[str | None] | None = None,
) -> CalibrationResult:
    """Run SiDyP end to end; see the module docstring for the stages and `CalibrationResult` for outputs.

    Labels are class names; None / empty / NaN means the labeller gave no usable answer (kept unknown).
    `should_stop` is polled at least once per batch; when it returns True, `CalibrationStopped` is raised.
    Model selection only ever sees the noisy validation labels. `collect_diagnostics` adds the per-row
    arrays of the intermediate stages to `result.diagnostic_arrays` (for benchmarks and ablations).
    `trusted_labels` (per training row, None = not trusted): labels the user checked; those rows are never
    flagged, their trusted label is the suggestion, they anchor the k-NN prior, no candidate fits them
    (stage 1 and the probe take them unlabelled, the distillation leaves them out), and they measure the
    wrong-label share and the candidates of the "select" stage and refit the temperatures; what is kept is
    then fitted again with their labels in place ("refit").
    """
    started = time.perf_counter()
    cfg = config if config is not None else CalibrationConfig()
    if not isinstance(cfg, CalibrationConfig):
        raise InvalidInputError("config must be a CalibrationConfig")
    report = _Reporter(progress)
    stop = should_stop
    with report.stage("validate", "checking inputs"):
        inputs = validate(cfg, train_texts, train_labels, classes, valid_texts, valid_labels, extra_texts)
        trusted_ids = trusted_label_ids(trusted_labels, inputs)
        setup = _setup(cfg, inputs, work_dir, trusted_ids)
    backbone, encoder, device, ckpt = setup.backbone, setup.encoder, setup.device, setup.checkpoints
    tokenizer = setup.tokenizer
    _report_inputs(report, inputs)

    with report.stage("classifier", "training the classifier ensemble"):
        ens, reused = ckpt.run(
            "stage1",
            lambda: train_classifiers(cfg, inputs, backbone, tokenizer, device, progress, stop, trusted_ids),
            encode_stage1,
            stage1_decoder(backbone, inputs.n_classes, device),
        )
        keep_best_branch(ens)
    message = "reused checkpoint" if reused else f"selected epoch {ens.selected_epoch + 1}"
    report("classifier", 1.0, message, {"selected_epoch": ens.selected_epoch + 1, "reused": float(reused)})

    with report.stage("prior", "scoring label noise"):
        flags = flag_noise(cfg, inputs, ens)
        report("prior", 0.1, "frozen sentence embeddings")
        frozen_rows, _ = ckpt.run(
            "embeddings",
            lambda: frozen_embeddings(cfg, inputs, encoder, device, stop),
            lambda rows: ({"embeddings": rows}, {}),
            lambda tensors, data: tensors["embeddings"],
        )
        frozen = split_rows(inputs, frozen_rows)
        prior = dynamic_prior(cfg, inputs, ens, flags, frozen, report, trusted_ids)
    report("prior", 1.0, f"likely-noisy share {flags.noisy_fraction:.2f}", prior.metrics)

    with report.stage("refiner", "training the label diffusion refiner"):
        cond = conditioning(inputs, ens, frozen)
        refiner, _ = ckpt.run(
            "refiner",
            lambda: train_refiner(cfg, inputs, cond, prior, device, progress, stop),
            encode_refiner,
            refiner_decoder(device),
        )
    report("refiner", 1.0, "refiner ready")

    with report.stage("posterior", "composing P(y | x)"):
        post = compose_posteriors(inputs, ens, refiner, cond, prior, report)
        unchecked = None
        if trusted_ids is not None:  # the select stage scores the refined labels on these (stages/trusted.py)
            report("posterior", 0.8, "refined labels of the trusted rows, as if unchecked")
            unchecked = refined_labels_unchecked(
                cfg, inputs, ens, flags, frozen, cond, trusted_ids, device, stop
            )
    metrics = {"posterior_temperature": post.temperature, "vote_smoothing": post.vote_smoothing}
    report("posterior", 1.0, "posteriors ready", metrics)

    ens.dynamics, cond = {}, None  # no longer needed: free them before the served model trains
    release_memory()
    with report.stage("served", "distilling the served model"):
        served, _ = ckpt.run(
            "served",
            lambda: distill_served(cfg, inputs, ens, backbone, post, device, progress, stop, trusted_ids),
            *served_codec(ckpt.served_dir(), device),
        )
    report("served", 1.0, "served model ready", {"temperature": float(served.temperature)})

    with report.stage("plain", "fine-tuning the plain classifier on the given labels"):
        plain_ens, message = _plain_fine_tune(cfg, inputs, setup, ens, progress, stop, trusted_ids)
    report("plain", 1.0, message)

    with report.stage("select", "estimating the accuracy of each candidate"):
        plain = plain_model(plain_ens, tokenizer, inputs, cfg.max_length, device)
        probe = linear_probe(inputs, frozen, encoder, cfg.max_length, device, cfg.seed, trusted_ids)
        kept = _select(cfg, inputs, ens, plain_ens, post, served, plain, probe, trusted_ids, unchecked)
    report("select", 1.0, kept.selection.reason, {"kept_plain": float(kept.selection.kept_labels == "plain")})

    if trusted_ids is not None:
        with report.stage("refit", "fitting what is kept again, with the trusted labels"):
            kept, reused = _refit_kept(
                cfg, inputs, setup, ens, post, frozen, kept, trusted_ids, progress, stop
            )
        report(
            "refit", 1.0, "reused checkpoint" if reused else "kept classifier fitted with the trusted labels"
        )

    report.timings["total"] = time.perf_counter() - started
    diagnostics = _run_facts(cfg, setup, ens, reused, refiner, prior, post, kept)
    delivered = Posteriors(
        kept.train_posteriors,
        kept.valid_posteriors,
        kept.extra_posteriors,
        post.temperature,
        post.vote_smoothing,
    )
    noisy_extra = plain_ens.noisy_posteriors.get("extra")
    result = _assemble(inputs, delivered, kept.model, report.timings, diagnostics, noisy_extra, trusted_ids)
    if collect_diagnostics:
        result.diagnostic_arrays = _diagnostic_arrays(flags, prior, post)
        result.diagnostic_arrays |= _candidate_arrays(kept, post, served, plain, probe, inputs)
        result.diagnostic_arrays["valid_refined_unlabelled"] = post.valid_unlabelled.numpy()
        if inputs.extra_texts:
            result.diagnostic_arrays["extra_stage1_ensemble"] = ens.noisy_posteriors["extra"].numpy()
    total = report.timings["total"]
    report("done", 1.0, "calibration finished", {"noise_share": result.noise_share, "total_seconds": total})
    return result


def _plain_fine_tune(cfg, inputs, setup, ens, progress, stop, trusted_ids):
    """(the plain fine-tune, progress message): stage 1 itself when its config already is the plain recipe."""
    if plain_config(cfg) == cfg:  # one branch and the plain loss: stage 1 is plain fine-tuning
        return ens, "stage 1 is the plain classifier"
    backbone, device = setup.backbone, setup.device
    plain_ens, reused = setup.checkpoints.run(
        "plain",
        lambda: train_plain(cfg, inputs, backbone, setup.tokenizer, device, progress, stop, trusted_ids),
        encode_stage1,
        stage1_decoder(backbone, inputs.n_classes, device),
    )
    return plain_ens, "reused checkpoint" if reused else "plain classifier ready"


def _refit_kept(
    cfg, inputs, setup, ens, post, frozen, kept, trusted_ids, progress, stop
) -> tuple[Kept, bool]:
    """(kept, reused): what `to_refit` names fitted again on every row with the trusted labels in place."""
    ckpt, device, fitted = setup.checkpoints, setup.device, to_refit(kept.selection)
    refits, reused = Refits(), []
    if selection.PLAIN in fitted or selection.PLAIN_MODEL in fitted:
        refits.plain, was_reused = ckpt.run(
            "refit",
            lambda: refit_plain(
                cfg, inputs, setup.backbone, setup.tokenizer, device, trusted_ids, progress, stop
            ),
            encode_stage1,
            stage1_decoder(setup.backbone, inputs.n_classes, device),
        )
        reused.append(was_reused)
    if selection.SERVED in fitted:
        refits.served, was_reused = ckpt.run(
            "served_refit",
            lambda: distill_served(
                cfg,
                inputs,
                ens,
                setup.backbone,
                post,
                device,
                progress,
                stop,
                trusted_ids,
                trusted_in_place=True,
            ),
            *served_codec(ckpt.served_dir("served_refit"), device),
        )
        reused.append(was_reused)
    if selection.PROBE in fitted:  # a logistic regression on the embeddings: seconds, not checkpointed
        refits.probe = linear_probe(
            inputs,
            frozen,
            setup.encoder,
            cfg.max_length,
            device,
            cfg.seed,
            trusted_ids,
            trusted_in_place=True,
        )
    n_trusted = int((trusted_ids >= 0).sum())
    kept = with_refits(kept, refits, setup.tokenizer, inputs, cfg.max_length, device, n_trusted)
    return kept, bool(reused) and all(reused)


def _select(cfg, inputs, ens, plain_ens, post, served, plain, probe, trusted_ids, unchecked):
    """The do-no-harm choice between the method's outputs, the plain classifier's and the linear probe's;
    `unchecked`: the refined labels of the trusted training rows from re-fits that hid them
    (`refined_labels_unchecked`)."""
    t_matrix = selection_noise_matrix(ens)
    return select_outputs(
        inputs,
        ens,
        plain_ens,
        post,
        served,
        plain,
        t_matrix,
        trusted_ids,
        cfg.seed,
        gold_free_may_switch=cfg.selection == "auto",
        probe_candidate=probe,
        refined_unchecked=unchecked,
    )


def _run_facts(
    cfg: CalibrationConfig, setup: _Setup, ens, reused, refiner, prior, post, kept
) -> dict[str, Any]:
    """What the run chose and found, for the report (JSON-safe, no paths)."""
    return {
        "selected_epoch": ens.selected_epoch + 1,
        "classifier_history": ens.history,
        "reused_stage1": reused,
        "refiner_history": refiner.history,
        "device": str(setup.device),
        "posterior_temperature": post.temperature,
        "vote_smoothing": post.vote_smoothing,
        # per-class weights of the class floor (None: no class was starved)
        "class_floor_weights": None if post.class_weights is None else post.class_weights.tolist(),
        # the floor's further weights on texts read without a label (None: none needed)
        "unlabelled_floor_weights": None
        if post.unlabelled_weights is None
        else post.unlabelled_weights.tolist(),
        "floor_temperature": post.floor_temperature,
        "knn_space": _space_name(cfg, prior.space),
        "texts_truncated": setup.texts_truncated,
        "max_length": cfg.max_length,
        **prior.metrics,
        "selection": kept.selection.as_dict(),
    }


@dataclass
class _Setup:
    backbone: str
    encoder: str
    device: torch.device
    checkpoints: Checkpoints
    tokenizer: Any
    texts_truncated: int


def _setup(
    cfg: CalibrationConfig,
    inputs: Inputs,
    work_dir: str | os.PathLike | None,
    trusted_ids: np.ndarray | None = None,
) -> _Setup:
    """What every stage shares: model dirs, the device, the call's checkpoints and the tokenizer."""
    backbone = resolve_backbone(cfg.backbone)
    encoder = resolve_backbone(cfg.encoder) if cfg.encoder is not None else backbone
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    early = _call_key(inputs, cfg, backbone, encoder, exclude=LATER_STAGE_FIELDS)
    # stage 1 leaves the trusted rows' labels out (stages.inputs.fit_labels): they are part of its key;
    # the frozen embeddings read no label
    stage1 = early
    if trusted_ids is not None and (trusted_ids >= 0).any():
        stage1 = _call_key(inputs, cfg, backbone, encoder, trusted_ids, exclude=LATER_STAGE_FIELDS)
    # the plain fine-tune reads exactly what stage 1 reads
    stage_keys = {"stage1": stage1, "plain": stage1, "refit": stage1, "embeddings": early}
    checkpoints = Checkpoints(work_dir, _call_key(inputs, cfg, backbone, encoder, trusted_ids), stage_keys)
    tokenizer = load_tokenizer(backbone)
    truncated = count_truncated(tokenizer, inputs.texts, cfg.max_length)
    return _Setup(backbone, encoder, device, checkpoints, tokenizer, truncated)


# Settings read only after stage 1 and the frozen embeddings (trusted rows too): changing them reuses both.
# A field not listed counts as early, so a new setting can only cost a recomputation, never a stale reuse.
LATER_STAGE_FIELDS = frozenset(
    {"k", "noise_fraction", "knn_space", "noise_model", "diffusion_epochs", "selection"}
)


def _call_key(
    inputs: Inputs,
    cfg: CalibrationConfig,
    backbone: str,
    encoder: str,
    trusted_ids: np.ndarray | None = None,
    exclude: frozenset[str] = frozenset(),
) -> str:
    # the same parts as checkpoint format 1 has always hashed: existing work dirs stay resumable
    parts = {
        "train": [inputs.texts, inputs.ids.tolist()],
        "valid": [inputs.valid_texts, inputs.valid_ids.tolist()],
        "extra": inputs.extra_texts,
        "classes": inputs.classes,
        "config": cfg.model_dump(mode="json", exclude={"device"} | exclude),
        "backbone": backbone,
        "encoder": encoder,
    }
    if trusted_ids is not None and (trusted_ids >= 0).any():  # they change the prior and the served model
        parts["trusted"] = trusted_ids.tolist()
    return call_key(parts)


def _space_name(cfg: CalibrationConfig, space: str) -> str:
    """The k-NN space by what it is, never by a directory (diagnostics reach tenants)."""
    if space == "stage1":
        return f"stage1-epoch-{knn_epoch(cfg.epochs) + 1}"
    return "encoder:backbone" if cfg.encoder is None else "encoder:configured"


def _report_inputs(report: _Reporter, inputs: Inputs) -> None:
    n_train, n_valid, n_extra = len(inputs.train_texts), len(inputs.valid_texts), len(inputs.extra_texts)
    message = f"{n_train} training, {n_valid} validation, {n_extra} extra texts"
    report("validate", 1.0, message, {"n_train": n_train, "n_valid": n_valid, "n_extra": n_extra})


def _assemble(
    inputs: Inputs,
    post: Posteriors,
    served: Any,
    timings: dict[str, float],
    diagnostics: dict[str, Any],
    extra_noisy: torch.Tensor | None,
    trusted_ids: np.ndarray | None = None,
) -> CalibrationResult:
    """The result, in the caller's training row order (held-out rows get their validation outputs)."""
    ids, names = inputs.ids, inputs.classes
    posteriors = np.zeros((len(inputs.texts), len(names)), dtype=np.float32)
    posteriors[inputs.fit_rows] = post.train.numpy()
    if inputs.is_validation.any():
        posteriors[np.flatnonzero(inputs.is_validation)] = post.valid.numpy()
    labelled = ids >= 0
    quality = np.zeros(len(ids), dtype=np.float32)
    quality[labelled] = posteriors[labelled, ids[labelled]]
    suggested = posteriors.argmax(axis=1)
    is_issue = labelled & (suggested != ids)
    if trusted_ids is not None:  # the user checked these rows: never flagged, their label is the answer
        known = trusted_ids >= 0
        suggested, is_issue = np.where(known, trusted_ids, suggested), is_issue & ~known
    # noise_share: the share of wrong labels the noise gate read. Measured on the trusted rows when there
    # are any (the LLM labels' accuracy in the report is its complement). Else the expectation, over
    # labelled rows, of 1 - P(y = given | x) under the method's refined posteriors, also when the plain
    # classifier is kept: its in-sample P(ỹ = given) would call nearly every label right. The expectation
    # rather than the flagged share, because flags only count rows where another class wins.
    chosen = diagnostics.get("selection") or {}
    measured = chosen.get("noise_share") or {}
    noise_share = float((1.0 - quality[labelled]).mean()) if labelled.any() else 0.0
    if measured.get("method") == "trusted":
        noise_share = float(measured["accuracy"])
    elif chosen.get("method_noise_share") is not None:
        noise_share = float(chosen["method_noise_share"])
    diagnostics["flagged_share"] = float(is_issue[labelled].mean()) if labelled.any() else 0.0
    return CalibrationResult(
        classes=names,
        given_labels=[names[i] if i >= 0 else None for i in ids],
        suggested_labels=[names[i] for i in suggested],
        label_quality=quality,
        is_label_issue=is_issue,
        posteriors=posteriors,
        is_validation=inputs.is_validation,
        noise_matrix=estimate_noise_matrix(posteriors, ids, len(names)),
        noise_share=noise_share,
        extra_posteriors=None if post.extra is None else post.extra.numpy(),
        extra_noisy_posteriors=None if not inputs.extra_texts else extra_noisy.numpy(),
        model=served,
        timings=timings,
        diagnostics=diagnostics,
    )


def trusted_label_ids(trusted_labels: Sequence[str | None] | None, inputs: Inputs) -> np.ndarray | None:
    """Trusted label ids per caller's training row (-1 = not trusted); a name outside the classes is an error."""
    if trusted_labels is None:
        return None
    if len(trusted_labels) != len(inputs.texts):
        raise InvalidInputError(
            f"trusted_labels has {len(trusted_labels)} entries for {len(inputs.texts)} training rows"
        )
    index = {c: i for i, c in enumerate(inputs.classes)}
    bad = [i for i, t in enumerate(trusted_labels) if t is not None and t not in index]
    if bad:
        raise InvalidInputError("trusted label is not one of the classes", rows=bad, column="trusted_label")
    return np.array([index[t] if t is not None else -1 for t in trusted_labels], dtype=np.int64)


def _candidate_arrays(
    kept: Kept, post: Posteriors, served, plain, probe, inputs: Inputs
) -> dict[str, np.ndarray]:
    """Every candidate's validation predictions and extra-text probabilities (benchmarks score them all)."""
    arrays = {f"valid_pred_{name}": pred for name, pred in kept.valid_predictions.items()}
    arrays["selection_noise_matrix"] = kept.noise_matrix
    arrays["valid_noisy_posteriors"] = kept.valid_noisy_posteriors
    arrays |= {f"valid_logits_{name}": logits for name, logits in kept.valid_logits.items()}
    if kept.trusted_rows is not None:  # what the trusted temperature fit reads (validation rows first)
        rows = kept.trusted_rows
        arrays |= {f"trusted_logits_{name}": logits for name, logits in rows.logits.items()}
        arrays["trusted_labels"] = rows.trusted
        arrays["trusted_n_valid"] = np.array(rows.n_valid)
        if rows.refined_unlabelled is not None:
            arrays["trusted_refined_unlabelled_labels"] = rows.refined_unlabelled[0]
            arrays["trusted_refined_unlabelled_confidence"] = rows.refined_unlabelled[1]
    # the refined posteriors' calibrated top-label confidence on texts read without a label
    arrays["valid_refined_unlabelled_confidence"] = unlabelled_confidence(post.valid_unlabelled, post)
    arrays["train_refined_posteriors"] = post.train.numpy()
    if kept.selection.refit is not None:  # the delivered model, fitted with the trusted labels
        arrays["valid_logits_refit_model"] = kept.model.logits(inputs.valid_texts)
    if inputs.extra_texts:
        arrays["extra_refined_posteriors"] = post.extra.numpy()
        arrays["extra_refined_confidence"] = unlabelled_confidence(post.extra, post)
        arrays["extra_served"] = served.predict_proba(inputs.extra_texts)
        arrays["extra_plain_model"] = plain.predict_proba(inputs.extra_texts)
        # the probe's own embeddings of the extra texts, at the temperature the select stage set
        logits = torch.from_numpy(probe.extra_logits)
        arrays["extra_probe"] = torch.softmax(logits / probe.model.temperature, dim=-1).numpy()
    return arrays


def _diagnostic_arrays(flags, prior, post: Posteriors) -> dict[str, np.ndarray]:
    arrays = {
        "noise_scores": flags.scores.numpy(),
        "likely_noisy": flags.likely_noisy.numpy(),
        "valid_posteriors": post.valid.numpy(),
        # the class floor's read-out, so research can recover the calibrated posteriors (`unfloored`)
        "class_floor_weights": (
            np.ones(post.train.shape[1]) if post.class_weights is None else post.class_weights.numpy()
        ),
        "unlabelled_floor_weights": (
            np.ones(post.train.shape[1])
            if post.unlabelled_weights is None
            else post.unlabelled_weights.numpy()
        ),
        "floor_temperature": np.array(post.floor_temperature),
    }
    if prior.extra is not None:
        arrays["extra_prior"] = prior.extra.probs.numpy()
        arrays["extra_vote_prior"] = prior.vote_extra.probs.numpy()
    return arrays
