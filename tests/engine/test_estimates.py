"""Gold-free accuracy estimates on planted data: the truth is known, the estimator only sees noisy labels."""

from __future__ import annotations

import numpy as np
import pytest

from sidyp_engine import estimates

N, C = 4000, 4


def _draw(rng: np.random.Generator, y: np.ndarray, confusion: np.ndarray) -> np.ndarray:
    """Per row, a class drawn from confusion[y]: labels or predictions independent of each other given y."""
    cum = confusion.cumsum(axis=1)[y]
    return (rng.random(len(y))[:, None] > cum).sum(axis=1).clip(0, confusion.shape[1] - 1)


def _symmetric(rho: float, n_classes: int = C) -> np.ndarray:
    return np.full((n_classes, n_classes), rho / (n_classes - 1)) + np.eye(n_classes) * (
        1 - rho - rho / (n_classes - 1)
    )


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_random_noise_good_predictor_estimated_close_to_truth(rng):
    y = rng.integers(0, C, N)
    t = _symmetric(0.3)
    noisy = _draw(rng, y, t)
    pred = _draw(rng, y, _symmetric(0.1))  # a classifier that averaged the noise out: 90 % right
    est = estimates.predictor_accuracy(pred, noisy, t)
    truth = float((pred == y).mean())
    assert est.method == "moments"
    assert abs(est.accuracy - truth) < 0.03
    assert est.low <= truth <= est.high
    # the naive reading (agreement with the noisy labels) is far off: the estimator is doing the work
    assert abs(float((pred == noisy).mean()) - truth) > 0.2


def test_systematic_confusion_undoing_predictor_beats_copying_one(rng):
    y = rng.integers(0, C, N)
    t = np.eye(C)
    t[0] = [0.6, 0.4, 0.0, 0.0]  # class 0 labelled 1 40 % of the time
    noisy = _draw(rng, y, t)
    undo = _draw(rng, y, _symmetric(0.05))
    copy = _draw(rng, y, t)  # makes the labeller's mistake at the labeller's rate
    est_undo = estimates.predictor_accuracy(undo, noisy, t)
    est_copy = estimates.predictor_accuracy(copy, noisy, t)
    assert est_undo.accuracy > est_copy.high
    assert abs(est_undo.accuracy - float((undo == y).mean())) < 0.03
    assert abs(est_copy.accuracy - float((copy == y).mean())) < 0.03
    # agreement with the noisy labels ranks them the other way round
    assert (copy == noisy).mean() > (undo == noisy).mean() - 0.05


def test_clean_labels_estimate_is_agreement(rng):
    y = rng.integers(0, C, 500)
    pred = _draw(rng, y, _symmetric(0.2))
    est = estimates.predictor_accuracy(pred, y, np.eye(C))
    assert est.accuracy == pytest.approx(float((pred == y).mean()), abs=1e-9)
    labels = estimates.label_accuracy(y, np.eye(C))
    assert labels.accuracy == pytest.approx(1.0)
    assert labels.complement().accuracy == pytest.approx(0.0)


def test_label_accuracy_and_noise_share(rng):
    y = rng.choice(C, N, p=[0.4, 0.3, 0.2, 0.1])
    t = _symmetric(0.25)
    t[2] = [0.3, 0.0, 0.7, 0.0]
    noisy = _draw(rng, y, t)
    est = estimates.label_accuracy(noisy, t)
    truth = float((noisy == y).mean())
    assert abs(est.accuracy - truth) < 0.03
    assert est.low <= truth <= est.high
    share = est.complement()
    assert share.accuracy == pytest.approx(1 - est.accuracy)
    assert share.low == pytest.approx(1 - est.high)


def test_near_singular_noise_matrix_falls_back_with_a_wide_interval(rng):
    y = rng.integers(0, 3, 2000)
    t = np.array([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])  # classes 0 and 1 look alike
    noisy = _draw(rng, y, t)
    pred = _draw(rng, y, _symmetric(0.1, 3))
    est = estimates.predictor_accuracy(pred, noisy, t)
    assert est.method == "bound"
    assert est.high - est.low > 0.3
    assert est.low <= float((pred == y).mean()) <= est.high
    assert estimates.label_accuracy(noisy, t).method == "bound"


def test_a_copier_the_moments_read_as_perfect_is_held_to_the_wrong_share(rng):
    """A model that reproduces its labels, where T cannot see the labeller's errors (T read as the identity,
    as anchor points of such a model give): the moments say 1.0. With 30 % of the labels wrong, it can be right
    at most where the labels are right (plus where it departs from them): the held estimate says so."""
    y = rng.integers(0, C, N)
    noisy = _draw(rng, y, _symmetric(0.3))
    copy = noisy.copy()
    copy[:40] = (copy[:40] + 1) % C  # departs from 1 % of the labels
    moments = estimates.predictor_accuracy(copy, noisy, np.eye(C))
    assert moments.accuracy > 0.98
    wrong = float((noisy != y).mean())
    held = estimates.held_to_wrong_share(moments, copy, noisy, wrong)
    truth = float((copy == y).mean())
    assert abs(held.accuracy - truth) < 0.02 and held.accuracy < 0.72
    assert held.low <= held.accuracy <= held.high and held.high >= moments.high  # widened, not narrowed
    assert held.method == estimates.HELD and moments.method == "moments"


def test_a_held_interval_reaches_down_to_agreement_minus_the_wrong_share(rng):
    """A copier that also errs where its label is right (it departs from 4 % of the labels, all of them right
    ones): the held point is the top the wrong share allows, above the truth; the interval reaches down to
    agreement - share, the least it can be right, and so holds the truth (the grouped weak-vote runs)."""
    y = rng.integers(0, C, N)
    noisy = _draw(rng, y, _symmetric(0.1))
    copy = noisy.copy()
    right_rows = np.flatnonzero(noisy == y)[: int(0.04 * N)]
    copy[right_rows] = (copy[right_rows] + 1) % C
    moments = estimates.predictor_accuracy(copy, noisy, np.eye(C))
    wrong, agreement = float((noisy != y).mean()), float((copy == noisy).mean())
    held = estimates.held_to_wrong_share(moments, copy, noisy, wrong)
    truth = float((copy == y).mean())
    assert held.method == estimates.HELD and held.accuracy > truth + 0.05  # the point is an upper bound
    assert held.low == pytest.approx(agreement - wrong) and held.low <= truth <= held.high
    assert held.high >= moments.high  # widened, not narrowed


def test_an_estimate_the_wrong_share_allows_is_left_as_it_is(rng):
    y = rng.integers(0, C, N)
    t = _symmetric(0.3)
    noisy = _draw(rng, y, t)
    pred = _draw(
        rng, y, _symmetric(0.1)
    )  # averages the noise out: agrees with 66 % of the labels, 90 % right
    moments = estimates.predictor_accuracy(pred, noisy, t)
    assert estimates.held_to_wrong_share(moments, pred, noisy, float((noisy != y).mean())) == moments
    # a share too low for the disagreement caps it at agreement + share; none lifts it (only the top is held)
    low = estimates.held_to_wrong_share(moments, pred, noisy, 0.1)
    assert (
        abs(low.accuracy - (float((pred == noisy).mean()) + 0.1)) < 1e-9 and low.accuracy < moments.accuracy
    )
    under = estimates.Estimate(0.4, 0.35, 0.45, "moments", N)  # below agreement (0.66) - share (0.02)
    assert estimates.held_to_wrong_share(under, pred, noisy, 0.02) == under


def test_nonnegative_solve_never_goes_negative(rng):
    t = _symmetric(0.4)
    a = rng.random((C, C))
    a /= a.sum()
    m = estimates.solve_nonnegative(a, t)
    assert m.min() >= 0
    # the unconstrained inverse of this A is negative somewhere: the constraint was active
    assert (a @ np.linalg.inv(t)).min() < 0


def test_trusted_rows_give_plain_accuracy_with_wilson_interval(rng):
    y = rng.integers(0, C, 1000)
    pred = np.where(rng.random(1000) < 0.8, y, (y + 1) % C)
    trusted = np.full(1000, -1)
    trusted[:100] = y[:100]
    est = estimates.accuracy_estimate(pred, _draw(rng, y, _symmetric(0.3)), _symmetric(0.3), trusted)
    assert est.method == "trusted" and est.rows == 100
    assert est.accuracy == pytest.approx(float((pred[:100] == y[:100]).mean()))
    assert est.low < est.accuracy < est.high
    assert estimates.wilson_interval(80, 100) == pytest.approx((0.711, 0.867), abs=1e-3)


def test_no_rows_is_unknown():
    est = estimates.predictor_accuracy(np.array([0, 1]), np.array([-1, -1]), np.eye(2))
    assert est.method == "none" and np.isnan(est.accuracy)


def _separable_rows(rng, n: int, right_share: float):
    """Top-label confidences of a model that is sure where it is right (0.6-1.0) and unsure where it is
    wrong (0.3-0.6): the case average thresholded confidence reads exactly, whatever the mix of rows."""
    right = rng.random(n) < right_share
    return np.where(right, rng.uniform(0.6, 1.0, n), rng.uniform(0.3, 0.6, n)), right


def test_transferred_accuracy_follows_easier_target_texts(rng):
    # trusted rows harder than the texts to score: their own accuracy (~0.5) misses the target's (~0.8)
    source_conf, source_right = _separable_rows(rng, 400, 0.5)
    target_conf, target_right = _separable_rows(rng, 4000, 0.8)
    est = estimates.transferred_accuracy(source_conf, source_right, target_conf, seed=1)
    assert est.method == "transferred" and est.rows == 4000
    assert target_right.mean() - source_right.mean() > 0.2
    assert est.accuracy == pytest.approx(target_right.mean(), abs=0.03)
    assert est.low <= target_right.mean() <= est.high


def test_transferred_accuracy_reads_the_order_of_confidences_not_their_values(rng):
    # an over-confident model (every confidence pushed up by a monotone map) gets the same estimate,
    # where its mean confidence would claim far more than it gets right
    source_conf, source_right = _separable_rows(rng, 400, 0.5)
    target_conf, target_right = _separable_rows(rng, 4000, 0.3)
    fair = estimates.transferred_accuracy(source_conf, source_right, target_conf)
    bold = estimates.transferred_accuracy(source_conf**0.3, source_right, target_conf**0.3)
    assert bold.accuracy == fair.accuracy == pytest.approx(target_right.mean(), abs=0.03)
    assert (target_conf**0.3).mean() - target_right.mean() > 0.4


def test_transferred_accuracy_without_rows_is_unknown():
    est = estimates.transferred_accuracy(np.array([]), np.array([]), np.array([0.9, 0.8]))
    assert est.method == "none" and np.isnan(est.accuracy)


def test_carried_accuracy_follows_easier_target_texts_from_an_estimate(rng):
    # no gold on the source rows: their accuracy is an estimate (here the truth, with an interval)
    source_conf, source_right = _separable_rows(rng, 400, 0.5)
    target_conf, target_right = _separable_rows(rng, 4000, 0.8)
    a = float(source_right.mean())
    est = estimates.carried_accuracy(
        source_conf, estimates.Estimate(a, a - 0.1, a + 0.1, "moments", 400), target_conf
    )
    assert est.method == "carried" and est.rows == 4000
    assert est.accuracy == pytest.approx(target_right.mean(), abs=0.03)
    assert est.low <= target_right.mean() <= est.high
    # the source estimate's own interval is carried: wider than the row bootstrap alone
    narrow = estimates.carried_accuracy(source_conf, estimates.Estimate(a, a, a, "moments", 400), target_conf)
    assert est.high - est.low > narrow.high - narrow.low


def test_carried_accuracy_carries_the_source_estimate_bias(rng):
    # an estimate 10 points high on the source is still high on the target: carrying reads the shift only
    source_conf, source_right = _separable_rows(rng, 400, 0.5)
    target_conf, target_right = _separable_rows(rng, 4000, 0.5)
    high = float(source_right.mean()) + 0.1
    est = estimates.carried_accuracy(
        source_conf, estimates.Estimate(high, high, high, "moments", 400), target_conf
    )
    assert est.accuracy - target_right.mean() == pytest.approx(0.1, abs=0.04)


def test_carried_accuracy_counts_saturated_confidences_tied_at_the_threshold():
    # a confident model: 80 of 100 validation texts at confidence exactly 1.0 (float probabilities
    # saturate), estimated right on 70 of them; half the evaluation texts saturate too
    source = np.array([1.0] * 80 + [0.6] * 20)
    target = np.array([1.0] * 50 + [0.6] * 50)
    est = estimates.carried_accuracy(source, estimates.Estimate(0.7, 0.7, 0.7, "posterior", 100), target)
    # 70 of the 80 tied rows count as right on the source, so 7/8 of the 50 tied evaluation texts do
    # (a strict cut at 1.0 counted none of them: 0.0)
    assert est.accuracy == pytest.approx(0.875 * 0.5)
    # carried to the source itself, every estimate comes back: ties or none
    for accuracy in (0.1, 0.5, 0.7, 0.85, 0.99):
        assert estimates.thresholded_at(source, accuracy, source) == pytest.approx(accuracy)
    rng = np.random.default_rng(0)
    continuous = rng.random(300)
    assert estimates.thresholded_at(continuous, 0.37, continuous) == pytest.approx(0.37, abs=1 / 300)


def test_carried_accuracy_of_an_unknown_estimate_is_unknown(rng):
    source_conf, _ = _separable_rows(rng, 50, 0.5)
    unknown = estimates.Estimate(float("nan"), 0.0, 1.0, "none", 0)
    assert estimates.carried_accuracy(source_conf, unknown, source_conf).method == "none"


def test_trusted_rows_drawn_at_random_look_random_and_the_worst_first_do_not():
    # P(ỹ = given | x) of a noisy-label classifier on 2,000 unseen rows: most labels look right, a third not
    rng = np.random.default_rng(0)
    p_given = np.clip(np.where(rng.random(2000) < 0.35, rng.beta(2, 5, 2000), rng.beta(6, 2, 2000)), 0, 1)
    false_alarms = 0
    for draw in range(400):  # 100 trusted and 200 validation rows, both drawn at random
        order = np.random.default_rng(draw).permutation(2000)
        check = estimates.trusted_sample_check(p_given[order[:100]], p_given[order[100:300]])
        false_alarms += not check["looks_random"]
    assert false_alarms <= 5  # about 0.3 % (1 in 400) expected at |z| >= 3
    others = p_given[:200]
    worst_first = np.sort(p_given[200:])[:100]  # the console's default review order
    check = estimates.trusted_sample_check(worst_first, others)
    assert not check["looks_random"] and check["z"] < -3
    assert check["trusted_rows"] == 100 and check["other_rows"] == 200
    assert check["given_label_probability_trusted"] < check["given_label_probability_others"]
    best_first = np.sort(p_given[200:])[-100:]
    assert estimates.trusted_sample_check(best_first, others)["z"] > 3
    # too few rows on either side: no verdict
    assert estimates.trusted_sample_check(worst_first[:9], others) is None
    assert estimates.trusted_sample_check(worst_first, others[:9]) is None


def test_shifted_accuracy_carries_the_shift_not_the_thresholds_sampling_error(rng):
    # the trusted rows happen to be surer than unseen texts of the same accuracy (every confidence pushed up
    # where the model is right and where it is wrong alike): ATC's threshold then cuts the unseen texts low
    right = rng.random(100) < 0.5
    source_conf = np.clip(rng.uniform(0.5, 1.0, 100) + 0.15, None, 1.0)
    reference_conf = rng.uniform(0.5, 1.0, 2000)
    target_conf = rng.uniform(0.5, 1.0, 2000)
    atc = estimates.transferred_accuracy(source_conf, right, target_conf)
    shifted = estimates.shifted_accuracy(
        right, estimates.ShiftReader(source_conf, right, reference_conf, target_conf)
    )
    assert right.mean() - atc.accuracy > 0.1
    assert shifted.method == "transferred" and shifted.rows == 2000
    assert shifted.accuracy == pytest.approx(right.mean(), abs=0.03)
    assert shifted.low <= right.mean() <= shifted.high


def test_shifted_accuracy_follows_easier_target_texts(rng):
    # texts drawn as the trusted rows were (~0.5 right) and easier targets (~0.8): the shift is carried on
    # top of the trusted rows' own accuracy, their sampling error included (ATC would offset it here, where
    # the confidence separates right from wrong: it is kept for such models)
    source_conf, source_right = _separable_rows(rng, 400, 0.5)
    reference_conf, reference_right = _separable_rows(rng, 4000, 0.5)
    target_conf, target_right = _separable_rows(rng, 4000, 0.8)
    reader = estimates.ShiftReader(source_conf, source_right, reference_conf, target_conf)
    est = estimates.shifted_accuracy(source_right, reader, seed=1)
    shift = target_right.mean() - reference_right.mean()
    assert shift > 0.25
    assert est.accuracy - source_right.mean() == pytest.approx(shift, abs=0.03)
    assert est.low <= target_right.mean() <= est.high
    empty = estimates.ShiftReader(np.array([]), np.array([], bool), reference_conf, target_conf)
    assert estimates.shifted_accuracy(np.array([], bool), empty).method == "none"


def test_shifted_accuracy_reads_the_shift_with_another_models_confidence(rng):
    # the candidate's own confidence orders nothing (vote shares of rule-made labels); a second model on
    # the same trusted rows is sure where it is right, and reads the target texts ~0.3 easier than the
    # reference texts: the candidate's trusted-row accuracy is carried by that shift
    candidate_right = rng.random(400) < 0.4
    reader_conf, reader_right = _separable_rows(rng, 400, 0.5)
    reference_conf, reference_right = _separable_rows(rng, 4000, 0.5)
    target_conf, target_right = _separable_rows(rng, 4000, 0.8)
    reader = estimates.ShiftReader(reader_conf, reader_right, reference_conf, target_conf)
    est = estimates.shifted_accuracy(candidate_right, reader, seed=1)
    shift = target_right.mean() - reference_right.mean()
    assert est.method == "transferred" and est.rows == 4000
    assert est.accuracy - candidate_right.mean() == pytest.approx(shift, abs=0.03)
    assert est.low <= candidate_right.mean() + shift <= est.high
    # texts like the reference texts: the candidate's own trusted-row accuracy, not the reader's
    level = estimates.ShiftReader(reader_conf, reader_right, reference_conf, reference_conf)
    assert estimates.shifted_accuracy(candidate_right, level).accuracy == pytest.approx(
        candidate_right.mean()
    )


def test_ranked_transfer_carries_only_a_confidence_that_orders_right_and_wrong(rng):
    # a confidence that separates right from wrong: ATC, which follows easier target texts
    source_conf, source_right = _separable_rows(rng, 100, 0.5)
    target_conf, target_right = _separable_rows(rng, 4000, 0.8)
    assert estimates.rank_z(source_conf, source_right) > estimates.RANK_Z
    est = estimates.ranked_transfer(source_conf, source_right, target_conf, seed=1)
    assert est == estimates.transferred_accuracy(source_conf, source_right, target_conf, seed=1)
    assert est.accuracy == pytest.approx(target_right.mean(), abs=0.08)
    # a confidence unrelated to being right: the trusted rows' own accuracy, measured, not carried; ATC
    # would read the target texts' confidences against a threshold that orders nothing
    right = rng.random(100) < 0.6
    conf = rng.uniform(0.3, 1.0, 100)
    assert abs(estimates.rank_z(conf, right)) < estimates.RANK_Z
    kept = estimates.ranked_transfer(conf, right, rng.uniform(0.9, 1.0, 500))
    assert kept.method == "trusted" and kept.rows == 100
    assert kept.accuracy == pytest.approx(right.mean()) and kept.low < right.mean() < kept.high
    # or the estimate given for that case (another model's shift carried onto the trusted accuracy)
    otherwise = estimates.Estimate(0.75, 0.65, 0.85, "transferred", 500)
    assert (
        estimates.ranked_transfer(conf, right, rng.uniform(0.9, 1.0, 500), otherwise=otherwise) == otherwise
    )
    assert estimates.ranked_transfer(source_conf, source_right, target_conf, 1, otherwise) == est
    assert estimates.transferred_accuracy(conf, right, rng.uniform(0.9, 1.0, 500)).accuracy > 0.9
    # no labelled rows: no estimate
    assert estimates.ranked_transfer(np.array([]), np.array([], bool), target_conf).method == "none"


def test_rank_z_reads_the_order_of_confidences(rng):
    conf = np.arange(10, dtype=float)
    assert estimates.rank_z(conf, conf >= 5) > 2.5  # every right row surer than every wrong one
    assert estimates.rank_z(conf, conf < 5) < -2.5
    assert estimates.rank_z(conf, np.ones(10, bool)) == 0.0  # nothing wrong: no order to read
