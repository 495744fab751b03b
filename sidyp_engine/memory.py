"""How much memory `calibrate()` needs: an analytic upper bound on the process's peak RSS.

The engine keeps per-row arrays whose size is fixed by the config, not by the texts: stage 1 records
every row's pooled embedding after every epoch in every branch (`dynamics`, M x N x E x D float32),
and stage 3 conditions the refiner on a normalised copy of it with the frozen sentence embedding in
front (M x N x (E + 1) x D), built while the dynamics are still alive. Everything else per row (token
ids, priors, posteriors, the [N, C, C] transition) is smaller. The fixed part is the interpreter with
torch / transformers / faiss loaded, the branches' weights with their gradients, Adam moments and the
best-epoch snapshot, and the activations of one training micro-batch and one inference batch.

The peak is the largest of the stages' live sets (stage 1 holds M models and their optimizer; by
stage 3 only one model is left but the per-row arrays are at their largest), so the estimate is a max
over stages, not one sum. The coefficients are measured on CPU (benchmarks/memory_profile.py,
benchmarks/results/memory-profile.json); on a GPU the weights and activations move to the device and
the host gains the CUDA runtime instead, which this model does not count.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

from sidyp_engine.types import CalibrationConfig

# The engine's batch shapes, copied rather than imported: this module is for the web process, which
# must not import torch (tests/engine/test_memory.py checks the copies against the engine).
TOKEN_BUDGET = 1024  # classifier.TOKEN_BUDGET: tokens per training micro-batch
INFERENCE_BATCH = 128  # classifier.INFERENCE_BATCH: texts per no-grad pass
REFINER_CHUNK_ROWS = 65_536  # diffusion.RefinerConfig.chunk_rows
REFINER_HIDDEN = 128  # diffusion.RefinerConfig.hidden

MIB = 2**20
FLOAT = 4  # bytes; every per-row array and every CPU weight is float32
# Interpreter with torch and faiss (290 MiB), the tokenizer (40) and transformers' BERT code (120),
# measured on CPU before any data; rounded up.
RUNTIME_BYTES = 512 * MIB
# What the first backward pass allocates beyond the saved activations and gradients (BLAS / oneDNN
# scratch, autograd buffers): ~40 MiB measured for one branch.
WORKSPACE_BYTES = 64 * MIB
# Heap the process keeps after stage 1 although the branches and their optimizer are freed: measured
# 740-840 MiB during distillation with a 1-layer backbone, where ~620 MiB are live.
RETAINED_BYTES = 256 * MIB
# Stage 1 grows by ~20 KB per row at 4 epochs and 3 branches where the dynamics are 18.4 KB.
STAGE1_ROW_FACTOR = 1.25
# Python token-id lists: an 8-byte list slot plus a 32-byte int object per token, and the tokenizer's
# own encodings while a batch call converts them (tokens, offsets, masks).
TOKEN_LIST_BYTES = 40
TOKENIZE_TRANSIENT_BYTES = 120
# Saved activations per token and layer of a BERT block in training, in hidden-size floats (Q, K, V,
# the attention and FFN inputs and outputs, the 4D-wide intermediate twice), and per token of one
# inference layer (input, intermediate, GELU output).
TRAIN_ACTIVATION_FLOATS = 18
INFERENCE_ACTIVATION_FLOATS = 10
ATTENTION_HEADS = 12  # MiniLM-L6-H384 and BERT-base; scores and probabilities scale with it
SERVED_INFERENCE_BATCH = 64  # ServedClassifier.logits on the validation texts
# The refiner's reverse pass holds ~8 hidden-wide float vectors per (row, noisy class) pair of a chunk.
REVERSE_FLOATS_PER_HIDDEN = 8


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak-RSS estimate of one calibration, in bytes: the per-stage live sets and their max."""

    runtime: int
    classifier: int  # stage 1: M models, optimizer state, activations, token lists, dynamics
    prior: int  # stage 2: dynamics, noise-score copies, frozen-embedding pass
    refiner: int  # stages 3-4: dynamics + conditioning + the refiner's chunk + transition
    served: int  # distillation: two models, optimizer state, token lists

    @property
    def total(self) -> int:
        return self.runtime + max(self.classifier, self.prior, self.refiner, self.served)

    @property
    def stage(self) -> str:
        """The stage that sets the peak."""
        stages = {"classifier": self.classifier, "prior": self.prior, "refiner": self.refiner}
        stages["served"] = self.served
        return max(stages, key=stages.__getitem__)

    def parts(self) -> dict[str, int]:
        return asdict(self) | {"total": self.total}


def bert_parameters(hidden_size: int, n_layers: int, vocab_size: int, max_positions: int = 512) -> int:
    """Parameters of a BERT encoder with a 4x-wide FFN and its pooler (MiniLM-L6-H384: 22.7 M)."""
    d = hidden_size
    embeddings = (vocab_size + max_positions + 2) * d + 2 * d
    layer = 12 * d * d + 13 * d  # Q, K, V, O with biases, FFN in and out, two LayerNorms
    return embeddings + n_layers * layer + d * d + d


def backbone_dimensions(backbone_dir: str | os.PathLike) -> dict[str, int]:
    """`hidden_size`, `n_layers` and `vocab_size` of a Hugging Face model dir, from its config.json."""
    with open(os.path.join(backbone_dir, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    return {
        "hidden_size": int(config["hidden_size"]),
        "n_layers": int(config["num_hidden_layers"]),
        "vocab_size": int(config["vocab_size"]),
    }


@dataclass(frozen=True)
class _Encoder:
    """Bytes of one encoder branch: weights, training state, and the activations of one batch."""

    weights: int
    training_state: int  # gradient + two Adam moments + the best-epoch snapshot, trained weights only
    activations: int  # one training micro-batch (TOKEN_BUDGET tokens at most)
    inference: int  # one no-grad batch of INFERENCE_BATCH texts


def _encoder(cfg: CalibrationConfig, n_classes: int, d: int, n_layers: int, vocab_size: int) -> _Encoder:
    width, heads = cfg.max_length, ATTENTION_HEADS
    params = bert_parameters(d, n_layers, vocab_size) + d * n_classes + n_classes
    trainable = params - vocab_size * d  # the token-embedding table is frozen in every stage
    mb_tokens = min(cfg.batch_size * width, TOKEN_BUDGET)
    per_token_layer = FLOAT * (TRAIN_ACTIVATION_FLOATS * d + 2 * heads * width)  # + scores and probs
    inference = INFERENCE_BATCH * width * FLOAT * (INFERENCE_ACTIVATION_FLOATS * d + 2 * heads * width)
    return _Encoder(params * FLOAT, trainable * FLOAT * 4, mb_tokens * n_layers * per_token_layer, inference)


def _refiner_transient(n_all: int, n_classes: int, cond_dim: int) -> int:
    """Largest chunk of the refiner's batched reverse passes: the transition over (row, class) pairs,
    or the per-epoch pass over rows; each normalises its rows' conditioning first."""
    chunk, hidden = REFINER_CHUNK_ROWS, REFINER_HIDDEN
    pairs = min(n_all * n_classes, chunk)
    transition = pairs * REVERSE_FLOATS_PER_HIDDEN * hidden * FLOAT + (pairs // n_classes) * cond_dim * FLOAT
    rows = min(n_all, chunk)
    per_epoch = rows * REVERSE_FLOATS_PER_HIDDEN * hidden * FLOAT + rows * cond_dim * FLOAT
    return max(transition, per_epoch) + n_all * n_classes * n_classes * FLOAT * 2


def estimate_memory(
    n_rows: int,
    n_classes: int,
    config: CalibrationConfig,
    hidden_size: int = 384,
    n_layers: int = 6,
    vocab_size: int = 30522,
    n_extra_rows: int = 0,
) -> MemoryEstimate:
    """Parts of the peak; `n_rows` counts training and validation rows (both get dynamics).

    Every text is assumed to fill `config.max_length` tokens: an upper bound that needs no tokenising.
    """
    m, e, d, c = config.branches, config.epochs, hidden_size, n_classes
    n_all = n_rows + n_extra_rows
    enc = _encoder(config, c, d, n_layers, vocab_size)
    tokens = n_all * config.max_length
    token_lists = tokens * TOKEN_LIST_BYTES
    tokenizing = tokens * (TOKEN_LIST_BYTES + TOKENIZE_TRANSIENT_BYTES)
    dynamics = m * n_all * e * d * FLOAT
    conditioning = m * n_all * (e + 1) * d * FLOAT
    row_vectors = n_all * d * FLOAT * 4  # frozen embeddings, k-NN space, faiss index, normalised queries
    small_per_row = n_all * c * FLOAT * 8  # priors, candidate weights, posteriors, probabilities

    classifier = m * (enc.weights + enc.training_state + enc.activations) + WORKSPACE_BYTES
    classifier += max(tokenizing, token_lists + enc.inference) + STAGE1_ROW_FACTOR * dynamics + small_per_row
    # noise scores: three [N, E, D] copies of one branch; frozen pass: a second model and the texts
    prior = RETAINED_BYTES + enc.weights + dynamics + row_vectors + small_per_row
    prior += max(3 * dynamics // m, enc.weights + max(tokenizing, token_lists + enc.inference))
    # the conditioning is built from a normalised copy of the dynamics (one copy alive at a time)
    refiner = RETAINED_BYTES + enc.weights + dynamics + conditioning + row_vectors + small_per_row
    refiner += max(dynamics, _refiner_transient(n_all, c, (e + 1) * d))
    served = RETAINED_BYTES + 2 * enc.weights + enc.training_state + enc.activations + WORKSPACE_BYTES
    served += small_per_row + max(
        tokenizing, token_lists + enc.inference * SERVED_INFERENCE_BATCH // INFERENCE_BATCH
    )
    return MemoryEstimate(RUNTIME_BYTES, int(classifier), int(prior), int(refiner), int(served))


def estimate_peak_bytes(
    n_rows: int,
    n_classes: int,
    config: CalibrationConfig,
    hidden_size: int = 384,
    n_layers: int = 6,
    vocab_size: int = 30522,
    n_extra_rows: int = 0,
) -> int:
    """Upper bound on the peak RSS of `calibrate()` for a job of this shape (see `estimate_memory`).

    Meant for admission: a job whose estimate exceeds the worker's memory is refused before it runs.
    """
    return estimate_memory(n_rows, n_classes, config, hidden_size, n_layers, vocab_size, n_extra_rows).total
