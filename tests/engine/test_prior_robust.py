"""The k-NN prior on awkward inputs: duplicate texts, very rare and never-used classes, trusted rows, many
classes, an accurate labeller (issue 13, parts 3 and 5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sidyp_engine.prior import balance_divisors, knn_prior, knn_votes, noise_model_prior, text_groups


def _ring(n: int, a: float = 0.1) -> torch.Tensor:
    """n points at the same distance from the query [1, 0, 0] (a ring around it): vote shares are counts."""
    phi = torch.arange(n) * (2 * torch.pi / n)
    a_t = torch.tensor(a)
    return torch.stack(
        [torch.cos(a_t).expand(n), torch.sin(a_t) * torch.cos(phi), torch.sin(a_t) * torch.sin(phi)], 1
    )


QUERY = torch.tensor([[1.0, 0.0, 0.0]])


def test_text_groups_ignore_case_and_whitespace():
    groups = text_groups(["Hello  world", " hello world\n", "HELLO\tWORLD", "hello worlds", "Hello world"])
    assert groups.tolist() == [0, 0, 0, 1, 0]


def _twins():
    """Rows 0 and 1 are one text (same point) labelled 1 inside a cluster of class-0 rows (2-5); rows 6-9
    are a class-1 cluster elsewhere."""
    angle = torch.tensor([0.0, 0.0, 0.05, 0.1, 0.15, 0.2, 1.5, 1.55, 1.6, 1.65])  # radians
    emb = torch.stack([torch.cos(angle), torch.sin(angle)], 1)
    noisy = torch.tensor([1, 1, 0, 0, 0, 0, 1, 1, 1, 1])
    texts = ["the twin", "The  twin "] + [f"text {i}" for i in range(2, 10)]
    return emb, noisy, text_groups(texts)


def test_a_row_never_votes_for_a_copy_of_its_text():
    emb, noisy, groups = _twins()
    clean = torch.ones(10, dtype=torch.bool)
    leaked = knn_prior(emb, noisy, clean, 2, k=3, balanced=False)  # rows alone: the twin votes at distance 0
    assert leaked.probs[0].argmax() == 1 and leaked.probs[0, 1] > 0.95
    out = knn_prior(emb, noisy, clean, 2, k=3, balanced=False, groups=groups)
    assert out.probs[0].tolist() == pytest.approx([1.0, 0.0]) and out.probs[1].tolist() == pytest.approx(
        [1.0, 0.0]
    )
    assert torch.isfinite(out.probs).all()


def test_a_validation_text_identical_to_a_training_text_may_use_it():
    emb, noisy, groups = _twins()
    out = knn_prior(emb, noisy, torch.ones(10, dtype=torch.bool), 2, k=3, queries=emb[:1], groups=groups)
    assert out.probs[0].argmax() == 1  # not a self-label: the validation row is not in the index


def test_a_text_present_five_times_votes_once():
    # five distinct points on the ring; the first is one text five times (labelled 0), the others class 1
    ring = _ring(5)
    emb = torch.cat([ring[:1].expand(5, 3), ring[1:]])
    groups = text_groups(["dup"] * 5 + ["a", "b", "c", "d"])
    noisy = torch.tensor([0] * 5 + [1] * 4)
    clean = torch.ones(9, dtype=torch.bool)
    rows_alone = knn_prior(emb, noisy, clean, 2, k=5, queries=QUERY, balanced=False)
    assert rows_alone.probs[0].tolist() == pytest.approx([1.0, 0.0], abs=1e-5)  # the copies fill k
    out = knn_prior(emb, noisy, clean, 2, k=5, queries=QUERY, balanced=False, groups=groups)
    assert out.probs[0].tolist() == pytest.approx([0.2, 0.8], abs=1e-5)
    # copies with different labels share one neighbour's weight: 3 x '0' and 2 x '2' -> 0.6 / 0.4 of a vote
    mixed = knn_prior(
        emb, torch.tensor([0, 0, 0, 2, 2] + [1] * 4), clean, 3, 5, QUERY, balanced=False, groups=groups
    )
    assert mixed.probs[0].tolist() == pytest.approx([0.12, 0.8, 0.08], abs=1e-5)


def test_copies_count_once_in_the_class_frequencies():
    # class 0: one text five times; class 1: four texts. Balanced by distinct texts, class 0 weighs 4x per vote
    ring = _ring(5)
    emb = torch.cat([ring[:1].expand(5, 3), ring[1:]])
    groups = text_groups(["dup"] * 5 + ["a", "b", "c", "d"])
    out = knn_prior(
        emb, torch.tensor([0] * 5 + [1] * 4), torch.ones(9, dtype=torch.bool), 2, 5, QUERY, groups=groups
    )
    assert out.probs[0].tolist() == pytest.approx([0.5, 0.5], abs=1e-5)


def test_rare_class_amplification_is_bounded():
    # 10 neighbours on the ring: 9 of class 0, 1 of class 4; far away 1000 more rows of classes 0-3 each.
    # Divided by its count alone, the one class-4 row would weigh ~800 average votes and take the query.
    rng = np.random.default_rng(0)
    far = torch.tensor([-1.0, 0.0, 0.0]) + 0.05 * torch.from_numpy(rng.normal(size=(3991, 3))).float()
    emb = torch.cat([_ring(10), far])
    far_labels = torch.tensor([0] * 991 + [1] * 1000 + [2] * 1000 + [3] * 1000)
    noisy = torch.cat([torch.tensor([0] * 9 + [4]), far_labels])
    assert torch.bincount(noisy).tolist() == [1000, 1000, 1000, 1000, 1]
    out = knn_prior(emb, noisy, torch.ones(len(noisy), dtype=torch.bool), 5, k=10, queries=QUERY)
    assert out.probs[0].argmax() == 0
    # one neighbour weighs at most k / 2 = 5 average votes: 5 / (5 + 9 * 1000 / 800.2)
    assert out.probs[0, 4] == pytest.approx(5 / (5 + 9 * 800.2 / 1000), abs=1e-3)


def test_balance_divisors_floor_only_the_very_rare_classes():
    counts = np.array([1000.0, 1000.0, 1000.0, 1000.0, 300.0, 1.0])  # mean 716.8
    divisors = balance_divisors(counts, k=10)
    mean = counts.mean()
    np.testing.assert_allclose(divisors[:5], counts[:5] / mean)  # under-used 2.4x: fully rebalanced
    assert divisors[5] == pytest.approx(0.2)  # floored: amplified k / 2 = 5x, not 717x
    # a wide neighbourhood (the frozen space's k = 50) may not amplify further: 5x, not k / 2 = 25x
    np.testing.assert_allclose(balance_divisors(counts, k=50), divisors)
    assert balance_divisors(counts, k=4)[5] == pytest.approx(0.5)  # a narrow one: k / 2 = 2x
    small = np.array([3.0, 1.0, 0.0])  # a tiny index: the floor never goes below one row
    np.testing.assert_allclose(balance_divisors(small, k=10), np.maximum(small, 1.0) / small.mean())


def test_a_class_the_labeller_never_used_gets_no_mass_and_no_nan():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 8, generator=g) * 3
    true = torch.arange(3).repeat_interleave(20)
    emb = centres[true] + 0.3 * torch.randn(60, 8, generator=g)
    clean = torch.ones(60, dtype=torch.bool)
    for balanced in (True, False):
        train = knn_prior(emb, true, clean, 4, k=5, balanced=balanced)  # class 3 exists, never labelled
        valid = knn_prior(emb, true, clean, 4, k=5, queries=emb[:7], balanced=balanced)
        for out in (train, valid):
            assert torch.isfinite(out.probs).all() and (out.probs[:, 3] == 0).all()
            assert torch.allclose(out.probs.sum(1), torch.ones(len(out.probs)))
            assert not out.candidates[out.certain][:, 3].any()
    fitted = noise_model_prior(emb, true, train.probs, 4, k=5, queries=[emb[:7]])
    assert torch.isfinite(fitted.train).all() and torch.isfinite(fitted.noise_matrix).all()
    assert float(fitted.train[:, 3].max()) < 1e-3


def _cluster_with_a_trusted_row():
    """Rows 0-4 one tight cluster labelled 0, rows 5-9 another labelled 1; row 0 is flagged (not clean)
    but the user checked it: its true class is 2."""
    emb = torch.tensor([[1.0, 0.0]] * 5 + [[0.0, 1.0]] * 5) + 1e-3 * torch.arange(10.0)[:, None]
    noisy = torch.tensor([0] * 5 + [1] * 5)
    clean = torch.ones(10, dtype=torch.bool)
    clean[0] = False
    trusted = np.full(10, -1)
    trusted[0] = 2
    return emb, noisy, clean, trusted


def test_trusted_rows_are_clean_vote_with_their_label_and_are_certain():
    emb, noisy, clean, trusted = _cluster_with_a_trusted_row()
    plain = knn_prior(emb, noisy, clean, 3, k=4, balanced=False)
    assert plain.probs[1, 2] == 0  # row 0 is flagged: not in the vote
    out = knn_prior(emb, noisy, clean, 3, k=4, balanced=False, trusted=trusted)
    assert out.probs[0].tolist() == [0.0, 0.0, 1.0]  # its trusted label, certain
    assert out.certain[0] and out.candidates[0].tolist() == [False, False, True]
    assert out.probs[1, 2] > 0.2  # row 0 is in the vote, with its trusted label
    valid = knn_prior(emb, noisy, clean, 3, k=1, queries=emb[:1] + 1e-4, trusted=trusted)
    assert valid.probs[0].argmax() == 2


def test_a_trusted_row_without_a_noisy_label_is_anchored_too():
    emb, noisy, clean, trusted = _cluster_with_a_trusted_row()
    noisy[0] = -1
    out = knn_prior(emb, noisy, clean, 3, k=4, balanced=False, trusted=trusted)
    assert out.certain[0] and out.probs[0].argmax() == 2 and out.probs[1, 2] > 0.2


def test_the_noise_model_keeps_trusted_rows_on_their_label():
    emb, noisy, clean, trusted = _cluster_with_a_trusted_row()
    init = knn_prior(emb, noisy, clean, 3, k=4, trusted=trusted).probs
    fitted = noise_model_prior(emb, noisy, init, 3, k=4, trusted=trusted)
    assert fitted.train[0].tolist() == [0.0, 0.0, 1.0]
    assert torch.isfinite(fitted.train).all()


def test_the_noise_model_never_reads_a_copy_of_the_row():
    from sidyp_engine.prior import _labelled_neighbour_votes

    emb, noisy, groups = _twins()
    leaked, _ = _labelled_neighbour_votes(emb, noisy.numpy(), 2, 3, [])
    assert leaked[0, 1] > 0.95
    votes, _ = _labelled_neighbour_votes(emb, noisy.numpy(), 2, 3, [], groups)
    assert votes[0].tolist() == pytest.approx([1.0, 0.0])


def _clusters(n_classes: int, n_per_class: int, flip: float, seed: int, sizes=None):
    rng = np.random.default_rng(seed)
    sizes = sizes or [n_per_class] * n_classes
    centres = rng.normal(size=(n_classes, 32)) * 2
    true = np.repeat(np.arange(n_classes), sizes)
    emb = centres[true] + rng.normal(size=(len(true), 32))
    noisy = true.copy()
    flipped = rng.random(len(true)) < flip
    noisy[flipped] = (true[flipped] + rng.integers(1, n_classes, flipped.sum())) % n_classes
    return torch.from_numpy(emb).float(), torch.from_numpy(noisy), true


def test_twenty_five_classes():
    emb, noisy, true = _clusters(25, 20, flip=0.2, seed=1)
    out = knn_prior(emb, noisy, torch.ones(len(true), dtype=torch.bool), 25, k=10)
    assert out.probs.shape == (500, 25) and torch.isfinite(out.probs).all()
    assert (out.probs.argmax(1).numpy() == true).mean() >= 0.9
    assert len(set(out.probs.argmax(1).tolist())) == 25


def test_an_accurate_binary_labeller_keeps_its_labels():
    # 95 % right, classes 70 / 30: the prior must follow the labels, not collapse onto one class
    emb, noisy, true = _clusters(2, 0, flip=0.05, seed=2, sizes=[700, 300])
    out = knn_prior(emb, noisy, torch.ones(1000, dtype=torch.bool), 2, k=10)
    pred = out.probs.argmax(1)
    assert (pred == noisy).float().mean() >= 0.9
    assert 0.2 <= float(pred.float().mean()) <= 0.4


def test_knn_votes_accepts_class_ids_and_distributions_alike():
    base = np.random.default_rng(3).normal(size=(30, 4)).astype(np.float32)
    labels = np.arange(30) % 3
    ids = knn_votes(base, labels, base[:5], 3, k=4)
    dists = knn_votes(base, np.eye(3)[labels], base[:5], 3, k=4)
    np.testing.assert_allclose(ids, dists, atol=1e-6)


def test_vote_rows_take_the_trusted_labels_of_the_fitted_rows_and_group_their_texts():
    from sidyp_engine.stages.inputs import Inputs
    from sidyp_engine.stages.prior import NoiseFlags, vote_rows

    texts = ["a b", "c", "A  b", "d", "e", "c "]
    ids = np.array([0, 1, 0, -1, 1, 1])
    is_validation = np.array([False, True, False, False, True, False])
    fit = np.flatnonzero(~is_validation)  # caller rows 0, 2, 3, 5
    inputs = Inputs(
        texts, ids, ["x", "y"], [texts[i] for i in fit], ids[fit], [texts[1], texts[4]], ids[[1, 4]], [],
        is_validation, fit,
    )  # fmt: skip
    clean = torch.tensor([True, False, False, True])
    flags = NoiseFlags(torch.zeros(4), ~clean, 0.5, clean)
    trusted = np.array([-1, 0, 1, 1, -1, -1])  # caller rows 1 (held out), 2 and 3 are trusted
    rows = vote_rows(inputs, flags, trusted)
    assert rows.trusted.tolist() == [-1, 1, 1, -1]
    assert rows.clean.tolist() == [True, True, True, True]
    assert rows.labelled.tolist() == [True, True, True, True]  # row 3 has no noisy label but a trusted one
    assert rows.groups.tolist() == [0, 0, 1, 2]  # "a b" and "A  b" are one text
    plain = vote_rows(inputs, flags, None)
    assert plain.trusted is None and plain.clean.tolist() == clean.tolist()
    assert plain.labelled.tolist() == [True, True, False, True]


def test_a_rare_class_in_a_wide_neighbourhood_is_amplified_five_times_not_k_over_2():
    # two classes, the labeller gives the first to 2 % of the rows; 4 of a query's 50 neighbours carry it
    dim = 4
    near = np.tile(np.eye(dim)[0], (50, 1)).astype(np.float32)  # all at the query: equal weights
    far = np.tile(-np.eye(dim)[0], (4950, 1)).astype(np.float32)
    labels = np.concatenate([np.zeros(4), np.ones(46), np.zeros(96), np.ones(4854)]).astype(np.int64)
    votes = knn_votes(np.concatenate([near, far]), labels, np.eye(dim, dtype=np.float32)[:1], 2, k=50)
    # 4 x 5 = 20 against 46 / 1.96 = 23.5 average votes: the neighbourhood's majority keeps the query
    # (at k / 2 = 25x it was 100 against 23.5, share 0.81)
    assert votes[0, 0] == pytest.approx(20 / (20 + 46 / 1.96), abs=1e-3)
    assert votes[0].argmax() == 1
