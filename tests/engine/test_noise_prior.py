"""Noise score ranks planted outliers high; the auto share tracks the planted share; k-NN prior rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sidyp_engine.noise import noise_scores, select_likely_noisy
from sidyp_engine.prior import knn_prior


def _planted_dynamics(seed: int = 0, n_per_class: int = 40, n_classes: int = 3, flipped_per_class: int = 6):
    """Clusters per true class over M=2 branches and E=3 epochs; some rows carry another class's label."""
    g = torch.Generator().manual_seed(seed)
    d = 16
    centres = torch.randn(n_classes, d, generator=g) * 3
    true = torch.arange(n_classes).repeat_interleave(n_per_class)
    noisy = true.clone()
    planted = []
    for c in range(n_classes):
        rows = torch.nonzero(true == c).flatten()[:flipped_per_class]
        noisy[rows] = (c + 1) % n_classes
        planted.extend(rows.tolist())
    base = centres[true]
    dyn = base[None, :, None, :] + 0.5 * torch.randn(2, len(true), 3, d, generator=g)
    return dyn, noisy, torch.tensor(sorted(planted))


def test_noise_score_ranks_planted_label_flips_highest():
    dyn, noisy, planted = _planted_dynamics()
    scores = noise_scores(dyn, noisy)
    top = torch.topk(scores, len(planted)).indices
    assert set(top.tolist()) == set(planted.tolist())


def test_missing_labels_get_no_score_and_are_never_flagged():
    dyn, noisy, _ = _planted_dynamics()
    noisy[[0, 1]] = -1
    scores = noise_scores(dyn, noisy)
    assert torch.isnan(scores[[0, 1]]).all() and torch.isfinite(scores[2:]).all()
    mask, _ = select_likely_noisy(scores, noisy, 0.5)
    assert not mask[[0, 1]].any()


def test_fixed_fraction_is_taken_within_every_noisy_class():
    # class 1 has much larger scores overall: pooled selection would flag only class 1
    noisy = torch.tensor([0] * 10 + [1] * 10)
    scores = torch.cat([torch.arange(10.0), 100 + torch.arange(10.0)])
    mask, frac = select_likely_noisy(scores, noisy, 0.3)
    assert frac == 0.3
    assert mask[:10].nonzero().flatten().tolist() == [7, 8, 9]
    assert mask[10:].nonzero().flatten().tolist() == [7, 8, 9]


@pytest.mark.parametrize("planted_fraction", [0.2, 0.4])
def test_auto_fraction_recovers_the_planted_share(planted_fraction):
    rng = np.random.default_rng(1)
    scores, noisy = [], []
    for c, spread in enumerate([0.08, 0.1, 0.12]):  # distances between unit vectors: one common scale
        n = 400
        k = int(planted_fraction * n)
        scores.append(np.concatenate([rng.normal(0.6, spread, n - k), rng.normal(1.2, spread, k)]))
        noisy.append(np.full(n, c))
    mask, frac = select_likely_noisy(
        torch.tensor(np.concatenate(scores)), torch.tensor(np.concatenate(noisy))
    )
    assert abs(frac - planted_fraction) < 0.05
    assert abs(float(mask.float().mean()) - planted_fraction) < 0.05


def test_knn_prior_leaves_the_example_itself_out():
    # two tight groups; row 0 sits in group A but is labelled 1 like group B: without leave-one-out its
    # own vote (distance ~0, largest weight) would dominate and hand its noisy label back
    emb = torch.tensor([[1.0, 0.0]] * 4 + [[0.0, 1.0]] * 4) + 1e-4 * torch.arange(8.0)[:, None]
    noisy = torch.tensor([1, 0, 0, 0, 1, 1, 1, 1])
    out = knn_prior(emb, noisy, torch.ones(8, dtype=torch.bool), n_classes=2, k=3)
    assert out.probs[0].argmax() == 0
    assert torch.allclose(out.probs.sum(1), torch.ones(8))
    assert out.certain[0] and out.candidates[0].tolist() == [True, False]


def test_knn_prior_uses_only_the_clean_set():
    emb = torch.tensor([[1.0, 0.0]] * 4 + [[0.0, 1.0]] * 4)
    noisy = torch.tensor([1, 1, 0, 0, 1, 1, 1, 1])
    clean = torch.tensor([False, False, True, True, True, True, True, True])
    out = knn_prior(emb, noisy, clean, n_classes=2, k=2)
    # rows 0/1 (flagged) see only the clean class-0 rows of their own group
    assert out.probs[0].tolist() == pytest.approx([1.0, 0.0])


def _prior_from_votes(votes: list[int], n_classes: int, k: int, balanced: bool = False):
    """Query one point against neighbours all at the same distance (a ring around it), so vote shares
    are the label counts over k."""
    n = len(votes)
    phi = torch.arange(n) * (2 * torch.pi / n)
    a = torch.tensor(0.1)
    emb = torch.stack(
        [torch.cos(a).expand(n), torch.sin(a) * torch.cos(phi), torch.sin(a) * torch.sin(phi)], 1
    )
    return knn_prior(
        emb,
        torch.tensor(votes),
        torch.ones(n, dtype=torch.bool),
        n_classes,
        k,
        queries=torch.tensor([[1.0, 0.0, 0.0]]),
        balanced=balanced,
    )


def test_candidate_rules_certain_two_and_all():
    certain = _prior_from_votes([2] * 10, n_classes=4, k=10)
    assert certain.certain.tolist() == [True]
    assert certain.candidates[0].tolist() == [False, False, True, False]

    two = _prior_from_votes([1] * 6 + [3] * 3 + [0], n_classes=4, k=10)
    assert two.probs[0].tolist() == pytest.approx([0.1, 0.6, 0.0, 0.3], abs=1e-5)
    assert two.certain.tolist() == [False]
    assert two.candidates[0].tolist() == [False, True, False, True]

    spread = _prior_from_votes([0] * 4 + [1] * 3 + [2] * 3, n_classes=4, k=10)
    assert spread.certain.tolist() == [False]
    assert spread.candidates[0].all()


def test_unlabelled_queries_keep_all_candidates_even_with_a_confident_vote():
    emb = torch.tensor([[1.0, 0.0]] * 5)
    out = knn_prior(
        emb,
        torch.zeros(5, dtype=torch.long),
        torch.ones(5, dtype=torch.bool),
        3,
        3,
        queries=torch.tensor([[1.0, 0.0], [1.0, 0.0]]),
        query_noisy=torch.tensor([0, -1]),
    )
    assert out.certain.tolist() == [True, False]
    assert out.candidates[1].all() and out.probs[1].argmax() == 0


def test_vote_smoothing_matches_the_agreement_rate_of_validation_labels():
    from sidyp_engine.prior import fit_vote_smoothing

    # confident votes for class 0; 60% of the labels agree, the rest spread over the two other classes.
    # The likelihood is maximal when each wrong class gets (1 - 0.6) / 2, i.e. eps = 3 * 0.2 = 0.6.
    votes = torch.tensor([[1.0, 0.0, 0.0]] * 100)
    labels = torch.tensor([0] * 60 + [1] * 20 + [2] * 20)
    assert fit_vote_smoothing(votes, labels) == pytest.approx(0.6, abs=0.011)
    assert fit_vote_smoothing(votes, torch.zeros(100, dtype=torch.long)) == 0.0  # votes always right
    assert fit_vote_smoothing(votes, torch.full((100,), -1)) == 0.0  # no labels: no evidence


def test_balanced_votes_divide_by_class_frequency_in_the_index():
    # 6 neighbours of class 1, 3 of class 3, 1 of class 0, all equidistant: raw shares 0.6 / 0.3 / 0.1;
    # divided by each class's frequency in the index every present class weighs the same
    raw = _prior_from_votes([1] * 6 + [3] * 3 + [0], n_classes=4, k=10)
    bal = _prior_from_votes([1] * 6 + [3] * 3 + [0], n_classes=4, k=10, balanced=True)
    assert raw.probs[0].tolist() == pytest.approx([0.1, 0.6, 0.0, 0.3], abs=1e-5)
    assert bal.probs[0].tolist() == pytest.approx([1 / 3, 1 / 3, 0.0, 1 / 3], abs=1e-5)


def _habitual_labeller(seed: int = 0, n_per_class: int = 80):
    """Three tight clusters (true classes 0, 1, 2); the labeller calls most class-2 texts '0'.

    Noise rows (P(noisy | true)): class 0 -> [0.9, 0.1, 0], class 1 -> [0.1, 0.9, 0],
    class 2 -> [0.5, 0.2, 0.3]: inside cluster 2 the most frequent noisy label is the wrong one.
    """
    g = np.random.default_rng(seed)
    rows = {0: [0.9, 0.1, 0.0], 1: [0.1, 0.9, 0.0], 2: [0.5, 0.2, 0.3]}
    centres = np.eye(3, 16) * 4.0
    emb, truth, noisy = [], [], []
    for c, row in rows.items():
        emb.append(centres[c] + 0.3 * g.standard_normal((n_per_class, 16)))
        truth += [c] * n_per_class
        noisy += list(g.choice(3, size=n_per_class, p=row))
    return (
        torch.tensor(np.concatenate(emb), dtype=torch.float32),
        torch.tensor(truth),
        torch.tensor(noisy),
        centres,
        g,
    )


def test_noise_model_reads_the_true_class_where_the_vote_reads_the_habit():
    from sidyp_engine.prior import noise_model_prior

    emb, truth, noisy, centres, g = _habitual_labeller()
    everyone = torch.ones(len(noisy), dtype=torch.bool)
    vote = knn_prior(emb, noisy, everyone, 3, k=10, balanced=False)
    balanced = knn_prior(emb, noisy, everyone, 3, k=10)  # the pipeline starts EM from the balanced vote
    fitted = noise_model_prior(emb, noisy, balanced.probs, 3, k=10)
    in_cluster_2 = truth == 2
    vote_right = (vote.probs.argmax(1)[in_cluster_2] == 2).float().mean()
    model_right = (fitted.train.argmax(1)[in_cluster_2] == 2).float().mean()
    assert vote_right < 0.5  # the plain vote mostly follows the labeller's habit
    assert model_right > 0.9
    assert (fitted.train.argmax(1) == truth).float().mean() > 0.85
    # the estimated noise row of class 2 is the labeller's habit, not the identity
    assert abs(float(fitted.noise_matrix[2, 0]) - 0.5) < 0.2
    assert abs(float(fitted.noise_matrix[2, 2]) - 0.3) < 0.2
    # EM has converged: more iterations change nothing
    longer = noise_model_prior(emb, noisy, balanced.probs, 3, k=10, max_iterations=300, tolerance=0.0)
    assert torch.allclose(longer.train, fitted.train, atol=1e-3)
    # the class prior is the starting prior's, never re-estimated (that is what lets one class absorb the rest)
    assert torch.allclose(fitted.class_prior, balanced.probs.mean(0), atol=1e-4)
    # unseen texts of cluster 2 (no label of their own) get class 2 from their neighbours' labels alone
    queries = torch.tensor(centres[2] + 0.3 * g.standard_normal((20, 16)), dtype=torch.float32)
    refit = noise_model_prior(emb, noisy, balanced.probs, 3, k=10, queries=[queries, queries[:0]])
    assert (refit.queries[0].argmax(1) == 2).all()
    assert refit.queries[1].shape == (0, 3)


def test_noise_model_ignores_rows_without_a_label_as_neighbours():
    from sidyp_engine.prior import noise_model_prior

    emb, truth, noisy, _, _ = _habitual_labeller(seed=1)
    # unlabel every '0' label in cluster 2 except a few: if unlabelled rows voted, their -1 would index
    # a class; with them out, cluster 2's remaining labels ('1', '2') still point to class 2
    unlabelled = (truth == 2) & (noisy == 0)
    noisy_missing = noisy.clone()
    noisy_missing[unlabelled] = -1
    everyone = noisy_missing >= 0
    init = knn_prior(emb, noisy_missing, everyone, 3, k=10).probs
    fitted = noise_model_prior(emb, noisy_missing, init, 3, k=10)
    assert torch.isfinite(fitted.train).all()
    assert torch.allclose(fitted.train.sum(1), torch.ones(len(noisy)), atol=1e-5)
    assert (fitted.train.argmax(1)[unlabelled] == 2).float().mean() > 0.9


def test_vote_smoothing_through_the_noise_matrix_recovers_the_planted_share():
    from sidyp_engine.prior import fit_vote_smoothing

    g = np.random.default_rng(3)
    t = np.array([[0.8, 0.2, 0.0], [0.1, 0.9, 0.0], [0.5, 0.2, 0.3]])
    truth = g.integers(0, 3, size=6000)
    prior = np.eye(3)[truth]  # a prior over true classes that is always right ...
    planted = 0.3  # ... but trusted only 70 %: the rest of the noisy labels come from the flat prior
    flat = t.mean(axis=0)
    rows = np.where(g.random(6000)[:, None] < planted, flat[None, :], t[truth])
    noisy = np.array([g.choice(3, p=r / r.sum()) for r in rows])
    eps = fit_vote_smoothing(torch.tensor(prior), torch.tensor(noisy), torch.tensor(t))
    assert eps == pytest.approx(planted, abs=0.05)
    # read without the matrix, the same prior looks far less trustworthy (its class is not the label)
    assert fit_vote_smoothing(torch.tensor(prior), torch.tensor(noisy)) > planted + 0.2
