"""Stage 1: the classifier ensemble trained on the noisy labels, recording its training dynamics.

M branches of one backbone see the same length-bucketed batches and are trained together with cross-
entropy on the noisy labels plus co-regularisation (KL of each branch to the ensemble mean), which is off
during the first 10% of the steps so the branches can first diverge from their different heads.

Speed: the training forward pass is also the recording pass. The encoder runs without dropout (only the
head has dropout), so the pooled embedding of a batch in the training pass is exactly what an eval-mode
pass would give with the weights of that moment; the published code instead re-encodes train, valid and
test after every epoch. Only validation and extra texts, which are not trained on, get one no-grad pass
per epoch (batch 128).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from sidyp_engine.model import (
    TextClassifier,
    autocast_context,
    autocast_dtype,
    encode_texts,
    length_bucketed_batches,
    move_batch,
)
from sidyp_engine.types import (
    CalibrationConfig,
    CalibrationStopped,
    Progress,
    ProgressCallback,
    ShouldStop,
)

COREG_WEIGHT = 1.0  # weight of the KL-to-ensemble-mean term once it is on
COREG_WARMUP_SHARE = 0.1  # share of all steps with the co-regularisation off
LR_WARMUP_SHARE = (
    0.06  # linear learning-rate warm-up, then linear decay to 0 over the whole run (one schedule)
)
WEIGHT_DECAY = 0.01
MAX_GRAD_NORM = 1.0
INFERENCE_BATCH = 128
# Tokens (rows x padded width) per training micro-batch. At 32 x 128 tokens the three branches' graphs
# alone took ~1.6 GB on MiniLM; 1024 keeps ordinary batches whole (32 texts of <= 32 tokens) and bounds the peak.
TOKEN_BUDGET = 1024


def release_memory() -> None:
    """Return freed heap pages to the OS. Per-batch padding makes every batch a different shape, which
    fragments glibc's heap: without a trim the RSS stays at its highest point for the rest of the run."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        pass


def micro_batches(attention_mask: torch.Tensor) -> list[torch.Tensor]:
    """Row index chunks of a padded batch such that rows x (chunk's longest text) <= TOKEN_BUDGET."""
    lengths = attention_mask.sum(dim=1)
    order = torch.argsort(lengths, descending=True)
    chunks, start = [], 0
    while start < len(order):
        width = int(lengths[order[start]])
        rows = max(1, TOKEN_BUDGET // max(1, width))
        chunks.append(order[start : start + rows])
        start += rows
    return chunks


@dataclass
class EnsembleOutput:
    """What stage 1 hands to the later stages.

    models: the branches with the weights of the selected epoch, best branch (noisy validation accuracy)
    first; restored from a checkpoint, only that first branch is present.
    dynamics: split -> [M, N_split, E, D] pooled embeddings after every epoch (float32, CPU).
    noisy_posteriors: split -> [N_split, C] ensemble-mean softmax at the selected epoch.
    """

    models: list[TextClassifier]
    dynamics: dict[str, torch.Tensor]
    noisy_posteriors: dict[str, torch.Tensor]
    selected_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)


def _check_stop(should_stop: ShouldStop | None) -> None:
    if should_stop is not None and should_stop():
        raise CalibrationStopped("stopped on request")


def _lr_lambda(total_steps: int):
    warmup = max(1, int(round(LR_WARMUP_SHARE * total_steps)))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor


def noisy_accuracy(probs: torch.Tensor, noisy: torch.Tensor, balanced: bool = False) -> float:
    """Agreement with the noisy labels; `balanced` = mean per-class recall over the noisy classes present.

    LLM labellers over-use some classes, so plain agreement rewards a model that copies the bias; the
    class-balanced version ranks models the way gold accuracy does on our benchmarks (research notes).
    """
    labelled = noisy >= 0
    if not labelled.any():
        return float("nan")
    hit = (probs[labelled].argmax(dim=1) == noisy[labelled]).float()
    if not balanced:
        return float(hit.mean())
    y = noisy[labelled]
    recalls = [hit[y == c].mean() for c in torch.unique(y)]
    return float(torch.stack(recalls).mean())


def class_balance_weights(noisy: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Per-class loss weights n / (C_present * n_c): every noisy class carries the same total weight.

    The labeller's class bias (one class used for most texts) is the dominant error on real LLM labels;
    an unweighted loss learns that bias back. Missing labels (-1) are ignored; absent classes get weight 0.
    """
    labelled = noisy[noisy >= 0]
    counts = torch.bincount(labelled, minlength=n_classes).float()
    present = counts > 0
    weights = torch.zeros(n_classes)
    if present.any():
        weights[present] = len(labelled) / (int(present.sum()) * counts[present])
    return weights


@torch.no_grad()
def encode_pooled(
    model: TextClassifier,
    tokenizer,
    texts: Sequence[str],
    max_length: int,
    device: torch.device,
    batch_size: int = INFERENCE_BATCH,
    should_stop: ShouldStop | None = None,
    encoded=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode pass: (pooled [N, D], softmax probabilities [N, C]) in input order."""
    was_training = model.training
    model.eval()
    n = len(texts) if encoded is None else len(encoded)
    pooled = torch.zeros(n, model.hidden_size)
    probs = torch.zeros(n, model.n_classes)
    source = encoded if encoded is not None else texts
    try:
        for idx, batch in length_bucketed_batches(tokenizer, source, batch_size, max_length, shuffle=False):
            _check_stop(should_stop)
            batch = move_batch(batch, device)
            with autocast_context(device):
                logits, emb = model(batch["input_ids"], batch["attention_mask"])
            pooled[idx] = emb.float().cpu()
            probs[idx] = torch.softmax(logits.float(), dim=-1).cpu()
    finally:
        model.train(was_training)
    return pooled, probs


def embed_texts(
    backbone_path: str,
    tokenizer,
    texts: Sequence[str],
    max_length: int,
    device: torch.device,
    should_stop: ShouldStop | None = None,
) -> torch.Tensor:
    """Frozen sentence embeddings (masked mean pooling) of `texts` with the encoder at `backbone_path`."""
    model = TextClassifier(backbone_path, n_classes=1).to(device)
    pooled, _ = encode_pooled(model, tokenizer, texts, max_length, device, should_stop=should_stop)
    del model
    return pooled


def train_ensemble(
    cfg: CalibrationConfig,
    backbone_path: str,
    tokenizer,
    train_texts: Sequence[str],
    train_labels: torch.Tensor,
    valid_texts: Sequence[str],
    valid_labels: torch.Tensor,
    extra_texts: Sequence[str] | None,
    n_classes: int,
    device: torch.device,
    progress: ProgressCallback | None = None,
    should_stop: ShouldStop | None = None,
) -> EnsembleOutput:
    """Train cfg.branches branches on the noisy labels; record dynamics and noisy posteriors per split.

    Labels are int64 ids with -1 for missing: those rows get no cross-entropy (nothing to fit) but still
    take part in the co-regularisation and are recorded like every other row. The selected epoch is the
    one with the best ensemble accuracy against the noisy validation labels (gold labels are never seen).
    """
    run = _EnsembleRun(cfg, backbone_path, tokenizer, train_texts, train_labels, n_classes, device)
    run.set_held_out(valid_texts, valid_labels, extra_texts)
    for epoch in range(cfg.epochs):
        train_probs = run.train_epoch(epoch, progress, should_stop)
        release_memory()
        held_probs = run.record_held_out(epoch, should_stop)
        acc = run.select_epoch(epoch, train_probs, held_probs)
        if progress is not None:
            done = min(0.99, run.step / run.total_steps)
            message = f"epoch {epoch + 1}/{cfg.epochs} done"
            progress(Progress("classifier", done, message, {"valid_noisy_accuracy": acc}))
    return run.output()


class _EnsembleRun:
    """The state of one stage-1 run: branches, optimiser, dynamics buffers and the best epoch so far."""

    def __init__(self, cfg, backbone_path, tokenizer, train_texts, train_labels, n_classes, device):
        self.cfg, self.tokenizer, self.n_classes, self.device = cfg, tokenizer, n_classes, device
        self.train_labels = torch.as_tensor(train_labels, dtype=torch.long)
        self.n_train = len(train_texts)
        self.encoded_train = encode_texts(tokenizer, train_texts, cfg.max_length)
        self.models = [self._branch(backbone_path, b) for b in range(cfg.branches)]
        self.params = [p for m in self.models for p in m.parameters() if p.requires_grad]
        self.frozen = {name for name, p in self.models[0].named_parameters() if not p.requires_grad}
        decay = [p for p in self.params if p.ndim >= 2]
        no_decay = [p for p in self.params if p.ndim < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.learning_rate,
        )
        self.total_steps = math.ceil(self.n_train / cfg.batch_size) * cfg.epochs
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _lr_lambda(self.total_steps))
        self.coreg_from_step = int(math.ceil(COREG_WARMUP_SHARE * self.total_steps))
        self.scaler = torch.amp.GradScaler("cuda", enabled=autocast_dtype(device) == torch.float16)
        hidden = self.models[0].hidden_size
        self.dyn_train = torch.zeros(cfg.branches, self.n_train, cfg.epochs, hidden)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.labels_dev = self.train_labels.to(device)
        weights = class_balance_weights(self.train_labels, n_classes) if cfg.class_balanced else None
        self.class_weights = (weights if weights is not None else torch.ones(n_classes)).to(device)
        self.step = 0
        self.best_probs: dict[str, torch.Tensor] = {}
        self.best_states: list[dict[str, torch.Tensor]] | None = None
        self.best_branch_order = list(range(cfg.branches))
        self.best_acc, self.best_epoch = -1.0, 0
        self.history: list[dict[str, float]] = []

    def _branch(self, backbone_path: str, b: int) -> TextClassifier:
        torch.manual_seed(self.cfg.seed * 1000 + b)  # different head init and dropout stream per branch
        model = TextClassifier(backbone_path, self.n_classes).to(self.device)
        model.train()
        model.backbone.eval()  # no encoder dropout: the training pass doubles as the recording pass
        # The token embedding table is half of MiniLM's weights; a few epochs on a few thousand texts
        # barely move it, and freezing it saves its gradient and Adam moments in every branch.
        model.backbone.get_input_embeddings().weight.requires_grad_(False)
        return model

    def set_held_out(self, valid_texts, valid_labels, extra_texts) -> None:
        """Validation and extra texts, not trained on: one no-grad pass per epoch covers both."""
        self.valid_labels = torch.as_tensor(valid_labels, dtype=torch.long)
        self.n_valid = len(valid_texts)
        self.held_out_texts = list(valid_texts) + list(extra_texts or [])
        held = self.held_out_texts
        self.encoded_held = encode_texts(self.tokenizer, held, self.cfg.max_length) if held else None
        shape = (self.cfg.branches, len(held), self.cfg.epochs, self.models[0].hidden_size)
        self.dyn_held = torch.zeros(shape)

    def train_epoch(self, epoch: int, progress, should_stop) -> torch.Tensor:
        """One epoch over the training texts; returns their dropout-free ensemble probabilities."""
        cfg = self.cfg
        train_probs = torch.zeros(self.n_train, self.n_classes)
        batches = length_bucketed_batches(
            self.tokenizer,
            self.encoded_train,
            cfg.batch_size,
            cfg.max_length,
            shuffle=True,
            generator=self.generator,
        )
        loss_sum, loss_count = 0.0, 0
        for idx, batch in batches:
            _check_stop(should_stop)
            batch_loss, train_probs[idx] = self._train_batch(idx, move_batch(batch, self.device), epoch)
            loss_sum += batch_loss * len(idx)
            loss_count += len(idx)
            if progress is not None:
                message = f"epoch {epoch + 1}/{cfg.epochs}, step {self.step}/{self.total_steps}"
                done = min(0.99, self.step / self.total_steps)
                progress(Progress("classifier", done, message, {"loss": batch_loss}))
        self.epoch_loss = loss_sum / max(1, loss_count)
        return train_probs

    def _train_batch(self, idx: torch.Tensor, batch: dict, epoch: int) -> tuple[float, torch.Tensor]:
        """One optimiser step; (batch loss, the batch's dropout-free ensemble probabilities)."""
        y_batch = self.labels_dev[idx.to(self.device)]
        n_labelled = int((y_batch >= 0).sum())
        coreg_on = self.cfg.branches > 1 and self.step >= self.coreg_from_step
        self.optimizer.zero_grad(set_to_none=True)
        batch_loss = 0.0
        probs_no_dropout = torch.zeros(len(idx), self.n_classes)
        # Micro-batches bounded in tokens: every branch's graph is alive until backward, so a batch of
        # long texts would otherwise set the peak memory. Both loss terms are per-example sums
        # divided by the whole batch's counts, so the accumulated gradient equals the full batch's.
        for rows in micro_batches(batch["attention_mask"]):
            loss, outputs = self._micro_batch_loss(batch, rows, y_batch[rows], n_labelled, len(idx), coreg_on)
            self.scaler.scale(loss).backward()
            batch_loss += float(loss.detach())
            probs_no_dropout[rows.cpu()] = self._record(outputs, idx[rows.cpu()], epoch)
            del outputs, loss
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.params, MAX_GRAD_NORM)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        return batch_loss, probs_no_dropout

    def _micro_batch_loss(self, batch, rows, y, n_labelled: int, n_batch: int, coreg_on: bool):
        """Cross-entropy on the labelled rows plus the KL of each branch to the ensemble mean."""
        branches, n_classes = self.cfg.branches, self.n_classes
        ids_c, mask_c = batch["input_ids"][rows], batch["attention_mask"][rows]
        width = int(mask_c.sum(1).max())
        ids_c, mask_c = ids_c[:, :width], mask_c[:, :width]
        labelled = y >= 0
        with autocast_context(self.device):
            outputs = [m(ids_c, mask_c) for m in self.models]
        log_p = F.log_softmax(torch.stack([o[0].float() for o in outputs]), dim=-1)  # [M, b, C]
        loss = log_p.sum() * 0.0
        if labelled.any():
            ce = F.nll_loss(
                log_p[:, labelled].reshape(-1, n_classes),
                y[labelled].repeat(branches),
                weight=self.class_weights,
                reduction="sum",
            )
            loss = loss + ce / (branches * n_labelled)
        if coreg_on:
            mean_p = log_p.exp().mean(dim=0, keepdim=True)  # [1, b, C]
            kl = (mean_p * (torch.log(mean_p.clamp_min(1e-8)) - log_p)).sum(-1).sum()
            loss = loss + COREG_WEIGHT * kl / (branches * n_batch)
        return loss, outputs

    @torch.no_grad()
    def _record(self, outputs, cpu_rows: torch.Tensor, epoch: int) -> torch.Tensor:
        """Store the pooled embeddings as dynamics; return the dropout-free ensemble probabilities."""
        chunk_probs = []
        for b, (m, (_, pooled)) in enumerate(zip(self.models, outputs, strict=True)):
            pooled = pooled.detach().float()
            self.dyn_train[b, cpu_rows, epoch] = pooled.cpu()
            # the head without dropout on the recorded embedding = an eval-mode prediction
            chunk_probs.append(torch.softmax(m.head(pooled).float(), dim=-1))
        return torch.stack(chunk_probs).mean(0).cpu()

    def record_held_out(self, epoch: int, should_stop) -> torch.Tensor:
        """Eval-mode pass of every branch over validation + extra texts: [M, N_held, C] probabilities."""
        held_probs = torch.zeros(self.cfg.branches, len(self.held_out_texts), self.n_classes)
        if self.encoded_held is None:
            return held_probs
        for b, m in enumerate(self.models):
            pooled, probs = encode_pooled(
                m,
                self.tokenizer,
                self.held_out_texts,
                self.cfg.max_length,
                self.device,
                should_stop=should_stop,
                encoded=self.encoded_held,
            )
            m.backbone.eval()
            self.dyn_held[b, :, epoch] = pooled
            held_probs[b] = probs
        return held_probs

    def select_epoch(self, epoch: int, train_probs: torch.Tensor, held_probs: torch.Tensor) -> float:
        """Score the epoch on the noisy validation labels; keep its outputs and weights when it is best."""
        cfg, n_valid, balanced = self.cfg, self.n_valid, self.cfg.class_balanced
        valid_probs_branch = held_probs[:, :n_valid]
        valid_probs = valid_probs_branch.mean(0)
        acc = noisy_accuracy(valid_probs, self.valid_labels, balanced) if n_valid else float("nan")
        branch_acc = [noisy_accuracy(p, self.valid_labels, balanced) for p in valid_probs_branch]
        self.history.append(
            {"epoch": epoch + 1, "train_loss": self.epoch_loss, "valid_noisy_accuracy": acc}
            | {f"valid_noisy_accuracy_branch{b}": a for b, a in enumerate(branch_acc)}
        )
        # `>=`: on ties the later epoch wins, it has seen the data more often with a lower learning rate
        if not (math.isnan(acc) or acc >= self.best_acc):
            return acc
        self.best_acc = -1.0 if math.isnan(acc) else acc
        self.best_epoch = epoch
        self.best_probs = {
            "train": train_probs,
            "valid": valid_probs,
            "extra": held_probs[:, n_valid:].mean(0),
        }
        order = sorted(range(cfg.branches), key=lambda b: -np.nan_to_num(branch_acc[b], nan=-1.0))
        self.best_branch_order = order
        if epoch < cfg.epochs - 1:
            frozen = self.frozen
            self.best_states = [
                {k: v.detach().cpu().clone() for k, v in m.state_dict().items() if k not in frozen}
                for m in self.models
            ]
        else:
            self.best_states = None  # the live weights are the selected ones
        return acc

    def output(self) -> EnsembleOutput:
        del self.optimizer, self.scheduler
        release_memory()
        if self.best_states is not None:
            for m, state in zip(self.models, self.best_states, strict=True):
                m.load_state_dict(state, strict=False)  # frozen weights are unchanged, not snapshotted
        for m in self.models:
            m.eval()
        n_valid = self.n_valid
        dynamics = {
            "train": self.dyn_train,
            "valid": self.dyn_held[:, :n_valid],
            "extra": self.dyn_held[:, n_valid:],
        }
        return EnsembleOutput(
            models=[self.models[b] for b in self.best_branch_order],
            dynamics=dynamics,
            noisy_posteriors=self.best_probs,
            selected_epoch=self.best_epoch,
            history=self.history,
        )
