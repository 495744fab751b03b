"""BERT inference in plain PyTorch and a `tokenizers`-only tokenizer, so a served model loads fast.

Importing `transformers.modeling_utils` pulls in torch.distributed.tensor, sympy, scipy.optimize and
dynamo, which takes longer than the rest of loading a served model together (docs/method.md,
"Measurements behind code constants"). A served
model whose encoder is a plain BERT (the default all-MiniLM-L6-v2 is one) needs none of that:
`BertEncoder` computes what Hugging Face's `BertModel` computes in eval mode, with the same module and
parameter names, so the saved state dict loads into it with `strict=True`; `FastTokenizer` runs the
saved `tokenizer.json` through the `tokenizers` package the way the transformers fast tokenizer does.

Only what `supports` accepts goes through here; everything else keeps the transformers path.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# BertConfig's defaults, for keys an older config.json leaves out.
_DEFAULTS = {
    "vocab_size": 30522,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 512,
    "type_vocab_size": 2,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
    "position_embedding_type": "absolute",
}


def _new_gelu(x: torch.Tensor) -> torch.Tensor:  # transformers' NewGELUActivation, term for term
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


_ACTIVATIONS = {
    "gelu": F.gelu,  # erf form, as transformers' GELUActivation
    "gelu_new": _new_gelu,
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
}


def supports(config: dict) -> bool:
    """True when `BertEncoder` computes exactly what transformers' AutoModel builds from this config.

    A plain BERT encoder: model_type "bert", absolute positions, one of the activations above, no decoder
    or cross-attention, float32 weights. Anything else must go through transformers.
    """
    try:
        if config.get("model_type") != "bert":
            return False
        if config.get("position_embedding_type", "absolute") not in (None, "absolute"):
            return False
        if config.get("hidden_act", "gelu") not in _ACTIVATIONS:
            return False
        if config.get("is_decoder", False) or config.get("add_cross_attention", False):
            return False
        if "embedding_size" in config:
            return False
        for key in ("dtype", "torch_dtype"):
            if config.get(key) not in (None, "float32"):
                return False
        c = {**_DEFAULTS, **config}
        ints = (
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "max_position_embeddings",
            "type_vocab_size",
        )
        if not all(isinstance(c[k], int) and not isinstance(c[k], bool) and c[k] > 0 for k in ints):
            return False
        return c["hidden_size"] % c["num_attention_heads"] == 0
    except Exception:  # a malformed config is not ours to judge: transformers reports it
        return False


def read_config(path: str | os.PathLike) -> dict:
    """The config.json of a model dir as a dict."""
    with open(os.path.join(os.fspath(path), "config.json"), encoding="utf-8") as f:
        return json.load(f)


class BertConfigView:
    """The config dict with attribute access, and `save_pretrained` writing it back as config.json.

    Enough of transformers' `PretrainedConfig` for this package (`hidden_size`, saving a served model).
    """

    def __init__(self, config: dict):
        self._raw = dict(config)
        for key, value in {**_DEFAULTS, **config}.items():
            if key.isidentifier() and not key.startswith("_") and not hasattr(type(self), key):
                setattr(self, key, value)
        if self.position_embedding_type is None:
            self.position_embedding_type = "absolute"

    def to_dict(self) -> dict:
        return dict(self._raw)

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        directory = os.fspath(directory)
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, "config.json"), "w", encoding="utf-8") as f:
            json.dump(self._raw, f, indent=2, sort_keys=True)
            f.write("\n")


# Set (per thread) while `build_uninitialised` runs: Linear and Embedding then skip their random init.
# (Building on the meta device instead would import torch._dynamo, which is slow, through torch._refs.)
_SKIP_INIT = threading.local()


class _Linear(nn.Linear):
    def reset_parameters(self) -> None:
        if not getattr(_SKIP_INIT, "on", False):
            super().reset_parameters()


class _Embedding(nn.Embedding):
    def reset_parameters(self) -> None:
        if not getattr(_SKIP_INIT, "on", False):
            super().reset_parameters()


@dataclass
class BertEncoderOutput:
    last_hidden_state: torch.Tensor
    pooler_output: torch.Tensor


class _Embeddings(nn.Module):
    def __init__(self, c: BertConfigView):
        super().__init__()
        self.word_embeddings = _Embedding(c.vocab_size, c.hidden_size, padding_idx=c.pad_token_id)
        self.position_embeddings = _Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = _Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        seq_len = input_ids.shape[1]
        positions = torch.arange(seq_len, device=input_ids.device)
        # token type 0 everywhere: its embedding is one row, broadcast (as transformers adds it)
        x = self.word_embeddings(input_ids) + self.token_type_embeddings.weight[0]
        x = x + self.position_embeddings(positions)
        return self.dropout(self.LayerNorm(x))


class _SelfAttention(nn.Module):
    def __init__(self, c: BertConfigView):
        super().__init__()
        self.num_heads = c.num_attention_heads
        self.head_dim = c.hidden_size // c.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.dropout_p = c.attention_probs_dropout_prob
        self.query = _Linear(c.hidden_size, c.hidden_size)
        self.key = _Linear(c.hidden_size, c.hidden_size)
        self.value = _Linear(c.hidden_size, c.hidden_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, n, _ = x.shape
        q = self.query(x).view(b, n, -1, self.head_dim).transpose(1, 2)
        k = self.key(x).view(b, n, -1, self.head_dim).transpose(1, 2)
        v = self.value(x).view(b, n, -1, self.head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout_p if self.training else 0.0,
            scale=self.scaling,
        )
        return out.transpose(1, 2).reshape(b, n, -1)


class _ResidualOutput(nn.Module):
    """dense -> dropout -> + residual -> LayerNorm: BERT's `attention.output` and `output` blocks."""

    def __init__(self, c: BertConfigView, in_features: int):
        super().__init__()
        self.dense = _Linear(in_features, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class _Attention(nn.Module):
    def __init__(self, c: BertConfigView):
        super().__init__()
        self.self = _SelfAttention(c)
        self.output = _ResidualOutput(c, c.hidden_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        return self.output(self.self(x, mask), x)


class _Intermediate(nn.Module):
    def __init__(self, c: BertConfigView):
        super().__init__()
        self.dense = _Linear(c.hidden_size, c.intermediate_size)
        self.act = _ACTIVATIONS[c.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x))


class _Layer(nn.Module):
    def __init__(self, c: BertConfigView):
        super().__init__()
        self.attention = _Attention(c)
        self.intermediate = _Intermediate(c)
        self.output = _ResidualOutput(c, c.intermediate_size)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        a = self.attention(x, mask)
        return self.output(self.intermediate(a), a)


class _Encoder(nn.Module):
    def __init__(self, c: BertConfigView):
        super().__init__()
        self.layer = nn.ModuleList(_Layer(c) for _ in range(c.num_hidden_layers))


class _Pooler(nn.Module):
    def __init__(self, c: BertConfigView):
        super().__init__()
        self.dense = _Linear(c.hidden_size, c.hidden_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))


class BertEncoder(nn.Module):
    """Hugging Face `BertModel` (with its pooler) for inference, same parameter names, no transformers.

    Token type ids are all zero and positions absolute, as in every call this package makes. The
    parameters start randomly initialised by PyTorch (not BERT's init): load a state dict before use.
    """

    def __init__(self, config: dict):
        super().__init__()
        if not supports(config):
            raise ValueError("config is not a plain BERT encoder (see bert_inference.supports)")
        self.config = BertConfigView(config)
        self.embeddings = _Embeddings(self.config)
        self.encoder = _Encoder(self.config)
        self.pooler = _Pooler(self.config)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> BertEncoderOutput:
        hidden = self.embeddings(input_ids)
        mask = None
        if attention_mask is not None and not bool(attention_mask.all()):
            keep = attention_mask.bool()
            # a row without any token would attend to nothing (NaN): let it attend everywhere instead;
            # its states are meaningless either way and masked out by the caller's pooling
            keep = keep | ~keep.any(dim=1, keepdim=True)
            mask = keep[:, None, None, :]  # [B, 1, 1, K]: padded keys are never attended to
        for layer in self.encoder.layer:
            hidden = layer(hidden, mask)
        return BertEncoderOutput(last_hidden_state=hidden, pooler_output=self.pooler(hidden))


def build_uninitialised(config: dict) -> BertEncoder:
    """A `BertEncoder` whose weights are allocated but not initialised (a state dict must follow)."""
    previous = getattr(_SKIP_INIT, "on", False)
    _SKIP_INIT.on = True
    try:
        return BertEncoder(config)
    finally:
        _SKIP_INIT.on = previous


# ---------------------------------------------------------------------------------------- tokenizer
_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
)
# tokenizer classes whose transformers fast tokenizer is the backend pipeline of tokenizer.json as is
_PLAIN_TOKENIZER_CLASSES = (None, "BertTokenizer", "BertTokenizerFast")


def _token_content(token) -> str | None:
    if isinstance(token, dict):  # a serialised AddedToken
        return token.get("content")
    return token if isinstance(token, str) else None


class FastTokenizer:
    """The `tokenizers` pipeline of a model dir's tokenizer.json, called like a transformers fast tokenizer.

    Covers what `sidyp_engine.model.encode_texts` asks for: a batch of texts, truncation to `max_length`
    (special tokens included, as transformers does), no padding. Thread-safe: each max_length gets its
    own configured backend, never reconfigured afterwards.
    """

    def __init__(self, directory: str | os.PathLike):
        from tokenizers import Tokenizer

        self.directory = os.fspath(directory)
        self.name_or_path = self.directory
        self._base = Tokenizer.from_file(os.path.join(self.directory, "tokenizer.json"))
        cfg = _read_json(os.path.join(self.directory, "tokenizer_config.json"))
        special = _read_json(os.path.join(self.directory, "special_tokens_map.json"))
        self.truncation_side = cfg.get("truncation_side", "right")
        self.model_max_length = cfg.get("model_max_length")
        self._base.no_padding()
        self._base.no_truncation()
        self._base.encode_special_tokens = bool(cfg.get("split_special_tokens", False))
        pad = _token_content(cfg.get("pad_token")) or _token_content(special.get("pad_token"))
        self.pad_token = pad
        self.pad_token_id = self._base.token_to_id(pad) if pad is not None else None
        self._by_length: dict[int | None, object] = {}
        self._lock = threading.Lock()

    @staticmethod
    def usable(directory: str | os.PathLike) -> bool:
        """A tokenizer.json whose transformers tokenizer class adds nothing to its pipeline."""
        directory = os.fspath(directory)
        if not os.path.isfile(os.path.join(directory, "tokenizer.json")):
            return False
        cfg = _read_json(os.path.join(directory, "tokenizer_config.json"))
        return cfg.get("tokenizer_class") in _PLAIN_TOKENIZER_CLASSES

    def _backend(self, max_length: int | None):
        backend = self._by_length.get(max_length)
        if backend is not None:
            return backend
        with self._lock:
            backend = self._by_length.get(max_length)
            if backend is None:
                from tokenizers import Tokenizer

                # the first length configures the loaded pipeline; later ones get a copy
                backend = self._base if not self._by_length else Tokenizer.from_str(self._base.to_str())
                if max_length is None:
                    backend.no_truncation()
                else:
                    backend.enable_truncation(
                        max_length=max_length,
                        stride=0,
                        strategy="longest_first",
                        direction=self.truncation_side,
                    )
                backend.no_padding()
                self._by_length[max_length] = backend
        return backend

    def __call__(
        self,
        texts: str | Sequence[str],
        truncation: bool = True,
        max_length: int | None = None,
        padding: bool | str = False,
        return_attention_mask: bool = False,
        return_token_type_ids: bool = False,
    ) -> dict[str, list]:
        if padding not in (False, "do_not_pad"):
            raise NotImplementedError("FastTokenizer does not pad: batches are padded by the caller")
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        if not truncation:
            max_length = None
        elif max_length is None and self.model_max_length is not None and self.model_max_length < 10**9:
            max_length = int(self.model_max_length)
        encodings = self._backend(max_length).encode_batch(batch, add_special_tokens=True) if batch else []
        out: dict[str, list] = {"input_ids": [e.ids for e in encodings]}
        if return_attention_mask:
            out["attention_mask"] = [e.attention_mask for e in encodings]
        if return_token_type_ids:
            out["token_type_ids"] = [e.type_ids for e in encodings]
        if single:
            out = {k: v[0] for k, v in out.items()}
        return out

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Copy the tokenizer files this was loaded from (what transformers would write for them)."""
        directory = os.fspath(directory)
        os.makedirs(directory, exist_ok=True)
        if os.path.abspath(directory) == os.path.abspath(self.directory):
            return
        for name in _TOKENIZER_FILES:
            src = os.path.join(self.directory, name)
            if os.path.isfile(src):
                shutil.copyfile(src, os.path.join(directory, name))


def _read_json(path: str) -> dict:
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    return data if isinstance(data, dict) else {}
