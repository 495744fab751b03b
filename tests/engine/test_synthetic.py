"""The toy dataset generator: requested noise level, text-dependent confusions, missing labels, determinism."""

from __future__ import annotations

from collections import Counter

from sidyp_engine.synthetic import _TOPICS, OVERUSED, PARTNER, make_toy_dataset


def _labelled(d: dict) -> list[tuple[str, str, str, str]]:
    rows = zip(d["texts"], d["noisy"], d["gold"], d["kinds"], strict=True)
    return [(t, n, g, k) for t, n, g, k in rows if n is not None]


def test_noise_is_systematic_and_at_the_requested_level():
    d = make_toy_dataset(n_per_class=300, noise=0.4, seed=0, missing=0.05)
    assert len(d["texts"]) == 4 * 300 and Counter(d["gold"]) == dict.fromkeys(d["classes"], 300)
    labelled = _labelled(d)
    wrong = [(n, g) for _, n, g, _ in labelled if n != g]
    assert abs(len(wrong) / len(labelled) - 0.4) < 0.05
    assert abs(1 - len(labelled) / len(d["texts"]) - 0.05) < 0.03
    # each gold class is mostly confused with its partner class, not spread uniformly
    for c in d["classes"]:
        confusions = Counter(n for n, g in wrong if g == c)
        assert confusions.most_common(1)[0][0] == PARTNER[c]
        assert confusions[PARTNER[c]] / sum(confusions.values()) > 0.6
    # the two confusable pairs hold almost all flips: not the 1/3 a uniform flip would give them
    pairs = sum(1 for n, g in wrong if PARTNER[g] == n)
    assert pairs / len(wrong) > 0.75


def test_noise_depends_on_what_the_text_says():
    d = make_toy_dataset(n_per_class=200, seed=0)
    cues = {phrase for parts in _TOPICS.values() for phrase in parts["cue"]}
    labelled = _labelled(d)
    with_cue = [n != g for t, n, g, _ in labelled if any(p in t for p in cues)]
    ambiguous = [n != g for _, n, g, k in labelled if k == "ambiguous"]
    plain = [n != g for _, n, g, k in labelled if k == "plain"]
    assert len(with_cue) > 100 and len(plain) > 100
    rate = {
        name: sum(r) / len(r) for name, r in (("cue", with_cue), ("ambiguous", ambiguous), ("plain", plain))
    }
    assert rate["cue"] > 0.6 and rate["plain"] < 0.1 and rate["ambiguous"] > 2 * rate["plain"]
    # a cue text that is labelled wrong gets its cue's topic
    assert all(n == PARTNER[g] for t, n, g, _ in labelled if n != g and any(p in t for p in cues))
    # the labeller over-uses one class on ambiguous texts: it is given far more often than it is gold
    amb = [(n, g) for _, n, g, k in labelled if k == "ambiguous"]
    assert sum(n == OVERUSED for n, _ in amb) > 1.5 * sum(g == OVERUSED for _, g in amb)


def test_topics_share_words():
    """No single class owns words like "team", "launched", "won", "record": the texts are not keyword-separable."""
    words = {
        c: {w for slot in parts.values() for phrase in slot for w in phrase.split()}
        for c, parts in _TOPICS.items()
    }
    for shared in ("team", "launched", "won", "record", "hot"):
        assert sum(shared in ws for ws in words.values()) >= 2, shared


def test_deterministic_under_seed():
    assert make_toy_dataset(20, seed=3) == make_toy_dataset(20, seed=3)
    assert make_toy_dataset(20, seed=3)["noisy"] != make_toy_dataset(20, seed=4)["noisy"]
