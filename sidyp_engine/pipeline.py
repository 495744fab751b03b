"""`calibrate()`: the whole SiDyP run, from noisy labels to refined posteriors and a served model.

Stages (progress stage names in quotes):
  "validate"   check inputs, hold out a stratified validation share when none is given;
  "classifier" stage 1, the M-branch ensemble on the noisy labels, recording training dynamics;
  "prior"      stage 2, dynamics noise score -> likely-clean set per class -> k-NN dynamic prior;
  "refiner"    stage 3, the simplex diffusion refiner learns P(y | ỹ, x) from the dynamic prior;
  "posterior"  stage 4, P(y | x) = sum_ỹ P(y | ỹ, x) P(ỹ | x);
  "served"     one classifier distilled from the refined posteriors, temperature-scaled on validation.

With `work_dir`, finished stages are checkpointed there (safetensors + JSON, keyed by a hash of the
inputs and config) and reused when the same call is repeated, so a re-delivered job resumes.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sidyp_engine.classifier import (
    EnsembleOutput,
    embed_texts,
    noisy_accuracy,
    release_memory,
    train_ensemble,
)
from sidyp_engine.data import MISSING, stratified_holdout, validate_inputs, validate_texts
from sidyp_engine.model import TextClassifier, load_tokenizer, resolve_backbone, select_device
from sidyp_engine.noise import noise_scores, select_likely_noisy
from sidyp_engine.prior import (
    PriorOutput,
    candidate_sets,
    fit_vote_smoothing,
    knn_prior,
    noise_model_prior,
)
from sidyp_engine.prior import noise_matrix as estimate_noise_matrix
from sidyp_engine.temperature import apply_temperature, fit_temperature, probs_to_logits
from sidyp_engine.types import (
    CalibrationConfig,
    CalibrationResult,
    InvalidInputError,
    Progress,
    ProgressCallback,
    ShouldStop,
)

CHECKPOINT_FORMAT = 1


# ---------------------------------------------------------------------------------------------- checkpoints
class _Checkpoints:
    """Stage results in `work_dir`, valid only for the call whose inputs hash to `key`."""

    def __init__(self, work_dir: str | os.PathLike | None, key: str):
        self.dir = Path(work_dir) if work_dir is not None else None
        self.key = key
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)

    def _meta_path(self, stage: str) -> Path:
        assert self.dir is not None
        return self.dir / f"{stage}.json"

    def load(self, stage: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        if self.dir is None:
            return None
        meta_path, tensor_path = self._meta_path(stage), self.dir / f"{stage}.safetensors"
        if not (meta_path.is_file() and tensor_path.is_file()):
            return None
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if meta.get("key") != self.key or meta.get("format") != CHECKPOINT_FORMAT:
            return None
        from safetensors.torch import load_file

        return load_file(str(tensor_path)), meta.get("data", {})

    def save(self, stage: str, tensors: dict[str, torch.Tensor], data: dict[str, Any]) -> None:
        if self.dir is None:
            return
        from safetensors.torch import save_file

        tensor_path = self.dir / f"{stage}.safetensors"
        tmp = tensor_path.with_suffix(".safetensors.tmp")
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
        os.replace(tmp, tensor_path)
        # the JSON is written last: a stage counts as done only once its metadata names the key
        meta_tmp = self._meta_path(stage).with_suffix(".json.tmp")
        meta_tmp.write_text(json.dumps({"key": self.key, "format": CHECKPOINT_FORMAT, "data": data}))
        os.replace(meta_tmp, self._meta_path(stage))

    def served_dir(self) -> Path | None:
        return None if self.dir is None else self.dir / "served"


def _call_key(parts: dict[str, Any]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(parts, sort_keys=True, default=str).encode())
    return h.hexdigest()[:32]


# ---------------------------------------------------------------------------------------------- helpers
def knn_epoch(epochs: int) -> int:
    """0-based stage-1 epoch whose embeddings are the default k-NN space: the middle one (epoch 2 of 4)."""
    return max(0, (epochs - 1) // 2)


# Neighbours of the k-NN prior when config.k is None. The stage-1 space clusters tightly by class, so a
# few neighbours suffice; in a frozen space the neighbours of an example mix its class with mislabelled
# ones and the balanced vote needs more of them to be stable (trec-weak-vote, prior test accuracy in the
# frozen space: k = 10 0.52, 25 0.62, 50 0.68, 100 0.72; refined posterior 0.64 / 0.65 / 0.69 / 0.69).
DEFAULT_K = {"stage1": 10, "encoder": 50}
# "auto" k-NN space: the frozen encoder's once the classifiers agree with this share of held-out noisy
# labels. Measured: trec-weak-vote (keyword-rule votes) 0.99, semeval-mixtral-fewshot (LLM) 0.59; no
# classifier matches an LLM's or a person's labels on unseen texts that often unless the labels are a rule.
LABEL_RULE_AGREEMENT = 0.9


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


def use_noise_model(noise_model: str, agreement: float) -> bool:
    """Whether the k-NN prior is refined by the class-conditional noise model (config.noise_model).

    'auto' leaves it off for rule-like labels: keyword rules err by what the text contains, not by
    the true class, so one noise row per true class does not describe them. Measured on
    trec-weak-vote (frozen space, k = 50, a first version that also re-estimated the class prior): the
    EM prior fell below the balanced vote's 0.68 at once (0.50 after one iteration) and collapsed onto
    one class after ten (0.13). The current version (class prior fixed) was not measured there.
    """
    if noise_model != "auto":
        return noise_model == "on"
    return not labels_are_rule(agreement)


def refined_posterior(
    transition: torch.Tensor, noisy_posterior: torch.Tensor, noisy: torch.Tensor
) -> torch.Tensor:
    """P(y | x) for rows of known provenance.

    Rows with a noisy label condition on it: P(y | x, ỹ = given) is the transition row of the label the
    labeller actually gave, which is the Bayes posterior once ỹ is observed. Rows without one (missing
    label, extra texts) marginalise over ỹ with the classifier's P(ỹ | x): sum_j P(ỹ = j | x) P(y | ỹ = j, x).
    """
    from sidyp_engine.diffusion import compose_posterior

    out = compose_posterior(noisy_posterior, transition)
    labelled = noisy >= 0
    if labelled.any():
        rows = torch.nonzero(labelled).flatten()
        given = transition[rows, noisy[rows]]
        out[rows] = given / given.sum(dim=1, keepdim=True).clamp_min(1e-12)
    return out


class _Reporter:
    def __init__(self, progress: ProgressCallback | None):
        self.progress = progress

    def __call__(self, stage: str, fraction: float, message: str = "", metrics: dict | None = None) -> None:
        if self.progress is not None:
            self.progress(Progress(stage, float(fraction), message, dict(metrics or {})))


def train_stage1(
    cfg: CalibrationConfig,
    backbone: str,
    tokenizer,
    train: tuple[Sequence[str], torch.Tensor],
    valid: tuple[Sequence[str], torch.Tensor],
    extra_texts: Sequence[str],
    n_classes: int,
    device: torch.device,
    progress: ProgressCallback | None = None,
    should_stop: ShouldStop | None = None,
) -> EnsembleOutput:
    """Stage 1 as `calibrate` runs it for `cfg`: (texts, int64 label ids) for train and validation."""
    return train_ensemble(
        backbone,
        tokenizer,
        train[0],
        train[1],
        valid[0],
        valid[1],
        extra_texts,
        n_classes,
        branches=cfg.branches,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        max_length=cfg.max_length,
        seed=cfg.seed,
        device=device,
        progress=progress,
        should_stop=should_stop,
        class_balanced=cfg.class_balanced,
    )


# ---------------------------------------------------------------------------------------------- calibrate
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
) -> CalibrationResult:
    """Run SiDyP end to end; see the module docstring for the stages and `CalibrationResult` for outputs.

    Labels are class names; None / empty / NaN means the labeller gave no usable answer (kept unknown).
    `should_stop` is polled at least once per batch; when it returns True, `CalibrationStopped` is raised.
    Model selection only ever sees the noisy validation labels.
    """
    from sidyp_engine.diffusion import DiffusionRefiner, RefinerConfig, refiner_conditioning
    from sidyp_engine.served import ServedClassifier

    started = time.perf_counter()
    timings: dict[str, float] = {}
    report = _Reporter(progress)
    cfg = config if config is not None else CalibrationConfig()
    if not isinstance(cfg, CalibrationConfig):
        raise InvalidInputError("config must be a CalibrationConfig")

    # ------------------------------------------------------------------ validate
    t = time.perf_counter()
    report("validate", 0.0, "checking inputs")
    texts, ids, class_names = validate_inputs(train_texts, train_labels, classes, what="train")
    n_classes = len(class_names)
    if (valid_texts is None) != (valid_labels is None):
        raise InvalidInputError("pass both valid_texts and valid_labels, or neither")
    if valid_texts is not None:
        v_texts, v_ids, _ = validate_inputs(
            valid_texts, valid_labels, class_names, what="validation", min_trainable_classes=0
        )
        is_validation = np.zeros(len(texts), dtype=bool)
        fit_rows = np.arange(len(texts))
        tr_texts, tr_ids = texts, ids
    else:
        is_validation = stratified_holdout(ids, cfg.valid_fraction, cfg.seed)
        fit_rows = np.flatnonzero(~is_validation)
        hold_rows = np.flatnonzero(is_validation)
        tr_texts, tr_ids = [texts[i] for i in fit_rows], ids[fit_rows]
        v_texts, v_ids = [texts[i] for i in hold_rows], ids[hold_rows]
        # the holdout may take rows a small class needed: re-check what is left is still trainable
        try:
            validate_inputs(tr_texts, [class_names[i] if i >= 0 else None for i in tr_ids], class_names)
        except InvalidInputError as err:
            raise InvalidInputError(
                f"{err.message} after holding out {int(is_validation.sum())} validation rows; "
                "add examples or pass a validation set",
                rows=[int(fit_rows[r]) for r in err.rows],  # back to the caller's row numbers
                column=err.column,
            ) from None
    x_texts = validate_texts(extra_texts, "extra") if extra_texts is not None and len(extra_texts) else []
    backbone = resolve_backbone(cfg.backbone)
    encoder = resolve_backbone(cfg.encoder) if cfg.encoder is not None else backbone
    device = select_device(cfg.device)
    torch.manual_seed(cfg.seed)
    key = _call_key(
        {
            "train": [texts, ids.tolist()],
            "valid": [v_texts, v_ids.tolist()],
            "extra": x_texts,
            "classes": class_names,
            "config": cfg.model_dump(mode="json", exclude={"device"}),
            "backbone": backbone,
            "encoder": encoder,
        }
    )
    ckpt = _Checkpoints(work_dir, key)
    y_train = torch.from_numpy(tr_ids)
    y_valid = torch.from_numpy(v_ids)
    tokenizer = load_tokenizer(backbone)
    timings["validate"] = time.perf_counter() - t
    report(
        "validate",
        1.0,
        f"{len(tr_texts)} training, {len(v_texts)} validation, {len(x_texts)} extra texts",
        {"n_train": len(tr_texts), "n_valid": len(v_texts), "n_extra": len(x_texts)},
    )

    # ------------------------------------------------------------------ stage 1: classifier ensemble
    t = time.perf_counter()
    report("classifier", 0.0, "training the classifier ensemble")
    ens = _load_stage1(ckpt, backbone, n_classes, device)
    reused_stage1 = ens is not None
    if ens is None:
        ens = train_stage1(
            cfg,
            backbone,
            tokenizer,
            (tr_texts, y_train),
            (v_texts, y_valid),
            x_texts,
            n_classes,
            device,
            progress,
            should_stop,
        )
        _save_stage1(ckpt, ens)
    # Only the best branch is used from here on (it seeds the served model); the dynamics and noisy
    # posteriors carry the rest. Freeing the others now keeps them out of the frozen-embedding pass.
    ens.models = ens.models[:1]
    release_memory()
    timings["classifier"] = time.perf_counter() - t
    report(
        "classifier",
        1.0,
        "reused checkpoint" if reused_stage1 else f"selected epoch {ens.selected_epoch + 1}",
        {"selected_epoch": ens.selected_epoch + 1, "reused": float(reused_stage1)},
    )

    # ------------------------------------------------------------------ stage 2: noise score + dynamic prior
    t = time.perf_counter()
    report("prior", 0.0, "scoring label noise")
    scores = noise_scores(ens.dynamics["train"], y_train)
    likely_noisy, noisy_fraction = select_likely_noisy(scores, y_train, cfg.noise_fraction)
    clean = (~likely_noisy) & (y_train >= 0)
    n_tr, n_v = len(tr_texts), len(v_texts)
    # Frozen sentence embeddings: the start of every example's trajectory (what the encoder knew before
    # it saw a noisy label). The refiner is always conditioned on them; the k-NN prior may use them too.
    report("prior", 0.1, "frozen sentence embeddings")
    emb = ckpt.load("embeddings")
    if emb is not None:
        frozen_all = emb[0]["embeddings"]
    else:
        frozen_all = embed_texts(
            encoder,
            load_tokenizer(encoder),
            tr_texts + v_texts + x_texts,
            cfg.max_length,
            device,
            should_stop,
        )
        ckpt.save("embeddings", {"embeddings": frozen_all}, {})
    frozen = {
        "train": frozen_all[:n_tr],
        "valid": frozen_all[n_tr : n_tr + n_v],
        "extra": frozen_all[n_tr + n_v :],
    }
    label_rule_agreement = held_out_agreement(ens.noisy_posteriors.get("valid"), y_valid)
    space = choose_knn_space(cfg.knn_space, label_rule_agreement)
    k = cfg.k if cfg.k is not None else DEFAULT_K[space]
    if space == "stage1":
        # The ensemble's own representation half-way through stage 1 (mean over branches): adapted to the
        # task, unlike frozen sentence embeddings, but taken before the late epochs in which the encoder
        # memorises the noisy labels of its training texts. Measured on semeval-mixtral-fewshot: test
        # accuracy of the k-NN prior 0.52 vs 0.43 from frozen MiniLM (k = 10).
        knn_emb = {
            s: ens.dynamics[s][:, :, knn_epoch(cfg.epochs)].mean(0) for s in ("train", "valid", "extra")
        }
    else:
        # The classifiers reproduce the held-out noisy labels almost perfectly: the labels are a rule the
        # fine-tuned space has learnt, so its neighbours share the labeller's answer whatever the truth.
        # Measured on trec-weak-vote (keyword rules): prior test accuracy 0.61 in the stage-1 space vs
        # 0.68 in the frozen one (k = 50), refined posterior 0.61 vs 0.69.
        knn_emb = frozen
    report("prior", 0.3, f"k-NN prior (k = {k}) in the {space} space")
    prior_train = knn_prior(knn_emb["train"], y_train, clean, n_classes, k)
    prior_valid = knn_prior(
        knn_emb["train"], y_train, clean, n_classes, k, queries=knn_emb["valid"], query_noisy=y_valid
    )
    prior_extra = (
        knn_prior(knn_emb["train"], y_train, clean, n_classes, k, queries=knn_emb["extra"])
        if len(x_texts)
        else None
    )
    vote_prior_extra = prior_extra
    noise_model_on = use_noise_model(cfg.noise_model, label_rule_agreement)
    if noise_model_on:
        report("prior", 0.6, "noise-model EM over the neighbours' labels")
        query_sets = [knn_emb["valid"]] + ([knn_emb["extra"]] if len(x_texts) else [])
        fitted = noise_model_prior(
            knn_emb["train"], y_train, prior_train.probs, n_classes, k, queries=query_sets
        )
        prior_train = PriorOutput(fitted.train, *candidate_sets(fitted.train, y_train >= 0))
        prior_valid = PriorOutput(fitted.queries[0], *candidate_sets(fitted.queries[0], y_valid >= 0))
        if len(x_texts):
            prior_extra = PriorOutput(fitted.queries[1], *candidate_sets(fitted.queries[1]))
    timings["prior"] = time.perf_counter() - t
    prior_metrics = {
        "noise_model": float(noise_model_on),
        "noisy_fraction": noisy_fraction,
        "k": float(k),
        "held_out_label_agreement": label_rule_agreement,
        "clean_set_size": float(clean.sum()),
        "certain_share": float(prior_train.certain.float().mean()),
        "prior_agrees_with_label": float(
            (prior_train.probs.argmax(1)[y_train >= 0] == y_train[y_train >= 0]).float().mean()
        )
        if (y_train >= 0).any()
        else float("nan"),
    }
    report("prior", 1.0, f"likely-noisy share {noisy_fraction:.2f}", prior_metrics)

    # ------------------------------------------------------------------ stage 3: diffusion refiner
    t = time.perf_counter()
    report("refiner", 0.0, "training the label diffusion refiner")
    cond_train = refiner_conditioning(ens.dynamics["train"], frozen["train"])
    cond_valid = refiner_conditioning(ens.dynamics["valid"], frozen["valid"])
    cond_extra = refiner_conditioning(ens.dynamics["extra"], frozen["extra"]) if len(x_texts) else None
    refiner_cfg = RefinerConfig(
        epochs=cfg.diffusion_epochs, branches=cfg.branches, seed=cfg.seed, device=str(device.type)
    )
    stored = ckpt.load("refiner")
    refiner_history: dict = {}
    if stored is not None:
        refiner = DiffusionRefiner.from_state_dict(stored[0], stored[1]["metadata"], device=str(device.type))
        refiner_history = stored[1].get("history", {})
    else:
        refiner = DiffusionRefiner(refiner_cfg)
        refiner_history = refiner.fit(
            cond_train,
            y_train,
            prior_train.probs,
            prior_train.candidates,
            prior_train.certain,
            valid=(cond_valid, y_valid, prior_valid.probs) if n_v else None,
            progress=progress,
            should_stop=should_stop,
        )
        ckpt.save(
            "refiner", refiner.state_dict(), {"metadata": refiner.metadata(), "history": refiner_history}
        )
    timings["refiner"] = time.perf_counter() - t
    report("refiner", 1.0, "refiner ready")

    # ------------------------------------------------------------------ stage 4: posterior
    t = time.perf_counter()
    report("posterior", 0.0, "composing P(y | x)")
    post_train = refined_posterior(refiner.transition(cond_train), ens.noisy_posteriors["train"], y_train)
    report("posterior", 0.5, "validation and extra texts")
    post_valid = (
        refined_posterior(refiner.transition(cond_valid), ens.noisy_posteriors["valid"], y_valid)
        if n_v
        else torch.zeros(0, n_classes)
    )
    post_extra = None
    if cond_extra is not None:
        # extra texts have no label: marginalise over the classifier's P(ỹ | x)
        no_label = torch.full((len(x_texts),), MISSING, dtype=torch.long)
        post_extra = refined_posterior(
            refiner.transition(cond_extra), ens.noisy_posteriors["extra"], no_label
        )
    # Calibration without gold labels: the refiner reproduces the confidence of its prior's targets,
    # which is too high. One temperature on the posteriors (argmax unchanged) is fitted on the validation
    # texts so that their mean confidence equals the accuracy their priors expect of the refined argmax
    # (sidyp_engine.temperature); the priors are first smoothed to match how well they predict the noisy
    # validation labels (through the noise matrix when the prior is the noise model's, over true classes).
    vote_smoothing = 0.0
    temperature = 1.0
    if n_v and (y_valid >= 0).any():
        channel = fitted.noise_matrix if noise_model_on else None
        vote_smoothing = fit_vote_smoothing(prior_valid.probs, y_valid, channel)
        target = (1 - vote_smoothing) * prior_valid.probs + vote_smoothing / n_classes
        temperature = fit_temperature(probs_to_logits(post_valid), target)
        post_train, post_valid = (
            apply_temperature(probs_to_logits(post_train), temperature).float(),
            apply_temperature(probs_to_logits(post_valid), temperature).float(),
        )
        if post_extra is not None:
            post_extra = apply_temperature(probs_to_logits(post_extra), temperature).float()
    timings["posterior"] = time.perf_counter() - t
    report(
        "posterior",
        1.0,
        "posteriors ready",
        {"posterior_temperature": temperature, "vote_smoothing": vote_smoothing},
    )

    # ------------------------------------------------------------------ served model
    t = time.perf_counter()
    # the dynamics are no longer needed: free them before the served model trains
    ens.dynamics = {}
    del cond_train, cond_valid, cond_extra
    release_memory()
    report("served", 0.0, "distilling the served model")
    served = None
    served_dir = ckpt.served_dir()
    served_marker = ckpt.load("served")
    if served_marker is not None and served_dir is not None and served_dir.is_dir():
        served = ServedClassifier.load(served_dir, device=str(device.type))
    if served is None:
        served = ServedClassifier.distill(
            ens.models[0],
            backbone,
            class_names,
            tr_texts,
            post_train,
            v_texts if n_v else None,
            post_valid if n_v else None,
            config=cfg,
            progress=progress,
            should_stop=should_stop,
        )
        if served_dir is not None:
            served.save(served_dir)
            ckpt.save("served", {"done": torch.ones(1)}, {})
    timings["served"] = time.perf_counter() - t
    report("served", 1.0, "served model ready", {"temperature": float(served.temperature)})

    # ------------------------------------------------------------------ assemble, in training input order
    n = len(texts)
    posteriors = np.zeros((n, n_classes), dtype=np.float32)
    posteriors[fit_rows] = post_train.numpy()
    if valid_texts is None and n_v:
        posteriors[np.flatnonzero(is_validation)] = post_valid.numpy()
    labelled = ids >= 0
    quality = np.zeros(n, dtype=np.float32)
    quality[labelled] = posteriors[labelled, ids[labelled]]
    suggested = posteriors.argmax(axis=1)
    is_issue = labelled & (suggested != ids)
    # noise_share: expected share of wrong labels, mean over labelled rows of 1 - P(y = given | x). The
    # expectation rather than the flagged share, because flags only count rows where another class wins.
    noise_share = float((1.0 - quality[labelled]).mean()) if labelled.any() else 0.0
    noise_matrix = estimate_noise_matrix(posteriors, ids, n_classes)
    given = [class_names[i] if i >= 0 else None for i in ids]

    timings["total"] = time.perf_counter() - started
    diagnostics: dict[str, Any] = {
        "selected_epoch": ens.selected_epoch + 1,
        "classifier_history": ens.history,
        "reused_stage1": reused_stage1,
        "noise_scores": scores.numpy(),
        "likely_noisy": likely_noisy.numpy(),
        "refiner_history": refiner_history,
        "device": str(device),
        "posterior_temperature": temperature,
        "vote_smoothing": vote_smoothing,
        "knn_space": f"stage1-epoch-{knn_epoch(cfg.epochs) + 1}"
        if space == "stage1"
        else f"encoder:{encoder}",
        "flagged_share": float(is_issue[labelled].mean()) if labelled.any() else 0.0,
        **prior_metrics,
    }
    if prior_extra is not None:
        diagnostics["extra_prior"] = prior_extra.probs.numpy()
        diagnostics["extra_vote_prior"] = vote_prior_extra.probs.numpy()
    diagnostics["valid_posteriors"] = post_valid.numpy()
    report(
        "done", 1.0, "calibration finished", {"noise_share": noise_share, "total_seconds": timings["total"]}
    )
    return CalibrationResult(
        classes=class_names,
        given_labels=given,
        suggested_labels=[class_names[i] for i in suggested],
        label_quality=quality,
        is_label_issue=is_issue,
        posteriors=posteriors,
        is_validation=is_validation,
        noise_matrix=noise_matrix,
        noise_share=noise_share,
        extra_posteriors=None if post_extra is None else post_extra.numpy(),
        extra_noisy_posteriors=None if not len(x_texts) else ens.noisy_posteriors["extra"].numpy(),
        model=served,
        timings=timings,
        diagnostics=diagnostics,
    )


# ---------------------------------------------------------------------------------------------- stage 1 I/O
def _save_stage1(ckpt: _Checkpoints, ens: EnsembleOutput) -> None:
    if ckpt.dir is None:
        return
    tensors = {f"dynamics.{k}": v for k, v in ens.dynamics.items()}
    tensors |= {f"noisy_posteriors.{k}": v for k, v in ens.noisy_posteriors.items()}
    # only the best branch is kept: it is what the served model starts from; the dynamics carry the rest
    tensors |= {f"model.{k}": v for k, v in ens.models[0].state_dict().items()}
    ckpt.save("stage1", tensors, {"selected_epoch": ens.selected_epoch, "history": ens.history})


def _load_stage1(
    ckpt: _Checkpoints, backbone: str, n_classes: int, device: torch.device
) -> EnsembleOutput | None:
    stored = ckpt.load("stage1")
    if stored is None:
        return None
    tensors, data = stored
    model = TextClassifier(backbone, n_classes, pretrained=False)
    model.load_state_dict({k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")})
    # as in a fresh stage 1 (see classifier.py): the served model then trains the same parameters
    model.backbone.get_input_embeddings().weight.requires_grad_(False)
    model.to(device).eval()
    return EnsembleOutput(
        models=[model],
        dynamics={k[len("dynamics.") :]: v for k, v in tensors.items() if k.startswith("dynamics.")},
        noisy_posteriors={
            k[len("noisy_posteriors.") :]: v for k, v in tensors.items() if k.startswith("noisy_posteriors.")
        },
        selected_epoch=int(data["selected_epoch"]),
        history=list(data.get("history", [])),
    )
