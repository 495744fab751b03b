"""The report's selection and estimates sections, and the flagged-vs-estimated-noise warning."""

from __future__ import annotations

import numpy as np

from sidyp_engine import selection
from sidyp_engine.report import build_report
from sidyp_engine.selection import CARRIED_TEMPERATURE, SERVED_MOMENTS_TEMPERATURE
from tests.engine.report_fixtures import fake_result
from tests.engine.test_estimates import _draw, _symmetric


def _selection_dict(noise: float) -> dict:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 2000)
    t = _symmetric(noise)
    preds = {name: _draw(rng, y, _symmetric(0.1)) for name in ("plain", "refined", "plain_model", "served")}
    return selection.select(preds, _draw(rng, y, t), t).as_dict()


def _codes(report: dict) -> list[str]:
    return [w["code"] for w in report["warnings"]]


def test_sections_and_a_warning_when_flags_disagree_with_the_estimate():
    chosen = _selection_dict(0.3)
    result = fake_result(diagnostics={"selection": chosen, "flagged_share": 0.05})
    report = build_report(result)
    assert report["selection"]["kept"] == "refined"
    assert set(report["selection"]["estimates"]) == {"plain", "refined", "plain_model", "served"}
    est = report["estimates"]
    assert est["delivered_labels"] == chosen["estimates"]["refined"]
    assert est["delivered_model"] == chosen["estimates"]["served"]
    assert abs(est["wrong_label_share"]["accuracy"] - 0.3) < 0.05
    warning = next(w for w in report["warnings"] if w["code"] == "flagged_vs_noise_share")
    assert warning["flagged_share"] == 0.05 and "no other class is more probable" in warning["message"]


def test_no_warning_when_flags_match_and_no_sections_without_selection():
    chosen = _selection_dict(0.3)
    share = chosen["noise_share"]["accuracy"]
    report = build_report(fake_result(diagnostics={"selection": chosen, "flagged_share": share + 0.05}))
    assert "flagged_vs_noise_share" not in _codes(report)
    plain = build_report(fake_result())
    assert plain["selection"] is None and plain["estimates"] is None
    assert "flagged_vs_noise_share" not in _codes(plain)


def test_rule_made_labels_get_a_warning_until_trusted_rows_set_the_temperature():
    chosen = _selection_dict(0.3)
    rule = {"selection": chosen, "held_out_label_agreement": 0.99}
    warning = next(w for w in build_report(fake_result(diagnostics=rule))["warnings"] if "rule" in w["code"])
    assert warning["code"] == "labels_look_like_a_rule" and "trusted_label" in warning["message"]
    assert "99%" in warning["message"]
    habit = {"selection": chosen, "held_out_label_agreement": 0.8}
    assert "labels_look_like_a_rule" not in _codes(build_report(fake_result(diagnostics=habit)))
    assert "moment" not in warning["message"]
    moments = dict(chosen, temperature_source=SERVED_MOMENTS_TEMPERATURE)
    served = build_report(fake_result(diagnostics={"selection": moments, "held_out_label_agreement": 0.99}))
    warning = next(w for w in served["warnings"] if w["code"] == "labels_look_like_a_rule")
    assert "method-of-moments estimate" in warning["message"] and "trusted_label" in warning["message"]
    # and still when its confidence was then matched on the evaluation texts
    carried = dict(chosen, temperature_source=SERVED_MOMENTS_TEMPERATURE + CARRIED_TEMPERATURE)
    served = build_report(fake_result(diagnostics={"selection": carried, "held_out_label_agreement": 0.99}))
    warning = next(w for w in served["warnings"] if w["code"] == "labels_look_like_a_rule")
    assert "method-of-moments estimate" in warning["message"]
    trusted = dict(chosen, temperature_source="trusted rows (n=100, validation)")
    checked = {"selection": trusted, "held_out_label_agreement": 0.99}
    assert "labels_look_like_a_rule" not in _codes(build_report(fake_result(diagnostics=checked)))


def test_a_close_gate_reading_is_a_warning_that_asks_for_trusted_rows():
    chosen = dict(_selection_dict(0.3), method_noise_share=0.41, gate_close=True, kept="refined")
    warning = next(
        w
        for w in build_report(fake_result(diagnostics={"selection": chosen}))["warnings"]
        if w["code"] == "noise_gate_close"
    )
    assert "41%" in warning["message"] and "the refined labels kept" in warning["message"]
    assert "trusted_label" in warning["message"] and warning["threshold"] == selection.METHOD_MIN_NOISE
    assert warning["asks_for"] == "trusted_rows"
    far = dict(chosen, gate_close=False)
    assert "noise_gate_close" not in _codes(build_report(fake_result(diagnostics={"selection": far})))


def test_a_gate_opened_on_the_expected_gain_is_a_warning_that_asks_for_trusted_rows():
    chosen = dict(_selection_dict(0.3), method_noise_share=0.31, kept="refined", expected_gain=0.137)
    chosen["estimates"] = {
        **chosen["estimates"],
        "plain": dict(chosen["estimates"]["plain"], accuracy=0.651),
        "refined": dict(chosen["estimates"]["refined"], accuracy=0.788),
    }
    warning = next(
        w
        for w in build_report(fake_result(diagnostics={"selection": chosen}))["warnings"]
        if w["code"] == "method_kept_on_expected_gain"
    )
    assert (
        "method's output was kept" in warning["message"] and "31% of the labels wrong" in warning["message"]
    )
    assert "14 points" in warning["message"] and "79% against 65%" in warning["message"]
    assert "trusted_label" in warning["message"]
    assert warning["estimated_gain"] == 0.137 and warning["threshold"] == selection.METHOD_MIN_EXPECTED_GAIN
    assert warning["asks_for"] == "trusted_rows"  # the console offers a random sample to review beside it
    quiet = dict(chosen, expected_gain=None)
    codes = _codes(build_report(fake_result(diagnostics={"selection": quiet})))
    assert "method_kept_on_expected_gain" not in codes


def test_too_few_rows_per_class_is_a_warning_that_asks_for_trusted_rows():
    chosen = dict(
        _selection_dict(0.3), method_noise_share=0.52, kept="plain", few_rows=True, rows_per_class=55.6
    )
    warning = next(
        w
        for w in build_report(fake_result(diagnostics={"selection": chosen}))["warnings"]
        if w["code"] == "few_rows_per_class"
    )
    floor = selection.METHOD_MIN_ROWS_PER_CLASS
    assert f"56 labelled training rows per class, under the {floor}" in warning["message"]
    assert "(52%)" in warning["message"] and "trusted_label" in warning["message"]
    assert warning["rows_per_class"] == 55.6 and warning["threshold"] == floor
    assert warning["asks_for"] == "trusted_rows"
    # with trusted rows they were read: the warning says so and asks for nothing
    checked = dict(chosen, llm_label_accuracy=dict(chosen["llm_label_accuracy"], method="trusted"))
    warning = next(
        w
        for w in build_report(fake_result(diagnostics={"selection": checked}))["warnings"]
        if w["code"] == "few_rows_per_class"
    )
    assert "did not find the refined labels clearly better" in warning["message"]
    assert "asks_for" not in warning and "trusted_label" not in warning["message"]
    enough = dict(chosen, few_rows=False, rows_per_class=400.0)
    assert "few_rows_per_class" not in _codes(build_report(fake_result(diagnostics={"selection": enough})))


def test_trusted_rows_that_do_not_look_random_get_a_warning():
    chosen = _selection_dict(0.3)
    check = {"trusted_rows": 100, "other_rows": 178, "given_label_probability_trusted": 0.21,
             "given_label_probability_others": 0.55, "z": -9.3, "looks_random": False}  # fmt: skip
    report = build_report(fake_result(diagnostics={"selection": dict(chosen, trusted_sample=check)}))
    warning = next(w for w in report["warnings"] if w["code"] == "trusted_rows_not_random")
    assert "likely-wrong" in warning["message"] and "too pessimistic" in warning["message"]
    assert "21%" in warning["message"] and "55%" in warning["message"] and warning["z"] == -9.3
    random_draw = dict(check, given_label_probability_trusted=0.53, z=-0.6, looks_random=True)
    quiet = build_report(fake_result(diagnostics={"selection": dict(chosen, trusted_sample=random_draw)}))
    assert "trusted_rows_not_random" not in _codes(quiet)
    assert "trusted_rows_not_random" not in _codes(
        build_report(fake_result(diagnostics={"selection": chosen}))
    )
