"""Length-bucketed batching and the text classifier on the tiny random backbone."""

from __future__ import annotations

import pytest
import torch

from sidyp_engine.device import resolve_device
from sidyp_engine.model import (
    TextClassifier,
    autocast_context,
    encode_texts,
    length_bucketed_batches,
    load_tokenizer,
    resolve_backbone,
)
from sidyp_engine.types import InvalidInputError


def _texts():
    # lengths vary a lot so that bucketing has something to do
    return [("word " * (1 + (i * 7) % 40)).strip() for i in range(103)]


def test_batches_pad_per_batch_and_cover_every_index_once(tiny_backbone):
    tok = load_tokenizer(tiny_backbone)
    texts = _texts()
    full_lengths = [len(tok(t)["input_ids"]) for t in texts]
    seen = []
    widths = []
    for idx, batch in length_bucketed_batches(tok, texts, batch_size=16, max_length=128, shuffle=False):
        ids, mask = batch["input_ids"], batch["attention_mask"]
        assert ids.shape == mask.shape and ids.shape[0] == len(idx) <= 16
        # padded to this batch's longest text, not to a fixed size
        assert ids.shape[1] == max(full_lengths[i] for i in idx.tolist())
        # the mask marks exactly each text's own tokens
        assert mask.sum(dim=1).tolist() == [full_lengths[i] for i in idx.tolist()]
        assert (ids[mask == 0] == tok.pad_token_id).all()
        seen.extend(idx.tolist())
        widths.append(ids.shape[1])
    assert sorted(seen) == list(range(len(texts)))
    # bucketing: unshuffled batches come in increasing length, so short batches are short
    assert widths == sorted(widths)
    assert widths[0] < widths[-1]


def test_batches_respect_max_length(tiny_backbone):
    tok = load_tokenizer(tiny_backbone)
    texts = ["short", "a much longer text " * 30]
    for _, batch in length_bucketed_batches(tok, texts, batch_size=2, max_length=12, shuffle=False):
        assert batch["input_ids"].shape[1] == 12
        assert batch["attention_mask"].sum(dim=1).tolist() == [3, 12]
        # truncation keeps the closing [SEP]
        assert batch["input_ids"][1, -1].item() == tok.sep_token_id


def test_shuffle_is_random_but_deterministic_under_generator(tiny_backbone):
    tok = load_tokenizer(tiny_backbone)
    enc = encode_texts(tok, _texts(), 64)

    def order(seed):
        g = torch.Generator().manual_seed(seed)
        return [
            idx.tolist() for idx, _ in length_bucketed_batches(tok, enc, 8, 64, shuffle=True, generator=g)
        ]

    a, b, c = order(1), order(1), order(2)
    assert a == b
    assert a != c
    assert sorted(i for batch in a for i in batch) == list(range(len(enc)))
    unshuffled = [idx.tolist() for idx, _ in length_bucketed_batches(tok, enc, 8, 64, shuffle=False)]
    assert a != unshuffled


def test_classifier_forward_shapes_and_mean_pooling_ignores_padding(tiny_backbone):
    tok = load_tokenizer(tiny_backbone)
    model = TextClassifier(tiny_backbone, n_classes=3).eval()
    assert model.hidden_size == 32
    texts = ["a short one", "a considerably longer sentence with many more tokens in it"]
    batches = list(length_bucketed_batches(tok, texts, batch_size=2, max_length=64, shuffle=False))
    idx, batch = batches[0]
    with torch.no_grad():
        logits, pooled = model(**batch)
        # the short text alone (no padding) must pool to the same vector as inside the padded batch
        alone = tok([texts[0]], return_tensors="pt", return_token_type_ids=False)
        _, pooled_alone = model(alone["input_ids"], alone["attention_mask"])
    assert logits.shape == (2, 3) and pooled.shape == (2, 32)
    row = idx.tolist().index(0)
    assert torch.allclose(pooled[row], pooled_alone[0], atol=1e-5)


def test_resolve_backbone_and_device(tmp_path, tiny_backbone):
    assert resolve_backbone(tiny_backbone) == tiny_backbone
    assert resolve_backbone(None).endswith("model")
    with pytest.raises(InvalidInputError, match="not found"):
        resolve_backbone(str(tmp_path / "missing"))
    with pytest.raises(InvalidInputError, match="config.json"):
        resolve_backbone(str(tmp_path))
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(InvalidInputError):
            resolve_device("cuda")
    with autocast_context(torch.device("cpu")):
        assert torch.ones(2).dtype == torch.float32


def test_a_half_precision_model_dir_trains_in_float32(tmp_path, tiny_backbone):
    # Hub model dirs are often saved in float16 with "dtype": "float16" in config.json; recent transformers
    # then loads them in float16, which AdamW on CPU cannot train.
    import json
    import shutil

    from safetensors.torch import load_file, save_file

    half = tmp_path / "half"
    shutil.copytree(tiny_backbone, half)
    weights = load_file(half / "model.safetensors")
    save_file({k: v.half().contiguous() for k, v in weights.items()}, half / "model.safetensors")
    config = json.loads((half / "config.json").read_text())
    config["dtype"] = config["torch_dtype"] = "float16"
    (half / "config.json").write_text(json.dumps(config))

    for model in (TextClassifier(str(half), 3), TextClassifier.for_inference(str(half), 3)):
        assert {p.dtype for p in model.parameters()} == {torch.float32}
    model = TextClassifier(str(half), 3)
    batch = load_tokenizer(str(half))(["a short text", "another one"], return_tensors="pt", padding=True)
    logits, _ = model(batch["input_ids"], batch["attention_mask"])
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
