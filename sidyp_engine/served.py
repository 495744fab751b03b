"""The deployable model: one classifier distilled onto the refined posteriors, then temperature-scaled.

Texts unseen during training have no training dynamics, so the refiner cannot score them; instead a
single classifier of the same backbone, started from a stage-1 model (it already knows the task), is
trained for an epoch or two on the refined posteriors of the training set as soft targets. Its
temperature is then fitted on the validation texts against *their refined posteriors* (its mean confidence
set to the accuracy they expect of its predictions, `sidyp_engine.temperature`): fitting it to the raw noisy
labels would calibrate it to the labeller's noise.

On disk (safetensors + JSON only, never pickle): `model.safetensors` (encoder + head weights),
`config.json` (the encoder's Hugging Face config), the tokenizer files, and `sidyp_served.json`
(class names, temperature, max_length, versions).
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import torch
import torch.nn.functional as F

from sidyp_engine.bert_inference import BertEncoder, FastTokenizer
from sidyp_engine.classifier import micro_batches
from sidyp_engine.device import resolve_device, seeded_rng
from sidyp_engine.model import (
    TextClassifier,
    autocast_context,
    encode_texts,
    length_bucketed_batches,
    load_tokenizer,
    move_batch,
    resolve_backbone,
)
from sidyp_engine.temperature import fit_temperature
from sidyp_engine.types import (
    CalibrationConfig,
    CalibrationStopped,
    InvalidInputError,
    Progress,
    ProgressCallback,
    ShouldStop,
)

WEIGHTS_FILE = "model.safetensors"
META_FILE = "sidyp_served.json"
FORMAT_VERSION = 1
# the distillation's random streams (batch order, dropout, a new head) start here, apart from stage 1's
DISTILL_SEED_OFFSET = 7919


def _versions() -> dict[str, str]:
    import transformers

    try:
        from importlib.metadata import version

        sidyp_version = version("sidyp")
    except Exception:  # not installed as a package (running from a checkout)
        sidyp_version = "unknown"
    return {"sidyp": sidyp_version, "torch": torch.__version__, "transformers": transformers.__version__}


def _as_float_tensor(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float32))


class ServedClassifier:
    """A temperature-scaled text classifier over fixed class names; `predict_proba` gives P(y | x)."""

    def __init__(
        self,
        model: TextClassifier,
        tokenizer,
        classes: Sequence[str],
        temperature: float = 1.0,
        max_length: int = 128,
        device: torch.device | str = "cpu",
        meta: dict | None = None,
    ):
        if model.n_classes != len(classes):
            raise InvalidInputError(
                f"model has {model.n_classes} outputs but {len(classes)} classes were given"
            )
        if not temperature > 0:
            raise ValueError("temperature must be positive")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.classes = list(classes)
        self.temperature = float(temperature)
        self.max_length = int(max_length)
        self.meta = dict(meta or {})

    # ------------------------------------------------------------------ inference
    @torch.inference_mode()
    def logits(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Untempered logits [n, C] in input order."""
        out = np.zeros((len(texts), len(self.classes)), dtype=np.float32)
        self.model.eval()
        for idx, batch in length_bucketed_batches(
            self.tokenizer, list(texts), batch_size, self.max_length, False
        ):
            with autocast_context(self.device):
                logits, _ = self.model(**move_batch(batch, self.device))
            out[idx.numpy()] = logits.float().cpu().numpy()
        return out

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Calibrated P(y | x), [n, C], rows in input order, columns in `classes` order."""
        for i, t in enumerate(texts):
            if not isinstance(t, str) or not t.strip():
                raise InvalidInputError("empty or non-text input", rows=[i])
        logits = torch.from_numpy(self.logits(texts, batch_size))
        return torch.softmax(logits / self.temperature, dim=-1).numpy()

    def predict(self, texts: Sequence[str], batch_size: int = 64) -> list[tuple[str, float]]:
        """(label, confidence) per text."""
        probs = self.predict_proba(texts, batch_size)
        top = probs.argmax(axis=1)
        return [(self.classes[j], float(probs[i, j])) for i, j in enumerate(top)]

    # ------------------------------------------------------------------ training
    @classmethod
    def distill(
        cls,
        init_model: TextClassifier | None,
        backbone_path: str | None,
        classes: Sequence[str],
        texts: Sequence[str],
        soft_targets,
        valid_texts: Sequence[str] | None,
        valid_targets,
        config: CalibrationConfig | None = None,
        progress: ProgressCallback | None = None,
        should_stop: ShouldStop | None = None,
        epochs: int = 2,
        device: torch.device | None = None,
    ) -> ServedClassifier:
        """Train on soft targets from `init_model` (copied, never modified), then fit the temperature.

        `soft_targets` [N, C] and `valid_targets` [Nv, C] are probability rows (the refined posteriors).
        Without validation texts the temperature stays 1 (fitting it on training texts would only
        reward the over-confidence the distillation just learned).
        """
        config = config or CalibrationConfig()
        backbone_path = resolve_backbone(backbone_path if backbone_path is not None else config.backbone)
        device = resolve_device(device if device is not None else config.device)
        n_classes = len(classes)
        targets = _probability_rows(soft_targets, len(texts), n_classes, "soft_targets")
        if init_model is not None and init_model.n_classes != n_classes:
            raise InvalidInputError(f"init_model has {init_model.n_classes} outputs, expected {n_classes}")
        tokenizer = load_tokenizer(backbone_path)
        t0 = time.perf_counter()
        # the head's initialisation and dropout draw from the global RNG, whose state depends on whether
        # stage 1 was trained or loaded: seeded here, a resumed job distils the same model
        with seeded_rng(config.seed + DISTILL_SEED_OFFSET, device):
            if init_model is not None:
                model = copy.deepcopy(init_model).float()
            else:
                model = TextClassifier(backbone_path, n_classes)
            model.to(device)
            _train_on_soft_targets(
                model, tokenizer, texts, targets, config, epochs, device, progress, should_stop
            )
        served = cls(model, tokenizer, classes, 1.0, config.max_length, device)
        temperature = 1.0
        if valid_texts is not None and len(valid_texts) > 0:
            vt = _probability_rows(valid_targets, len(valid_texts), n_classes, "valid_targets", check=False)
            temperature = fit_temperature(torch.from_numpy(served.logits(valid_texts, 64)), vt)
        served.temperature = temperature
        served.meta = {
            "distill_epochs": epochs,
            "distill_seconds": round(time.perf_counter() - t0, 3),
            "n_train": len(texts),
            "n_valid": 0 if valid_texts is None else len(valid_texts),
        }
        if progress is not None:
            progress(Progress("served", 1.0, "temperature fitted", {"temperature": temperature}))
        return served

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | os.PathLike) -> None:
        """Write a self-contained model dir: weights (safetensors), encoder config, tokenizer, metadata."""
        from safetensors.torch import save_file

        directory = os.fspath(directory)
        os.makedirs(directory, exist_ok=True)
        state = {k: v.detach().to("cpu").contiguous() for k, v in self.model.state_dict().items()}
        save_file(state, os.path.join(directory, WEIGHTS_FILE), metadata={"format": "pt"})
        self.model.backbone.config.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)
        meta = {
            "format": "sidyp-served",
            "format_version": FORMAT_VERSION,
            "classes": self.classes,
            "temperature": self.temperature,
            "max_length": self.max_length,
            "hidden_size": self.model.hidden_size,
            "versions": _versions(),
            "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "training": self.meta,
        }
        with open(os.path.join(directory, META_FILE), "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2)

    @classmethod
    def load(cls, directory: str | os.PathLike, device: torch.device | str = "cpu") -> ServedClassifier:
        """Load a dir written by `save`. Refuses anything without safetensors weights (no pickle fallback)."""
        from safetensors.torch import load_file

        directory = os.fspath(directory)
        weights = os.path.join(directory, WEIGHTS_FILE)
        meta_path = os.path.join(directory, META_FILE)
        if not os.path.isfile(weights):
            raise InvalidInputError(f"no {WEIGHTS_FILE} in {directory}: not a saved sidyp model")
        if not os.path.isfile(meta_path):
            raise InvalidInputError(f"no {META_FILE} in {directory}: not a saved sidyp model")
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
        if meta.get("format") != "sidyp-served" or int(meta.get("format_version", 0)) > FORMAT_VERSION:
            raise InvalidInputError(f"{meta_path} is not a sidyp served model this version can read")
        # Built from config only: the saved weights replace every parameter right after. A plain BERT
        # encoder and its tokenizer.json run without transformers' model code (see bert_inference).
        model = TextClassifier.for_inference(directory, len(meta["classes"]))
        model.load_state_dict(load_file(weights), strict=True)
        if isinstance(model.backbone, BertEncoder) and FastTokenizer.usable(directory):
            tokenizer = FastTokenizer(directory)
        else:
            tokenizer = load_tokenizer(directory)
        return cls(
            model,
            tokenizer,
            meta["classes"],
            float(meta["temperature"]),
            int(meta.get("max_length", 128)),
            resolve_device(device),
            meta.get("training"),
        )


def _probability_rows(values, n: int, n_classes: int, name: str, check: bool = True) -> torch.Tensor:
    """[n, C] rows normalised to sum to 1; `check` also refuses non-finite or negative entries."""
    rows = _as_float_tensor(values)
    if rows.shape != (n, n_classes):
        raise InvalidInputError(f"{name} must be [{n}, {n_classes}], got {tuple(rows.shape)}")
    if check and (not torch.isfinite(rows).all() or (rows < 0).any()):
        raise InvalidInputError(f"{name} must be finite and non-negative")
    return rows / rows.sum(dim=1, keepdim=True).clamp_min(1e-12)


def _lr_schedule(optimizer, total_steps: int):
    warmup = max(1, int(0.06 * total_steps))

    def lr_factor(step: int) -> float:  # linear warm-up then linear decay to 0, over the whole run
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)


def _train_on_soft_targets(model, tokenizer, texts, targets, config, epochs, device, progress, should_stop):
    """Cross-entropy to the soft targets for `epochs` epochs (the served model's distillation)."""
    encoded = encode_texts(tokenizer, texts, config.max_length)
    generator = torch.Generator().manual_seed(config.seed + DISTILL_SEED_OFFSET)
    steps_per_epoch = math.ceil(len(texts) / config.batch_size)
    total_steps = max(1, steps_per_epoch * epochs)
    # a stage-1 model arrives with its token embedding table frozen (deepcopy keeps requires_grad):
    # only what stage 1 trained is trained here, which keeps Adam's moments off half of the weights
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=0.01)
    scheduler = _lr_schedule(optimizer, total_steps)
    step = 0
    for epoch in range(epochs):
        model.train()
        running = 0.0
        for idx, batch in length_bucketed_batches(
            tokenizer, encoded, config.batch_size, config.max_length, True, generator
        ):
            if should_stop is not None and should_stop():
                raise CalibrationStopped("stopped while training the served model")
            optimizer.zero_grad(set_to_none=True)
            running += _soft_target_backward(
                model, move_batch(batch, device), targets[idx].to(device), device
            )
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            if progress is not None:
                message = f"distilling epoch {epoch + 1}/{epochs}"
                metrics = {"loss": running / (step - epoch * steps_per_epoch)}
                progress(Progress("served", 0.95 * step / total_steps, message, metrics))


def _soft_target_backward(model, batch, target, device) -> float:
    """Gradients of the batch's mean soft-target cross-entropy; returns the loss.

    Micro-batches bounded in tokens keep the activation peak flat on long texts; per-row sums over the
    whole batch's size give exactly the full batch's gradient.
    """
    batch_loss = 0.0
    for rows in micro_batches(batch["attention_mask"]):
        mask_c = batch["attention_mask"][rows]
        width = int(mask_c.sum(1).max())
        with autocast_context(device):
            logits, _ = model(batch["input_ids"][rows][:, :width], mask_c[:, :width])
        loss_c = -(target[rows] * F.log_softmax(logits.float(), dim=-1)).sum() / len(target)
        loss_c.backward()
        batch_loss += float(loss_c.detach())
    return float(torch.tensor(batch_loss))
