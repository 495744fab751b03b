"""The do-no-harm decision on planted validation rows: which candidate is kept, and why."""

from __future__ import annotations

import re

import numpy as np
import pytest

from sidyp_engine import estimates, selection
from tests.engine.test_estimates import _draw, _symmetric

N, C = 3000, 4


def _share(x: float) -> estimates.Estimate:
    """The run's own wrong-label estimate as calibrate passes it (an interval of +-0.02)."""
    return estimates.Estimate(x, x - 0.02, x + 0.02, "posterior", N)


@pytest.fixture
def planted():
    rng = np.random.default_rng(1)
    y = rng.integers(0, C, N)
    t = _symmetric(0.3)
    return rng, y, t, _draw(rng, y, t)


def test_plain_kept_when_the_method_made_it_worse(planted):
    rng, y, t, noisy = planted
    preds = {
        selection.PLAIN: _draw(rng, y, _symmetric(0.05)),
        selection.REFINED: _draw(rng, y, _symmetric(0.35)),
        selection.PLAIN_MODEL: _draw(rng, y, _symmetric(0.05)),
        selection.SERVED: _draw(rng, y, _symmetric(0.3)),
    }
    # gold-free, the moments see it (and report it) but do not act: the gate does, on the wrong share
    reported = selection.select(preds, noisy, t, gold_free_may_switch=True, method_wrong_share=_share(0.45))
    assert reported.margins["labels"] > 0 and reported.kept_labels == selection.REFINED
    assert "gold-free estimates are not acted on" in reported.reason
    out = reported.as_dict()
    assert out["estimates"]["refined"]["method"] == "moments"
    assert out["noise_share"]["accuracy"] == 0.45 and out["noise_share"]["method"] == "posterior"
    assert abs(out["llm_label_accuracy"]["accuracy"] - 0.55) < 1e-9
    assert abs(selection.select(preds, noisy, t).as_dict()["noise_share"]["accuracy"] - 0.3) < 0.04  # moments
    # trusted rows measure it: plain kept for both decisions
    trusted = np.full(N, -1)
    trusted[:500] = y[:500]
    chosen = selection.select(preds, noisy, t, trusted, gold_free_may_switch=False)
    assert chosen.kept_labels == selection.PLAIN and chosen.kept_model == selection.PLAIN_MODEL
    assert "clearly better on the trusted rows" in chosen.reason


def test_by_default_only_trusted_rows_may_overturn_the_method(planted):
    rng, y, t, noisy = planted
    preds = {
        selection.PLAIN: _draw(rng, y, _symmetric(0.05)),
        selection.REFINED: _draw(rng, y, _symmetric(0.35)),
    }
    chosen = selection.select(preds, noisy, t)  # same evidence as above, default rule
    assert chosen.kept_labels == selection.REFINED
    assert chosen.estimates[selection.PLAIN].accuracy > chosen.estimates[selection.REFINED].accuracy
    assert "reported, not acted on" in chosen.reason
    trusted = np.where(np.arange(len(y)) % 4 == 0, y, -1)
    assert selection.select(preds, noisy, t, trusted).kept_labels == selection.PLAIN


def test_method_kept_when_better_or_level(planted):
    rng, y, t, noisy = planted
    same = _draw(rng, y, _symmetric(0.2))
    preds = {
        selection.PLAIN: _draw(rng, y, _symmetric(0.3)),
        selection.REFINED: _draw(rng, y, _symmetric(0.1)),
        selection.PLAIN_MODEL: same,
        selection.SERVED: same.copy(),  # a tie: the method's output stays
    }
    chosen = selection.select(preds, noisy, t, gold_free_may_switch=True)
    assert chosen.kept_labels == selection.REFINED and chosen.kept_model == selection.SERVED
    assert chosen.margins["model"] <= 0


def test_trusted_rows_decide_and_are_never_flagged(planted):
    rng, y, t, noisy = planted
    trusted = np.full(N, -1)
    trusted[:300] = y[:300]
    preds = {
        selection.PLAIN: _draw(rng, y, _symmetric(0.05)),
        selection.REFINED: _draw(rng, y, _symmetric(0.5)),
    }
    # a wrong noise matrix (identity): the gold-free estimate would be misled, the trusted rows are not
    chosen = selection.select(preds, noisy, np.eye(C), trusted)
    assert chosen.estimates[selection.PLAIN].method == "trusted"
    assert chosen.llm_label_accuracy.method == "trusted"
    assert chosen.kept_labels == selection.PLAIN
    post = np.eye(C)[(y + 1) % C]  # the method says every row is the next class
    rows, suggested, issue = selection.apply_to_rows(post, np.eye(C)[noisy], noisy, trusted, "refined")
    assert (suggested[:300] == y[:300]).all() and not issue[:300].any()
    assert issue[300:].mean() > 0.5
    _, suggested, issue = selection.apply_to_rows(post, np.eye(C)[noisy], noisy, None, "plain")
    assert (suggested == noisy).all() and not issue.any()


def test_near_singular_noise_matrix_marks_the_estimates_bound():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 2000)
    t = np.array([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    preds = {
        selection.PLAIN: _draw(rng, y, _symmetric(0.05, 3)),
        selection.REFINED: _draw(rng, y, _symmetric(0.6, 3)),
    }
    chosen = selection.select(
        preds, _draw(rng, y, t), t, gold_free_may_switch=True, method_wrong_share=_share(0.5)
    )
    assert chosen.estimates[selection.REFINED].method == "bound"
    assert chosen.kept_labels == selection.REFINED  # the wrong share passes the gate; moments do not act


def test_noise_gate_keeps_plain_when_the_run_finds_few_wrong_labels(planted):
    rng, y, t, noisy = planted
    preds = {  # the method is estimated better, but the run itself says only 20 % of the labels are wrong
        selection.PLAIN: _draw(rng, y, _symmetric(0.3)),
        selection.REFINED: _draw(rng, y, _symmetric(0.1)),
    }
    low = selection.select(preds, noisy, t, gold_free_may_switch=True, method_wrong_share=_share(0.2))
    assert low.kept_labels == selection.PLAIN
    assert "below the 40%" in low.reason and "plain classifier, kept by the gate (estimated " in low.reason
    high = selection.select(preds, noisy, t, gold_free_may_switch=True, method_wrong_share=_share(0.45))
    assert high.kept_labels == selection.REFINED
    reported = selection.select(preds, noisy, t, gold_free_may_switch=False, method_wrong_share=_share(0.2))
    assert reported.kept_labels == selection.REFINED  # selection="trusted": estimates reported only


def test_trusted_rows_measure_the_wrong_share_for_the_gate(planted):
    rng, y, t, noisy = planted  # 30 % of the noisy labels wrong
    preds = {  # the method a little better, not clearly so on 400 trusted rows: the gate decides
        selection.PLAIN: _draw(rng, y, _symmetric(0.22)),
        selection.REFINED: _draw(rng, y, _symmetric(0.2)),
    }
    trusted = np.full(N, -1)
    trusted[:400] = y[:400]
    # the run's own estimate (60 %) is replaced by the trusted rows' measured share (about 30 %): gated
    chosen = selection.select(
        preds, noisy, t, trusted, gold_free_may_switch=True, method_wrong_share=_share(0.6)
    )
    assert chosen.kept_labels == selection.PLAIN and "the trusted rows show" in chosen.reason
    assert -0.1 < chosen.margins["labels_method"] <= 0  # not clearly better, and recorded
    heavy = _draw(rng, y, _symmetric(0.6))  # 60 % wrong: the gate lets the method through
    chosen = selection.select(
        preds, heavy, t, trusted, gold_free_may_switch=True, method_wrong_share=_share(0.1)
    )
    assert chosen.kept_labels == selection.REFINED
    only = selection.select(
        preds, noisy, t, trusted, gold_free_may_switch=False, method_wrong_share=_share(0.1)
    )
    assert only.kept_labels == selection.REFINED  # selection="trusted": no gate


def test_a_method_clearly_better_on_the_trusted_rows_is_kept_whatever_the_gate_reads(planted):
    rng, y, t, noisy = planted  # 30 % of the noisy labels wrong: below the gate
    preds = {
        selection.PLAIN: _draw(rng, y, _symmetric(0.3)),
        selection.REFINED: _draw(rng, y, _symmetric(0.1)),
        selection.PLAIN_MODEL: _draw(rng, y, _symmetric(0.25)),
        selection.SERVED: _draw(rng, y, _symmetric(0.24)),
    }
    trusted = np.full(N, -1)
    trusted[:400] = y[:400]
    chosen = selection.select(preds, noisy, t, trusted, gold_free_may_switch=True)
    # labels: 20 points better on 400 rows overrule the gate; model: one point settles neither side, so the
    # served model (the refined labels' distillation) follows the labels instead of the gate
    assert (chosen.kept_labels, chosen.kept_model) == (selection.REFINED, selection.SERVED)
    assert chosen.margins["labels_method"] > 0.1 and chosen.margins["model_method"] < 0
    assert chosen.margins["model"] < 0
    assert "so the plain classifier is kept unless the method is clearly better on them" in chosen.reason
    assert re.search(
        r"labels: refined \(0\.\d+; plain 0\.\d+, clearly better on the trusted rows\)", chosen.reason
    )
    assert re.search(r"model: served, following the labels \(served 0\.\d+; plain 0\.\d+", chosen.reason)
    # the model's own reading pointing the other way, not clearly: the gate decides, as before
    plain_model = preds[selection.PLAIN_MODEL]
    right = np.flatnonzero(plain_model[:400] == y[:400])
    wrong = np.flatnonzero(plain_model[:400] != y[:400])
    served = plain_model.copy()
    served[right[:22]] = (y[right[:22]] + 1) % C  # 22 trusted rows lost, 18 won: one point behind
    served[wrong[:18]] = y[wrong[:18]]
    against = selection.select(
        {**preds, selection.SERVED: served}, noisy, t, trusted, gold_free_may_switch=True
    )
    assert against.margins["model"] <= 0 and against.margins["model_method"] <= 0
    assert (against.kept_labels, against.kept_model) == (selection.REFINED, selection.PLAIN_MODEL)
    assert "following the labels" not in against.reason
    # a plain model clearly better on the trusted rows is kept, whatever the labels decided
    weak = dict(preds, **{selection.SERVED: _draw(rng, y, _symmetric(0.45))})
    chosen = selection.select(weak, noisy, t, trusted, gold_free_may_switch=True)
    assert (chosen.kept_labels, chosen.kept_model) == (selection.REFINED, selection.PLAIN_MODEL)
    assert chosen.margins["model"] > 0 and "following the labels" not in chosen.reason
    # without trusted rows nothing is settled: the gate decides both
    chosen = selection.select(preds, noisy, t, gold_free_may_switch=True, method_wrong_share=_share(0.2))
    assert (chosen.kept_labels, chosen.kept_model) == (selection.PLAIN, selection.PLAIN_MODEL)
    # the reverse holds as before: plain clearly better on them is kept above the gate too
    heavy = _draw(rng, y, _symmetric(0.6))
    flipped = {**preds, selection.PLAIN: preds[selection.REFINED], selection.REFINED: preds[selection.PLAIN]}
    chosen = selection.select(flipped, heavy, t, trusted, gold_free_may_switch=True)
    assert chosen.kept_labels == selection.PLAIN and chosen.margins["labels"] > 0.1
    assert chosen.margins["labels_method"] < 0


def test_the_moments_of_a_model_that_copies_its_labels_follow_the_runs_wrong_share(planted):
    rng, y, _, noisy = planted
    copy = noisy.copy()
    preds = {
        selection.PLAIN: copy,
        selection.REFINED: _draw(rng, y, _symmetric(0.2)),
        selection.PLAIN_MODEL: copy,
        selection.SERVED: _draw(rng, y, _symmetric(0.2)),
    }
    blind = np.eye(C)  # a noise matrix that cannot see the labeller's errors
    unheld = selection.select(preds, noisy, blind)
    assert unheld.moment_estimates[selection.PLAIN_MODEL].accuracy > 0.99
    chosen = selection.select(preds, noisy, blind, gold_free_may_switch=True, method_wrong_share=_share(0.3))
    held = chosen.moment_estimates[selection.PLAIN_MODEL]
    assert abs(held.accuracy - 0.7) < 1e-9 and abs(held.accuracy - float((copy == y).mean())) < 0.03
    assert chosen.estimates[selection.PLAIN_MODEL].accuracy == held.accuracy  # no refined posteriors here
    # the others agree with fewer labels than are right: the wrong share leaves them be
    served = chosen.moment_estimates[selection.SERVED]
    assert served == unheld.moment_estimates[selection.SERVED]


def test_rows_without_a_noisy_label_are_left_out(planted):
    rng, y, t, noisy = planted
    noisy = noisy.copy()
    noisy[::7] = -1
    preds = {
        selection.PLAIN: _draw(rng, y, _symmetric(0.1)),
        selection.REFINED: _draw(rng, y, _symmetric(0.1)),
    }
    chosen = selection.select(preds, noisy, t, gold_free_may_switch=True)
    assert chosen.estimates[selection.PLAIN].rows == int((noisy >= 0).sum())


def test_the_probe_replaces_the_plain_classifier_only_when_it_agrees_clearly_more(planted):
    rng, y, t, noisy = planted  # 30 % of the noisy labels wrong, at random
    plain = _draw(rng, y, _symmetric(0.3))
    preds = {selection.PLAIN: plain, selection.REFINED: _draw(rng, y, _symmetric(0.1))}
    better = dict(preds, **{selection.PROBE: _draw(rng, y, _symmetric(0.1))})
    chosen = selection.select(better, noisy, t, gold_free_may_switch=True, method_wrong_share=_share(0.2))
    assert chosen.kept_labels == selection.PROBE and chosen.margins["probe_labels"] > 0
    assert "labels: the linear probe, clearly better than plain in agreement" in chosen.reason
    # level with plain (its own predictions on a few rows changed): the plain classifier stays
    level = plain.copy()
    level[:30] = rng.integers(0, C, 30)
    same = dict(preds, **{selection.PROBE: level})
    chosen = selection.select(same, noisy, t, gold_free_may_switch=True, method_wrong_share=_share(0.2))
    assert chosen.kept_labels == selection.PLAIN and chosen.margins["probe_labels"] <= 0
    # where the gate lets the method through, the probe never overturns it without trusted rows
    chosen = selection.select(better, noisy, t, gold_free_may_switch=True, method_wrong_share=_share(0.5))
    assert chosen.kept_labels == selection.REFINED and "probe_labels" not in chosen.margins
    # selection="trusted" without trusted rows: nothing is switched
    chosen = selection.select(better, noisy, t, gold_free_may_switch=False, method_wrong_share=_share(0.2))
    assert chosen.kept_labels == selection.REFINED


def test_trusted_rows_may_put_the_probe_above_the_method(planted):
    rng, y, t, noisy = planted
    heavy = _draw(rng, y, _symmetric(0.6))  # the gate lets the method through
    preds = {
        selection.PLAIN: _draw(rng, y, _symmetric(0.5)),
        selection.REFINED: _draw(rng, y, _symmetric(0.3)),
        selection.PROBE: _draw(rng, y, _symmetric(0.05)),
    }
    trusted = np.full(N, -1)
    trusted[:400] = y[:400]
    chosen = selection.select(preds, heavy, t, trusted, gold_free_may_switch=True)
    assert chosen.kept_labels == selection.PROBE and "on the trusted rows" in chosen.reason
    worse = dict(preds, **{selection.PROBE: _draw(rng, y, _symmetric(0.5))})
    chosen = selection.select(worse, heavy, t, trusted, gold_free_may_switch=True)
    assert chosen.kept_labels == selection.REFINED


def test_gold_free_estimates_read_the_refined_posteriors_when_given(planted):
    rng, y, t, noisy = planted
    preds = {
        selection.PLAIN: _draw(rng, y, _symmetric(0.3)),
        selection.REFINED: _draw(rng, y, _symmetric(0.1)),
    }
    # a calibrated reference: 80 % on the true class, the rest spread
    reference = np.full((N, C), 0.2 / (C - 1))
    reference[np.arange(N), y] = 0.8
    chosen = selection.select(preds, noisy, t, reference=reference)
    for name, pred in preds.items():
        expected = 0.8 * np.mean(pred == y) + 0.2 / (C - 1) * np.mean(pred != y)
        assert chosen.estimates[name].method == "posterior"
        assert chosen.estimates[name].accuracy == pytest.approx(expected, abs=1e-9)
        assert chosen.moment_estimates[name].method in ("moments", "bound")
    assert "the refined posteriors of the validation rows" in chosen.reason
    assert set(chosen.as_dict()["moment_estimates"]) == set(preds)
    # where the gate keeps plain, a higher posterior figure for the method (under the gain that would open
    # the gate) is named as the view set aside
    closer = dict(preds, **{selection.REFINED: _draw(rng, y, _symmetric(0.25))})
    gated = selection.select(
        closer, noisy, t, gold_free_may_switch=True, method_wrong_share=_share(0.2), reference=reference
    )
    assert gated.kept_labels == selection.PLAIN
    assert "which the gate sets aside" in gated.reason
    # trusted rows replace both
    trusted = np.full(N, -1)
    trusted[:300] = y[:300]
    chosen = selection.select(preds, noisy, t, trusted, reference=reference)
    assert chosen.estimates[selection.PLAIN].method == "trusted" and not chosen.moment_estimates


def test_a_gold_free_interval_spans_both_estimators(planted):
    """The posterior estimate's bootstrap interval covers row sampling only: with a reference that
    under-states every prediction (its own bias), the interval must still reach the moment estimate, which
    here is right; where the two agree the interval stays narrow."""
    rng, y, t, noisy = planted
    preds = {
        selection.PLAIN: _draw(rng, y, _symmetric(0.3)),
        selection.REFINED: _draw(rng, y, _symmetric(0.1)),
    }
    exact = np.eye(C)[y]  # expects of every prediction exactly its accuracy
    too_flat = np.full((N, C), 0.5 / (C - 1))
    too_flat[np.arange(N), y] = 0.5
    agree = selection.select(preds, noisy, t, reference=exact)
    biased = selection.select(preds, noisy, t, method_wrong_share=_share(0.6), reference=too_flat)
    for name, pred in preds.items():
        truth = float(np.mean(pred == y))
        point = biased.estimates[name]
        assert point.accuracy < truth - 0.15  # the biased reference's own view, reported as the point
        assert point.low <= biased.moment_estimates[name].accuracy <= point.high
        assert point.low <= truth <= point.high
        assert agree.estimates[name].high - agree.estimates[name].low < 0.1
    # the labels' accuracy: the run's share says 0.4, the moments (on the noisy labels, 30 % wrong) 0.7
    assert biased.llm_label_accuracy.accuracy == pytest.approx(0.4)
    assert biased.llm_label_accuracy.low <= 0.38 and biased.llm_label_accuracy.high >= 0.68
    assert biased.noise_share.high >= 0.6 and biased.noise_share.low <= 0.32


def test_a_gold_free_reading_near_the_threshold_is_marked_close_either_side(planted):
    rng, y, t, noisy = planted
    preds = {
        selection.PLAIN: _draw(rng, y, _symmetric(0.3)),
        selection.REFINED: _draw(rng, y, _symmetric(0.1)),
    }

    def chosen(share, **kw):
        return selection.select(
            preds, noisy, t, gold_free_may_switch=True, method_wrong_share=_share(share), **kw
        )

    below, above = chosen(0.37), chosen(0.42)
    assert below.kept_labels == selection.PLAIN and below.gate_close
    assert above.kept_labels == selection.REFINED and above.gate_close and above.as_dict()["gate_close"]
    assert not chosen(0.2).gate_close and not chosen(0.5).gate_close
    # no gate, no close call: selection="trusted", or trusted rows that measure the share
    assert not selection.select(preds, noisy, t, method_wrong_share=_share(0.41)).gate_close
    trusted = np.full(N, -1)
    trusted[:400] = y[:400]
    assert not chosen(0.41, trusted=trusted).gate_close


def test_too_few_training_rows_per_class_keep_plain_whatever_the_wrong_share(planted):
    """Under METHOD_MIN_ROWS_PER_CLASS labelled training rows per class the gate keeps plain even where the
    run reads many wrong labels (small data inflates that reading), reads no starved class, expected gain
    or close call, and says why; trusted rows that find the method clearly better still keep it."""
    rng, y, t, noisy = planted
    preds = {
        selection.PLAIN: _draw(rng, y, _symmetric(0.3)),
        selection.REFINED: _draw(rng, y, _symmetric(0.1)),
        selection.PLAIN_MODEL: _draw(rng, y, _symmetric(0.3)),
        selection.SERVED: _draw(rng, y, _symmetric(0.1)),
    }
    floor = selection.METHOD_MIN_ROWS_PER_CLASS
    reference = np.full((N, C), 0.2 / (C - 1))
    reference[np.arange(N), y] = 0.8

    def chosen(share, per_class, **kw):
        return selection.select(
            preds,
            noisy,
            t,
            gold_free_may_switch=True,
            method_wrong_share=_share(share),
            reference=reference,
            rows_per_class=per_class,
            **kw,
        )

    enough = chosen(0.6, floor)
    assert (enough.kept_labels, enough.kept_model) == (selection.REFINED, selection.SERVED)
    assert not enough.few_rows and enough.as_dict()["rows_per_class"] == floor
    small = chosen(0.6, floor - 1)
    assert (small.kept_labels, small.kept_model) == (selection.PLAIN, selection.PLAIN_MODEL)
    assert small.few_rows and small.as_dict()["few_rows"]
    assert small.reason.startswith(
        f"the run has {floor - 1} labelled training rows per class, under the {floor} where refinement has "
        "helped; the run estimates 60% of the labels wrong, so the plain classifier is kept; "
    )
    # a close reading is no close call, and a gain the refined posteriors expect is not read, on small data
    assert not chosen(0.41, floor - 1).gate_close and chosen(0.41, floor).gate_close
    assert (
        chosen(0.2, floor - 1).expected_gain is None and chosen(0.2, floor - 1).kept_labels == selection.PLAIN
    )
    assert (
        chosen(0.2, floor).expected_gain is not None and chosen(0.2, floor).kept_labels == selection.REFINED
    )
    # selection="trusted" has no gate, and trusted rows that find the method clearly better keep it
    reported = selection.select(preds, noisy, t, method_wrong_share=_share(0.6), rows_per_class=floor - 1)
    assert reported.kept_labels == selection.REFINED and not reported.few_rows
    trusted = np.full(N, -1)
    trusted[:400] = y[:400]
    measured = chosen(0.6, floor - 1, trusted=trusted)
    assert (measured.kept_labels, measured.kept_model) == (selection.REFINED, selection.SERVED)
    assert "unless the method is clearly better on them" in measured.reason


def test_starved_classes_are_not_read_on_too_few_training_rows():
    rng = np.random.default_rng(5)
    noisy = _imbalanced(rng)
    preds = {  # plain has not learnt the rare class, the method's outputs keep it (the rule above switches)
        selection.PLAIN: (rng.random(len(noisy)) < 0.005).astype(np.int64),
        selection.REFINED: (rng.random(len(noisy)) < 0.08).astype(np.int64),
        selection.PLAIN_MODEL: (rng.random(len(noisy)) < 0.005).astype(np.int64),
        selection.SERVED: (rng.random(len(noisy)) < 0.08).astype(np.int64),
    }

    def chosen(per_class):
        return selection.select(
            preds,
            noisy,
            np.eye(2),
            gold_free_may_switch=True,
            method_wrong_share=_share(0.1),
            rows_per_class=per_class,
        )

    assert chosen(selection.METHOD_MIN_ROWS_PER_CLASS).kept_labels == selection.REFINED
    few = chosen(selection.METHOD_MIN_ROWS_PER_CLASS - 1)
    assert (few.kept_labels, few.kept_model) == (selection.PLAIN, selection.PLAIN_MODEL)
    assert few.starved == {} and "not learnt a class" not in few.reason


def test_a_large_expected_gain_opens_the_gate_under_the_wrong_share_it_reads(planted):
    """Gold-free, a wrong-label reading under METHOD_MIN_NOISE keeps plain unless the refined posteriors
    expect the refined labels METHOD_MIN_EXPECTED_GAIN or more ahead: then both decisions keep the method,
    the gain is recorded (the report asks for trusted rows to confirm it) and the reason says why. Not on a
    small gain, the moments' view, a reading on fewer than EXPECTED_GAIN_MIN_ROWS rows, or with trusted
    rows, which decide themselves; a reading at or above the share threshold needs no gain."""
    rng, y, t, noisy = planted
    plain = _draw(rng, y, _symmetric(0.3))
    reference = np.full((N, C), 0.2 / (C - 1))  # calibrated: 80 % on the true class
    reference[np.arange(N), y] = 0.8

    def chosen(refined_error, share, **kw):
        preds = {
            selection.PLAIN: plain,
            selection.REFINED: _draw(rng, y, _symmetric(refined_error)),
            selection.PLAIN_MODEL: plain,
            selection.SERVED: _draw(rng, y, _symmetric(refined_error)),
        }
        kw.setdefault("reference", reference)
        return selection.select(
            preds, noisy, t, gold_free_may_switch=True, method_wrong_share=_share(share), **kw
        )

    far_ahead = chosen(0.1, 0.2)
    expected = far_ahead.estimates[selection.REFINED].accuracy - far_ahead.estimates[selection.PLAIN].accuracy
    assert expected >= selection.METHOD_MIN_EXPECTED_GAIN
    assert (far_ahead.kept_labels, far_ahead.kept_model) == (selection.REFINED, selection.SERVED)
    assert far_ahead.expected_gain == pytest.approx(expected)
    assert far_ahead.as_dict()["expected_gain"] == pytest.approx(expected, abs=1e-4)
    assert far_ahead.reason.startswith(
        "the run estimates 20% of the labels wrong, below the 40% where refinement has helped, but the "
        f"refined posteriors expect the refined labels {expected * 100:.0f} points more accurate"
    )
    barely = chosen(0.27, 0.2)  # the refined labels barely ahead in their own view
    assert (barely.kept_labels, barely.kept_model) == (selection.PLAIN, selection.PLAIN_MODEL)
    assert barely.expected_gain is None
    close = chosen(0.1, 0.37)  # the gain decides, so the share's close call is not one
    assert close.kept_labels == selection.REFINED and close.expected_gain is not None and not close.gate_close
    above = chosen(0.1, 0.5)
    assert above.kept_labels == selection.REFINED and above.expected_gain is None
    moments = chosen(0.1, 0.2, reference=None)
    assert moments.kept_labels == selection.PLAIN and moments.expected_gain is None
    few = selection.select(
        {selection.PLAIN: plain[:60], selection.REFINED: _draw(rng, y[:60], _symmetric(0.1))},
        noisy[:60],
        t,
        gold_free_may_switch=True,
        method_wrong_share=_share(0.2),
        reference=reference[:60],
    )
    assert few.kept_labels == selection.PLAIN and few.expected_gain is None  # too few rows to read it
    trusted = np.full(N, -1)
    trusted[:400] = y[:400]
    assert chosen(0.1, 0.2, trusted=trusted).expected_gain is None
    assert chosen(0.1, 0.2, trusted=trusted).as_dict()["expected_gain"] is None


def test_an_expected_gain_does_not_open_the_gate_for_refined_labels_that_drop_a_class(planted):
    """Refined labels that all but drop a class the labeller uses (a collapse their own posteriors cannot
    see) do not open the gate on the gain those posteriors expect; the unforced labels are read where given."""
    rng, y, t, noisy = planted
    reference = np.full((N, C), 0.2 / (C - 1))
    reference[np.arange(N), y] = 0.8
    refined = _draw(rng, y, _symmetric(0.1))
    collapsed = np.where(refined == 0, 1, refined)  # class 0 (about 1/C of the labels) never predicted
    preds = {selection.PLAIN: _draw(rng, y, _symmetric(0.3)), selection.REFINED: refined}

    def chosen(**kw):
        return selection.select(
            preds,
            noisy,
            t,
            gold_free_may_switch=True,
            method_wrong_share=_share(0.2),
            reference=reference,
            **kw,
        )

    assert chosen().kept_labels == selection.REFINED and chosen().expected_gain is not None
    dropped = chosen(refined_unforced=collapsed)
    assert dropped.kept_labels == selection.PLAIN and dropped.expected_gain is None
    # the collapsed labels themselves, against a plain classifier so poor that they still read far ahead
    poor = {selection.PLAIN: _draw(rng, y, _symmetric(0.6)), selection.REFINED: collapsed}
    direct = selection.select(
        poor, noisy, t, gold_free_may_switch=True, method_wrong_share=_share(0.2), reference=reference
    )
    read = direct.estimates[selection.REFINED].accuracy - direct.estimates[selection.PLAIN].accuracy
    assert read >= selection.METHOD_MIN_EXPECTED_GAIN
    assert direct.kept_labels == selection.PLAIN and direct.expected_gain is None


def _imbalanced(rng, n: int = 1000, minority: float = 0.1) -> np.ndarray:
    """Two classes, the labeller giving the minority class to about `minority` of the rows."""
    return (rng.random(n) < minority).astype(np.int64)


@pytest.mark.parametrize(
    ("plain_rate", "refined_rate", "served_rate", "switches"),
    [
        (0.005, 0.08, 0.08, True),  # plain has not learnt the class, the method's outputs keep it
        (0.05, 0.08, 0.08, False),  # plain predicts it half as often as the labeller: not starved
        (0.005, 0.02, 0.02, False),  # the method's outputs starve it too: nothing to gain by switching
        # the refined labels starve it and only the model distilled from them predicts it now and then: a
        # class the labeller over-uses, which plain rightly declines; neither decision switches
        (0.005, 0.005, 0.08, False),
    ],
)
def test_the_gate_does_not_keep_a_plain_classifier_that_starved_a_class(
    plain_rate, refined_rate, served_rate, switches
):
    rng = np.random.default_rng(5)
    noisy = _imbalanced(rng)
    preds = {
        selection.PLAIN: (rng.random(len(noisy)) < plain_rate).astype(np.int64),
        selection.REFINED: (rng.random(len(noisy)) < refined_rate).astype(np.int64),
        selection.PLAIN_MODEL: (rng.random(len(noisy)) < plain_rate).astype(np.int64),
        selection.SERVED: (rng.random(len(noisy)) < served_rate).astype(np.int64),
    }
    chosen = selection.select(
        preds,
        noisy,
        np.eye(2),
        gold_free_may_switch=True,
        method_wrong_share=_share(0.1),  # the gate alone keeps plain
        classes=["other", "rare"],
    )
    expected = (selection.REFINED, selection.SERVED) if switches else (selection.PLAIN, selection.PLAIN_MODEL)
    assert (chosen.kept_labels, chosen.kept_model) == expected
    assert bool(chosen.starved) == switches
    if switches:
        (starved,) = chosen.starved["labels"]
        assert starved["class"] == 1 and starved["predicted_share"] < starved["label_share"] / 3
        assert "not learnt a class" in chosen.reason
        assert chosen.reason.count("plain classifier predicts 'rare' for 0.") == 2  # labels and model
    # with trusted rows the measured comparison decides, never this rule
    trusted = np.full(len(noisy), -1)
    trusted[:200] = noisy[:200]
    with_trusted = selection.select(
        preds, noisy, np.eye(2), trusted, gold_free_may_switch=True, method_wrong_share=_share(0.1)
    )
    assert with_trusted.starved == {}


def test_a_class_only_the_unlabelled_floor_keeps_is_not_one_the_method_found():
    """The refined labels keep the class plain starved only because the floor on unlabelled texts raised it
    to the labeller's share: read without that floor they starve it too, and the gate's plain choice
    stands."""
    rng = np.random.default_rng(5)
    noisy = _imbalanced(rng)
    plain = (rng.random(len(noisy)) < 0.005).astype(np.int64)
    preds = {
        selection.PLAIN: plain,
        selection.REFINED: (rng.random(len(noisy)) < 0.08).astype(np.int64),  # with the floor
        selection.PLAIN_MODEL: plain,
        selection.SERVED: (rng.random(len(noisy)) < 0.08).astype(np.int64),
    }
    args = (preds, noisy, np.eye(2))
    kw = {"gold_free_may_switch": True, "method_wrong_share": _share(0.1)}
    assert selection.select(*args, **kw).kept_labels == selection.REFINED  # the floored read alone switches
    unforced = (rng.random(len(noisy)) < 0.005).astype(np.int64)
    chosen = selection.select(*args, **kw, refined_unforced=unforced)
    assert (chosen.kept_labels, chosen.kept_model) == (selection.PLAIN, selection.PLAIN_MODEL)
    assert chosen.starved == {}


def test_a_few_validation_rows_never_call_a_class_starved():
    # make demo's case: 19 validation rows, the labeller gives the class 4, plain predicts it once
    noisy = np.array([1] * 4 + [0] * 15)
    plain = np.array([1] + [0] * 18)
    assert selection.starved_classes(plain, noisy, 2) == []
    assert selection.starved_classes(np.tile(plain, 3), np.tile(noisy, 3), 2)[0]["class"] == 1  # 12 rows
