"""The toy dataset generator: requested noise level, systematic confusions, missing labels, determinism."""

from __future__ import annotations

from collections import Counter

from sidyp_engine.synthetic import make_toy_dataset


def test_noise_is_systematic_and_at_the_requested_level():
    d = make_toy_dataset(n_per_class=300, noise=0.4, seed=0, missing=0.05, systematic_share=0.75)
    assert len(d["texts"]) == 4 * 300 and Counter(d["gold"]) == dict.fromkeys(d["classes"], 300)
    labelled = [(n, g) for n, g in zip(d["noisy"], d["gold"], strict=True) if n is not None]
    wrong = [(n, g) for n, g in labelled if n != g]
    assert abs(len(wrong) / len(labelled) - 0.4) < 0.05
    assert abs(1 - len(labelled) / len(d["texts"]) - 0.05) < 0.03
    # each gold class is mostly confused with one habitual other class, not spread uniformly
    for c in d["classes"]:
        confusions = Counter(n for n, g in wrong if g == c)
        assert confusions.most_common(1)[0][1] / sum(confusions.values()) > 0.6


def test_deterministic_under_seed():
    assert make_toy_dataset(20, seed=3) == make_toy_dataset(20, seed=3)
    assert make_toy_dataset(20, seed=3)["noisy"] != make_toy_dataset(20, seed=4)["noisy"]
