"""Plain-PyTorch BERT and the `tokenizers`-only tokenizer: equal to transformers, and a load without it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sidyp_engine.bert_inference import BertEncoder, FastTokenizer, read_config, supports
from sidyp_engine.model import TextClassifier, load_tokenizer, resolve_backbone
from sidyp_engine.served import ServedClassifier

REPO_ROOT = Path(__file__).resolve().parents[2]

TEXTS = [
    "the football match was great today",
    "Café déjà vu: a naïve résumé, Ünïcödé ÀÉÎÕÜ straße",
    "日本語のテキストと中文字符 😀 emoji ☃",
    " ".join(["word"] * 300),  # far beyond 128 tokens
    " ".join(f"tok{i} antidisestablishmentarianism" for i in range(60)),
    "a",
    "?!",
    "\t leading and trailing whitespace \n",
    "hello [SEP] world [MASK] [CLS] special tokens in the text",
    "    ",
    "",
]


def _padded_batch(tokenizer, texts, max_length=64):
    ids = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    width = max(map(len, ids))
    input_ids = torch.zeros(len(ids), width, dtype=torch.long)
    mask = torch.zeros(len(ids), width, dtype=torch.long)
    for i, seq in enumerate(ids):
        input_ids[i, : len(seq)] = torch.tensor(seq)
        mask[i, : len(seq)] = 1
    return input_ids, mask


# ------------------------------------------------------------------------------------------ encoder
@pytest.mark.parametrize("hidden_act", ["gelu", "gelu_new", "gelu_pytorch_tanh", "relu"])
def test_encoder_matches_hf_bert_on_a_padded_batch(tiny_backbone, hidden_act):
    from transformers import BertConfig, BertModel

    config = read_config(tiny_backbone)
    config["hidden_act"] = hidden_act
    torch.manual_seed(1)
    hf = BertModel(BertConfig(**config)).eval()
    ours = BertEncoder(config).eval()
    ours.load_state_dict(hf.state_dict(), strict=True)
    input_ids, mask = _padded_batch(load_tokenizer(tiny_backbone), TEXTS)
    assert (mask == 0).any() and (mask.sum(1) > 2).any()  # really padded, really varied
    with torch.inference_mode():
        want = hf(input_ids=input_ids, attention_mask=mask)
        got = ours(input_ids=input_ids, attention_mask=mask)
        unpadded = ours(
            input_ids=input_ids[:1, : int(mask[0].sum())], attention_mask=mask[:1, : int(mask[0].sum())]
        )
    # every position, padded ones included (they still attend to the real tokens)
    torch.testing.assert_close(got.last_hidden_state, want.last_hidden_state, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.pooler_output, want.pooler_output, atol=1e-5, rtol=0)
    # padding changes nothing for the real tokens
    torch.testing.assert_close(
        unpadded.last_hidden_state[0], got.last_hidden_state[0, : int(mask[0].sum())], atol=1e-5, rtol=0
    )


def test_state_dict_names_mirror_bert_model(tiny_backbone):
    from transformers import AutoModel

    hf = AutoModel.from_pretrained(tiny_backbone, local_files_only=True)
    ours = BertEncoder(read_config(tiny_backbone))
    assert set(ours.state_dict()) == set(hf.state_dict())
    assert ours.config.hidden_size == hf.config.hidden_size


# ---------------------------------------------------------------------------------------- tokenizer
@pytest.mark.parametrize("max_length", [128, 16, 3])
def test_tokenizer_ids_equal_autotokenizer(tiny_backbone, max_length):
    from transformers import AutoTokenizer

    assert FastTokenizer.usable(tiny_backbone)
    ours = FastTokenizer(tiny_backbone)
    hf = AutoTokenizer.from_pretrained(tiny_backbone)
    kwargs = dict(
        truncation=True,
        max_length=max_length,
        padding=False,
        return_attention_mask=False,
        return_token_type_ids=False,
    )
    got = ours(TEXTS, **kwargs)
    want = hf(TEXTS, **kwargs)
    assert set(got) == {"input_ids"}
    assert got["input_ids"] == want["input_ids"]
    assert max(map(len, got["input_ids"])) == max_length  # special tokens count towards the limit
    assert ours.pad_token_id == hf.pad_token_id
    # a single text, and the masks when asked for
    assert ours(TEXTS[1], truncation=True, max_length=max_length)["input_ids"] == want["input_ids"][1]
    masks = ours(TEXTS, truncation=True, max_length=max_length, return_attention_mask=True)
    assert masks["attention_mask"] == hf(TEXTS, truncation=True, max_length=max_length)["attention_mask"]


def test_tokenizer_lengths_do_not_interfere(tiny_backbone):
    tok = FastTokenizer(tiny_backbone)
    long_text = TEXTS[3]
    assert len(tok([long_text], max_length=10)["input_ids"][0]) == 10
    assert len(tok([long_text], max_length=50)["input_ids"][0]) == 50
    assert len(tok([long_text], max_length=10)["input_ids"][0]) == 10
    assert len(tok([long_text], truncation=False)["input_ids"][0]) == 302


# ------------------------------------------------------------------------------------- served model
@pytest.fixture(scope="module")
def saved_dir(tiny_backbone, tmp_path_factory) -> str:
    torch.manual_seed(0)
    model = TextClassifier(tiny_backbone, 3)
    served = ServedClassifier(model, load_tokenizer(tiny_backbone), ["a", "b", "c"], 1.7, 32, "cpu")
    directory = tmp_path_factory.mktemp("served-tiny")
    served.save(directory)
    return str(directory)


def _transformers_path(directory: str) -> ServedClassifier:
    """What `ServedClassifier.load` did before the fast path (and still does for other architectures)."""
    from safetensors.torch import load_file

    with open(os.path.join(directory, "sidyp_served.json"), encoding="utf-8") as f:
        meta = json.load(f)
    model = TextClassifier(directory, len(meta["classes"]), pretrained=False)
    model.load_state_dict(load_file(os.path.join(directory, "model.safetensors")), strict=True)
    return ServedClassifier(
        model, load_tokenizer(directory), meta["classes"], meta["temperature"], meta["max_length"], "cpu"
    )


def _nonempty(texts):
    return [t for t in texts if t.strip()]


def test_served_fast_path_predicts_as_the_transformers_path(saved_dir):
    fast = ServedClassifier.load(saved_dir)
    assert isinstance(fast.model.backbone, BertEncoder)
    assert isinstance(fast.tokenizer, FastTokenizer)
    assert fast.model.hidden_size == 32
    slow = _transformers_path(saved_dir)
    assert not isinstance(slow.model.backbone, BertEncoder)
    texts = _nonempty(TEXTS) * 3
    np.testing.assert_allclose(
        fast.predict_proba(texts, batch_size=4), slow.predict_proba(texts, batch_size=4), atol=1e-5
    )


def test_fast_loaded_model_saves_a_dir_both_paths_read(saved_dir, tmp_path):
    fast = ServedClassifier.load(saved_dir)
    fast.save(tmp_path)
    texts = _nonempty(TEXTS)
    want = fast.predict_proba(texts)
    np.testing.assert_allclose(ServedClassifier.load(tmp_path).predict_proba(texts), want, atol=1e-6)
    np.testing.assert_allclose(_transformers_path(str(tmp_path)).predict_proba(texts), want, atol=1e-5)


def test_no_tokenizer_json_falls_back_to_transformers_tokenizer(saved_dir, tmp_path):
    shutil.copytree(saved_dir, tmp_path, dirs_exist_ok=True)
    os.remove(tmp_path / "tokenizer.json")
    shutil.copy(os.path.join(resolve_backbone(None), "vocab.txt"), tmp_path)
    assert not FastTokenizer.usable(tmp_path)
    loaded = ServedClassifier.load(tmp_path)
    assert isinstance(loaded.model.backbone, BertEncoder)
    assert not isinstance(loaded.tokenizer, FastTokenizer)
    texts = _nonempty(TEXTS)
    np.testing.assert_allclose(
        loaded.predict_proba(texts), ServedClassifier.load(saved_dir).predict_proba(texts), atol=1e-5
    )


@pytest.mark.parametrize(
    "change",
    [
        {"model_type": "roberta"},
        {"position_embedding_type": "relative_key"},
        {"position_embedding_type": "relative_key_query"},
        {"hidden_act": "silu"},
        {"is_decoder": True},
        {"add_cross_attention": True},
        {"dtype": "bfloat16"},
        {"num_attention_heads": 5},
        {"embedding_size": 16},
    ],
)
def test_supports_only_plain_bert(tiny_backbone, change):
    config = read_config(tiny_backbone)
    assert supports(config)
    assert not supports({**config, **change})


def test_unsupported_config_loads_through_transformers(saved_dir, tmp_path):
    shutil.copytree(saved_dir, tmp_path, dirs_exist_ok=True)
    config = read_config(tmp_path)
    config["position_embedding_type"] = "relative_key"
    with open(tmp_path / "config.json", "w", encoding="utf-8") as f:
        json.dump(config, f)
    assert not supports(read_config(tmp_path))
    loaded = ServedClassifier.load(tmp_path)
    assert not isinstance(loaded.model.backbone, BertEncoder)
    assert not isinstance(loaded.tokenizer, FastTokenizer)
    probs = loaded.predict_proba(_nonempty(TEXTS))
    assert probs.shape == (len(_nonempty(TEXTS)), 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.slow  # a fresh interpreter: in `make test`, not `make test-fast`
def test_load_in_a_fresh_process_never_imports_transformers_models(saved_dir):
    code = (
        "import sys, json\n"
        "from sidyp_engine.served import ServedClassifier\n"
        f"m = ServedClassifier.load({saved_dir!r})\n"
        "p = m.predict_proba(['the football match was great today', 'a b c'])\n"
        "print(json.dumps({'modeling_utils': 'transformers.modeling_utils' in sys.modules,\n"
        "  'models': sorted(k for k in sys.modules if k.startswith('transformers.models')),\n"
        "  'backbone': type(m.model.backbone).__name__, 'rows': len(p)}))\n"
    )
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "TOKENIZERS_PARALLELISM": "false"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"modeling_utils": False, "models": [], "backbone": "BertEncoder", "rows": 2}
