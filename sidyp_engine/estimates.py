"""Accuracy estimates without gold labels, from noisy labels and an estimated noise matrix.

Method of moments. On rows the predictor never trained on, with class-conditional noise (the labeller's
answer depends on the true class only, so a prediction made from the text and the noisy label are
independent given the true class), the observed joint A[c, j] = P(pred = c, noisy = j) factors as

    A = M T,   M[c, y] = P(pred = c, true = y),   T[y, j] = P(noisy = j | true = y),

so M = A T^-1 and the predictor's accuracy is trace(M). M is solved as a non-negative least-squares
problem (M >= 0; the unconstrained inverse goes negative on small samples) and the interval is a
percentile bootstrap over rows with T held fixed: the uncertainty of T itself is not in it.
When T is near-singular (two true classes the labeller treats alike), M is not identified; the estimate
then falls back to a bound that needs only the noise share rho: |accuracy - agreement with the noisy
labels| <= rho, and says so (`method="bound"`).

With trusted rows (gold known to the user) the plain accuracy on them with a Wilson interval replaces
the guess. Pure numpy; nothing here trains.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

# T's smallest singular value below this: its inverse amplifies sampling noise more than 20-fold and
# the moment estimate is not trusted (symmetric binary noise at 47.5 % reaches it).
SINGULAR_FLOOR = 0.05
HELD = "held"  # the method of a moment estimate `held_to_wrong_share` lowered
BOOTSTRAP_SAMPLES = 200
LEVEL = 0.95
_NNLS_ITERATIONS = 500


@dataclass(frozen=True)
class Estimate:
    accuracy: float
    low: float
    high: float
    method: str  # "moments", "bound" (near-singular T), "held" (moments held to the run's wrong-label
    # share: `held_to_wrong_share`), "trusted" (rows with gold), "posterior" (the refined posteriors' expected
    # wrong-label share), "transferred" (trusted rows carried to other texts by their confidence: ATC, or for a
    # model fitted to the noisy labels the shift alone, `shifted_accuracy`), "carried"
    # (a gold-free estimate carried so), "none" (no rows)
    rows: int

    def as_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    def complement(self) -> Estimate:
        """1 - this estimate (e.g. the share of wrong labels from the labels' accuracy)."""
        return Estimate(1 - self.accuracy, 1 - self.high, 1 - self.low, self.method, self.rows)


def spanning(estimate: Estimate, other: Estimate) -> Estimate:
    """`estimate` with its interval widened to cover `other`'s (a second estimator of the same quantity).

    Each gold-free estimator's bootstrap interval covers row sampling only, not the estimator's own bias;
    where two estimators built on different assumptions disagree, the interval spanning both says so."""
    if other.method == "none" or not np.isfinite(other.accuracy):
        return estimate
    low, high = min(estimate.low, other.low), max(estimate.high, other.high)
    return Estimate(estimate.accuracy, low, high, estimate.method, estimate.rows)


def _none(rows: int = 0) -> Estimate:
    return Estimate(float("nan"), 0.0, 1.0, "none", rows)


def well_conditioned(noise_matrix: np.ndarray) -> bool:
    return float(np.linalg.svd(np.asarray(noise_matrix, dtype=np.float64), compute_uv=False).min()) >= (
        SINGULAR_FLOOR
    )


def joint(pred: np.ndarray, noisy: np.ndarray, n_classes: int) -> np.ndarray:
    """A[c, j] = share of rows predicted c with noisy label j (rows with noisy < 0 left out)."""
    keep = noisy >= 0
    counts = np.zeros((n_classes, n_classes))
    np.add.at(counts, (pred[keep], noisy[keep]), 1.0)
    return counts / max(1, int(keep.sum()))


def solve_nonnegative(a: np.ndarray, t: np.ndarray) -> np.ndarray:
    """M >= 0 minimising ||M T - A||_F (A [C, C] or a batch [B, C, C]): the inverse where it is
    non-negative, else multiplicative updates (Lee and Seung: they keep M >= 0 and never increase the
    residual, since A and T are >= 0)."""
    m = a @ np.linalg.pinv(t)
    negative = m.min(axis=(-2, -1)) < -1e-12
    if not np.any(negative):
        return np.clip(m, 0.0, None)
    m = np.clip(m, 1e-6, None)
    numerator, gram = a @ t.T, t @ t.T
    for _ in range(_NNLS_ITERATIONS):
        m = np.where(negative[..., None, None], m * numerator / np.maximum(m @ gram, 1e-15), m)
    return np.clip(m, 0.0, None)


def moment_accuracies(a: np.ndarray, t: np.ndarray) -> np.ndarray:
    """trace(M) / sum(M) per joint in the batch `a` [B, C, C]."""
    m = solve_nonnegative(a, t)
    return np.trace(m, axis1=-2, axis2=-1) / np.maximum(m.sum(axis=(-2, -1)), 1e-12)


def _moment_accuracy(a: np.ndarray, t: np.ndarray) -> float:
    return float(moment_accuracies(a[None], t)[0])


def resampled_joints(pred: np.ndarray, noisy: np.ndarray, idx: np.ndarray, n_classes: int) -> np.ndarray:
    """joint() of every resample: `idx` [B, n] row numbers -> [B, C, C]."""
    cells = pred[idx] * n_classes + noisy[idx] + (np.arange(len(idx)) * n_classes * n_classes)[:, None]
    counts = np.bincount(cells.ravel(), minlength=len(idx) * n_classes * n_classes)
    return counts.reshape(len(idx), n_classes, n_classes) / idx.shape[1]


def resamples(n_rows: int, seed: int) -> np.ndarray:
    """[BOOTSTRAP_SAMPLES, n_rows] row numbers drawn with replacement."""
    return np.random.default_rng(seed).integers(0, n_rows, (BOOTSTRAP_SAMPLES, n_rows))


def _interval(values: np.ndarray) -> tuple[float, float]:
    tail = 100 * (1 - LEVEL) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def _class_prior(noisy: np.ndarray, t: np.ndarray) -> np.ndarray:
    """pi >= 0 with pi T = the noisy-label marginal q (one row of the same problem as M)."""
    n_classes = t.shape[0]
    q = np.bincount(noisy[noisy >= 0], minlength=n_classes).astype(np.float64)
    pi = solve_nonnegative(q[None, :] / max(q.sum(), 1.0), t)[0]
    return pi / max(pi.sum(), 1e-12)


def _label_accuracy_point(noisy: np.ndarray, t: np.ndarray) -> float:
    return float(_class_prior(noisy, t) @ np.diag(t))


def _bootstrap(statistic, n_rows: int, seed: int) -> tuple[float, float]:
    return _interval(np.array([statistic(idx) for idx in resamples(n_rows, seed)]))


def label_accuracy(noisy: np.ndarray, noise_matrix: np.ndarray, seed: int = 0) -> Estimate:
    """Estimated share of right noisy labels: sum_i pi_i T[i, i], pi the true-class prior from pi T = q."""
    noisy = np.asarray(noisy)[np.asarray(noisy) >= 0]
    t = np.asarray(noise_matrix, dtype=np.float64)
    if not len(noisy):
        return _none()
    point = _label_accuracy_point(noisy, t)
    low, high = _bootstrap(lambda idx: _label_accuracy_point(noisy[idx], t), len(noisy), seed)
    method = "moments" if well_conditioned(t) else "bound"
    if method == "bound":  # pi is not identified either: only T's diagonal range is known
        low, high = min(low, float(np.diag(t).min())), max(high, float(np.diag(t).max()))
    return Estimate(point, min(low, point), max(high, point), method, len(noisy))


def predictor_accuracy(
    pred: np.ndarray, noisy: np.ndarray, noise_matrix: np.ndarray, seed: int = 0
) -> Estimate:
    """Estimated accuracy of predictions `pred` (class ids) on rows with noisy labels `noisy` (-1 = none).

    The predictions must not have seen these rows' noisy labels (validation rows, predicted from the text).
    """
    t = np.asarray(noise_matrix, dtype=np.float64)
    keep = np.asarray(noisy) >= 0
    pred, noisy = np.asarray(pred)[keep], np.asarray(noisy)[keep]
    n_classes = t.shape[0]
    if not len(noisy):
        return _none()
    if not well_conditioned(t):
        return _bound(pred, noisy, t, seed)
    point = _moment_accuracy(joint(pred, noisy, n_classes), t)
    low, high = _interval(
        moment_accuracies(resampled_joints(pred, noisy, resamples(len(noisy), seed), n_classes), t)
    )
    return Estimate(point, min(low, point), max(high, point), "moments", len(noisy))


def _bound(pred: np.ndarray, noisy: np.ndarray, t: np.ndarray, seed: int) -> Estimate:
    """Near-singular T: accuracy within agreement +- rho (the share of wrong labels, its upper end)."""
    agreement = float((pred == noisy).mean())
    rho = label_accuracy(noisy, t, seed).complement().high
    low, high = max(0.0, agreement - rho), min(1.0, agreement + rho)
    point = float(np.clip(_moment_accuracy(joint(pred, noisy, t.shape[0]), t), low, high))
    return Estimate(point, low, high, "bound", len(noisy))


def held_to_wrong_share(
    estimate: Estimate, pred: np.ndarray, noisy: np.ndarray, wrong_share: float
) -> Estimate:
    """A predictor's gold-free estimate no higher than a share `wrong_share` of wrong labels allows.

    With its predictions agreeing with a share a of the noisy labels, its accuracy is at most
    a + wrong_share and at most (1 - wrong_share) + (1 - a): it is right at most where the label is right
    or where it departs from the label. The moments assume a predictor's errors do not depend on the
    labels' errors; a model that reproduces its labels breaks that, and where T cannot see the labeller's
    errors the moments read it as perfect while the run estimates many labels wrong (docs/method.md,
    "Twenty-fourth round"). Only the top is held: the run's share reads low where a labeller's errors are
    systematic, and a floor from it would lift the moments there. A held point is that top, an upper bound:
    the same reasoning puts the accuracy at least at a - wrong_share (right where it agrees with a right
    label), so the interval reaches down to there ("Twenty-fifth round": a copier that also errs where the
    label is right read 0.94, interval from 0.93, measured 0.88). It is widened, never narrowed (the wrong
    share is an estimate too); a lowered estimate's method is HELD: such a model's confidence is the
    labeller's certainty, and the select stage does not carry it by confidence."""
    pred, noisy = np.asarray(pred), np.asarray(noisy)
    keep = noisy >= 0
    if not keep.any() or not np.isfinite(estimate.accuracy) or not np.isfinite(wrong_share):
        return estimate
    agreement = float((pred[keep] == noisy[keep]).mean())
    top = min(1.0, agreement + wrong_share, 2.0 - wrong_share - agreement)
    if estimate.accuracy <= top:
        return estimate
    low = min(estimate.low, top, max(0.0, agreement - wrong_share))
    return Estimate(top, low, estimate.high, HELD, estimate.rows)


def mean_estimate(values: np.ndarray, method: str, seed: int = 0) -> Estimate:
    """The mean of per-row values with a percentile bootstrap interval over the rows."""
    values = np.asarray(values, dtype=np.float64)
    if not len(values):
        return _none()
    low, high = _interval(values[resamples(len(values), seed)].mean(axis=1))
    point = float(values.mean())
    return Estimate(point, min(low, point), max(high, point), method, len(values))


def wilson_interval(successes: int, n: int, level_z: float = 1.959964) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + level_z**2 / n
    centre = (p + level_z**2 / (2 * n)) / denom
    half = level_z * np.sqrt(p * (1 - p) / n + level_z**2 / (4 * n * n)) / denom
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def trusted_accuracy(pred: np.ndarray, trusted: np.ndarray) -> Estimate:
    """Plain accuracy on the rows whose true label is known (`trusted` >= 0), with a Wilson interval."""
    keep = np.asarray(trusted) >= 0
    n = int(keep.sum())
    if not n:
        return _none()
    right = int((np.asarray(pred)[keep] == np.asarray(trusted)[keep]).sum())
    low, high = wilson_interval(right, n)
    return Estimate(right / n, low, high, "trusted", n)


def reference_accuracy(pred: np.ndarray, reference: np.ndarray, seed: int = 0) -> Estimate:
    """A predictor's accuracy as a reference distribution over the true classes expects it: the mean over
    rows of reference[i, pred_i], with a bootstrap interval over the rows (the reference's own error is not
    in it). The run's refined posteriors are the reference (`method = "posterior"`)."""
    ref = np.asarray(reference, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.int64)
    if not len(pred):
        return _none()
    ref = ref / np.clip(ref.sum(axis=1, keepdims=True), 1e-12, None)
    return mean_estimate(ref[np.arange(len(pred)), pred], "posterior", seed)


def thresholded_confidence(source_conf, source_right, target_conf) -> float:
    """ATC's point estimate (see `transferred_accuracy`)."""
    return thresholded_at(source_conf, float(np.mean(source_right)), target_conf)


def thresholded_at(source_conf, accuracy: float, target_conf) -> float:
    """The share of target texts above the top-label confidence that a share `accuracy` of the source rows
    exceeds (ATC with the source accuracy given rather than counted).

    Rows tied at the threshold count with the fraction of them the source needs: a confident model's
    confidences saturate (many exactly 1.0), and a strict cut there counted none of the tied target texts,
    carrying an estimate of 0. Carried to the source itself, it returns `accuracy` (to within a row)."""
    if not np.isfinite(accuracy) or accuracy <= 0.0 or accuracy >= 1.0:
        return float(np.clip(accuracy, 0.0, 1.0)) if np.isfinite(accuracy) else accuracy
    source, target = np.asarray(source_conf, np.float64), np.asarray(target_conf, np.float64)
    threshold = float(np.quantile(source, 1.0 - accuracy))
    above, tied = int((source > threshold).sum()), int((source == threshold).sum())
    if not tied:  # the cut falls between two confidences
        return float((target > threshold).mean())
    share_of_tied = min(1.0, max(0.0, (accuracy * len(source) - above) / tied))
    return float(((target > threshold).sum() + share_of_tied * (target == threshold).sum()) / len(target))


def carried_accuracy(
    source_conf: np.ndarray, source_accuracy: Estimate, target_conf: np.ndarray, seed: int = 0
) -> Estimate:
    """ATC without gold: a model's accuracy on unlabelled target texts from a gold-free estimate of its
    accuracy on the source rows (`source_accuracy`). The point carries the estimate's point; the interval
    carries the estimate's own bounds and the bootstrap over the source rows (`method = "carried"`). The
    source estimate's bias is carried with it: this says how much easier or harder the targets are, not
    how right the source estimate was."""
    source_conf, target_conf = np.asarray(source_conf, np.float64), np.asarray(target_conf, np.float64)
    if not len(source_conf) or not len(target_conf) or not np.isfinite(source_accuracy.accuracy):
        return _none(len(target_conf))
    point = thresholded_at(source_conf, source_accuracy.accuracy, target_conf)
    low, high = _bootstrap(
        lambda idx: thresholded_at(source_conf[idx], source_accuracy.accuracy, target_conf),
        len(source_conf),
        seed,
    )
    bounds = [
        thresholded_at(source_conf, a, target_conf) for a in (source_accuracy.low, source_accuracy.high)
    ]
    low, high = min(low, *bounds, point), max(high, *bounds, point)
    return Estimate(point, low, high, "carried", len(target_conf))


def transferred_accuracy(
    source_conf: np.ndarray, source_right: np.ndarray, target_conf: np.ndarray, seed: int = 0
) -> Estimate:
    """A model's accuracy on unlabelled target texts, from labelled source rows: average thresholded
    confidence (ATC, Garg et al., 2022). The threshold is the top-label confidence that as many source rows
    exceed as the model gets right; the estimate is the share of target texts above it. Where the targets
    are easier or harder than the source, the source accuracy alone misses by the difference and this
    follows it; it needs the targets' confidences within the source's range (beyond it, every target text
    counts as right or as wrong). Percentile bootstrap over the source rows (`method = "transferred"`).
    """
    source_conf, target_conf = np.asarray(source_conf, np.float64), np.asarray(target_conf, np.float64)
    source_right = np.asarray(source_right, bool)
    if not len(source_conf) or not len(target_conf):
        return _none(len(target_conf))
    point = thresholded_confidence(source_conf, source_right, target_conf)
    low, high = _bootstrap(
        lambda idx: thresholded_confidence(source_conf[idx], source_right[idx], target_conf),
        len(source_conf),
        seed,
    )
    return Estimate(point, min(low, point), max(high, point), "transferred", len(target_conf))


# The Mann-Whitney z at which a model's confidence is taken to rank its rightness (one-sided ~2.5 %)
RANK_Z = 1.96


def rank_z(confidence: np.ndarray, right: np.ndarray) -> float:
    """Mann-Whitney z of the right rows' confidences over the wrong rows' (0 with either side empty): how
    well the confidence ranks being right, which ATC's carry presumes. Tied confidences (saturated ones)
    share their mean rank."""
    confidence, right = np.asarray(confidence, np.float64), np.asarray(right, bool)
    n1, n0 = int(right.sum()), int((~right).sum())
    if not n1 or not n0:
        return 0.0
    # each distinct value's tied rows share the mean of the ranks they span (np.unique sorts ascending)
    _, inverse, ties = np.unique(confidence, return_inverse=True, return_counts=True)
    ranks, n = (np.cumsum(ties) - (ties - 1) / 2)[inverse], n1 + n0
    u = ranks[right].sum() - n1 * (n1 + 1) / 2
    ties = ties.astype(np.float64)
    spread = math.sqrt(n1 * n0 / 12 * (n + 1 - float((ties**3 - ties).sum()) / (n * (n - 1))))
    return float((u - n1 * n0 / 2) / spread) if spread > 0 else 0.0


def ranked_transfer(
    source_conf: np.ndarray,
    source_right: np.ndarray,
    target_conf: np.ndarray,
    seed: int = 0,
    otherwise: Estimate | None = None,
) -> Estimate:
    """ATC (`transferred_accuracy`) where the confidence ranks the labelled source rows' rightness
    (`rank_z` >= RANK_Z); else `otherwise` where given, else the source rows' own accuracy, not carried
    (method `trusted`, Wilson interval): a threshold read from a confidence that does not order right and
    wrong moves the estimate by where the target texts' confidences happen to sit (docs/method.md,
    "Forty-third round")."""
    right = np.asarray(source_right, bool)
    if rank_z(source_conf, right) >= RANK_Z:
        return transferred_accuracy(source_conf, right, target_conf, seed)
    if otherwise is not None:
        return otherwise
    if not len(right):
        return _none(len(target_conf))
    low, high = wilson_interval(int(right.sum()), len(right))
    return Estimate(float(right.mean()), low, high, "trusted", len(right))


@dataclass(frozen=True)
class ShiftReader:
    """One model's top-label confidences, from which ATC reads how much easier or harder the target texts
    are than the reference texts: on the labelled source rows (with whether the model is right there: the
    threshold), on the reference texts (drawn as the source rows were) and on the target texts."""

    source_conf: np.ndarray
    source_right: np.ndarray
    reference_conf: np.ndarray
    target_conf: np.ndarray


def shifted_accuracy(source_right: np.ndarray, reader: ShiftReader, seed: int = 0) -> Estimate:
    """A candidate's accuracy on unlabelled target texts: its accuracy on the labelled source rows plus the
    shift `reader`'s ATC reads between the reference texts (the validation texts) and the targets. Only the
    shift is carried, at ATC's threshold from the source rows: where the targets are like the reference
    texts it is the source accuracy, whatever the threshold's own sampling error (`transferred_accuracy`
    carries that error whole, and for a model fitted to the noisy labels, whose confidence is the
    labeller's certainty, nothing in the confidences offsets it: docs/method.md, "Forty-second round").
    The reader is the candidate itself, or a model whose confidence ranks its rightness where the
    candidate's does not ("Forty-fourth round"); its rows are the candidate's source rows. Percentile
    bootstrap over the source rows, both readings resampled together (`method = "transferred"`)."""
    source_right = np.asarray(source_right, bool)
    conf, right = np.asarray(reader.source_conf, np.float64), np.asarray(reader.source_right, bool)
    reference_conf = np.asarray(reader.reference_conf, np.float64)
    target_conf = np.asarray(reader.target_conf, np.float64)
    if not len(source_right) or not len(target_conf) or not len(reference_conf):
        return _none(len(target_conf))

    def shifted(idx: np.ndarray) -> float:
        shift = thresholded_confidence(conf[idx], right[idx], target_conf) - thresholded_confidence(
            conf[idx], right[idx], reference_conf
        )
        return float(np.clip(source_right[idx].mean() + shift, 0.0, 1.0))

    point = shifted(np.arange(len(source_right)))
    low, high = _bootstrap(shifted, len(source_right), seed)
    return Estimate(point, min(low, point), max(high, point), "transferred", len(target_conf))


def accuracy_estimate(
    pred: np.ndarray,
    noisy: np.ndarray,
    noise_matrix: np.ndarray,
    trusted: np.ndarray | None = None,
    seed: int = 0,
) -> Estimate:
    """The trusted-row accuracy when any trusted row is among these rows, else the gold-free estimate."""
    if trusted is not None and (np.asarray(trusted) >= 0).any():
        return trusted_accuracy(pred, trusted)
    return predictor_accuracy(pred, noisy, noise_matrix, seed)


ANCHOR_QUANTILE = 0.97


def anchor_noise_matrix(noisy_probs: np.ndarray, quantile: float = ANCHOR_QUANTILE) -> np.ndarray:
    """T from a noisy-label classifier's held-out P(ỹ | x) at its most confident rows per class.

    Anchor points (Patrini et al., 2017): a text that is surely class i has P(ỹ | x) = T[i, :]. Row i is
    the mean P(ỹ | x) of the rows in the top (1 - quantile) of P(ỹ = i | x) (at least 3 rows). It does
    not depend on the refined posteriors; an over-confident classifier pulls it towards the identity.
    """
    probs = np.asarray(noisy_probs, dtype=np.float64)
    n_rows, n_classes = probs.shape
    t = np.eye(n_classes)
    take = max(3, int(round((1 - quantile) * n_rows)))
    for i in range(n_classes):
        if n_rows:
            top = np.argsort(-probs[:, i])[:take]
            t[i] = probs[top].mean(axis=0)
    return t / t.sum(axis=1, keepdims=True)


TRUSTED_SAMPLE_Z = 3.0  # |z| at which the trusted rows no longer look like a random draw (two-sided ~0.3 %)
TRUSTED_SAMPLE_MIN_ROWS = 10


def trusted_sample_check(p_given_trusted: np.ndarray, p_given_others: np.ndarray) -> dict | None:
    """Do the trusted rows look like a random draw of the labelled rows? Every trusted estimate assumes so.

    Compares a noisy-label classifier's P(ỹ = given | x) on the trusted rows with that on other rows it
    never fitted either (the validation rows): rows picked for review because their label looked wrong
    (the console's default order) have a much lower one. Welch's z of the two means; None with fewer than
    TRUSTED_SAMPLE_MIN_ROWS on either side. `looks_random` is |z| < TRUSTED_SAMPLE_Z.
    """
    a, b = np.asarray(p_given_trusted, np.float64), np.asarray(p_given_others, np.float64)
    if len(a) < TRUSTED_SAMPLE_MIN_ROWS or len(b) < TRUSTED_SAMPLE_MIN_ROWS:
        return None
    spread = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    z = (a.mean() - b.mean()) / spread if spread > 0 else 0.0
    return {
        "trusted_rows": len(a),
        "other_rows": len(b),
        "given_label_probability_trusted": round(float(a.mean()), 4),
        "given_label_probability_others": round(float(b.mean()), 4),
        "z": round(float(z), 2),
        "looks_random": bool(abs(z) < TRUSTED_SAMPLE_Z),
    }
