"""`make demo`'s closing summary: what the run kept and why, beside the toy gold, said plainly (fake reports)."""

from __future__ import annotations

from app.demo import _truth, checked_rows, format_checked_summary, format_summary
from sidyp_engine.synthetic import make_toy_dataset


def _est(acc: float, rows: int = 19) -> dict:
    return {"accuracy": acc, "low": acc - 0.2, "high": min(acc + 0.2, 1.0), "method": "moments", "rows": rows}


def _score(acc: float) -> dict:
    return {"accuracy": acc, "macro_f1": acc - 0.05, "ece": 0.2}


def _report(
    kept: str = "refined", kept_model: str = "served", labels: float = 0.62, model: float = 0.68
) -> dict:
    selection = {
        "kept": kept,
        "kept_model": kept_model,
        "reason": "estimated from the noisy validation labels and the noise matrix; labels: refined (0.819; "
        "plain 0.576, not clearly better); without trusted rows the gold-free estimates are reported, not acted on",
        "rule": "plain kept only when better in >= 95% of paired bootstrap resamples",
        "estimates": {
            "plain": _est(0.576),
            "refined": _est(0.819),
            "served": _est(0.949),
            "plain_model": _est(0.668),
        },
        "llm_label_accuracy": _est(0.669),
        "noise_share": _est(0.331),
        "margins": {"labels": -0.3, "model": -0.4},
    }
    ev = {
        "n_rows": 100,
        "n_scored": 100,
        "n_skipped": 0,
        "llm_label_accuracy": 0.62,
        "noisy_classifier": _score(0.81),
        "refined_posterior": _score(labels),
        "served": _score(model),
    }
    # as GET /v1/jobs/{id}/report returns it: the selection under diagnostics only
    return {"eval": ev, "diagnostics": {"selection": selection}}


def test_summary_says_what_was_kept_and_why():
    text = "\n".join(format_summary(_report()))
    assert "labels delivered: refined (the refined labels (SiDyP))" in text
    assert "model served:     served (the distilled served model)" in text
    assert "why: estimated from the noisy validation labels" in text and "not acted on" in text
    assert "rule: plain kept only when better in >= 95%" in text
    assert "0.669  [0.469, 0.869]  (moments, 19 rows)" in text  # the LLM labels' estimate with its interval
    assert "refined (method's labels)    0.819  [0.619, 1.000]  (moments, 19 rows) <- kept" in text
    assert (
        "noisy-label classifier       accuracy 0.810" in text
        and "LLM labels                   accuracy 0.620" in text
    )


def test_summary_says_in_words_when_the_method_did_harm():
    text = "\n".join(format_summary(_report()))
    assert (
        "the delivered labels: WORSE than the plain noisy-label classifier on the toy gold (0.620 vs 0.810)"
        in text
    )
    assert (
        "the served model: WORSE than the plain noisy-label classifier on the toy gold (0.680 vs 0.810)"
        in text
    )
    assert "on this set the method did harm" in text
    # and why the selection did not catch it: its estimates said the opposite of the gold
    assert (
        "the gold-free estimates put it ahead of plain (0.819 vs 0.576), the opposite of the toy gold" in text
    )


def test_summary_when_the_plain_classifier_was_kept_or_the_method_helped():
    kept_plain = "\n".join(format_summary(_report("plain", "plain_model", labels=0.81, model=0.80)))
    assert "labels delivered: plain (the plain classifier's labels)" in kept_plain
    assert "the same accuracy as the plain noisy-label classifier on the toy gold (0.810)" in kept_plain
    helped = "\n".join(format_summary(_report(labels=0.9, model=0.88)))
    assert "better than the plain noisy-label classifier on the toy gold (0.900 vs 0.810)" in helped
    assert "WORSE" not in helped and "did harm" not in helped and "kept it anyway" not in helped


def test_summary_without_selection_or_gold():
    assert "holds no selection" in "\n".join(format_summary({"eval": None, "diagnostics": {}}))
    report = _report()
    report["eval"] = None
    assert "nothing measured" in "\n".join(format_summary(report))


def test_truth_line_breaks_the_noise_down_by_kind_of_text():
    line = _truth(make_toy_dataset(n_per_class=50, seed=0))
    assert line.startswith("truly wrong: ") and "with a cue of another topic" in line and "plain" in line


def test_summary_prints_the_report_warnings():
    report = _report()
    report["warnings"] = [
        {"code": "noise_gate_close", "message": "the run estimates 41% of the labels wrong"}
    ]
    assert "warning: the run estimates 41% of the labels wrong" in "\n".join(format_summary(report))
    assert "warning:" not in "\n".join(format_summary(_report()))


def test_the_rows_the_demo_checks_by_hand_are_a_random_sample_with_their_gold_label():
    gold = [f"c{i % 3}" for i in range(150)]
    trusted = checked_rows(gold, 40)
    picked = [i for i, t in enumerate(trusted) if t is not None]
    assert len(picked) == 40 and all(trusted[i] == gold[i] for i in picked)
    assert picked != list(range(40)) and max(picked) > 100  # spread over the set, not its first rows
    assert checked_rows(gold, 40) == trusted  # the same draw every time


def test_the_checked_run_is_set_beside_the_first_on_the_toy_gold():
    before = _report(kept="plain", kept_model="plain_model", labels=0.81, model=0.80)
    after = _report(kept="refined", kept_model="served", labels=0.86, model=0.84)
    after["diagnostics"]["selection"]["reason"] = "the trusted rows measure 30% of the labels wrong"
    after["diagnostics"]["selection"]["temperature_source"] = "trusted rows (n=40: 0 validation, 40 training)"
    after["warnings"] = [{"code": "flagged_vs_noise_share", "message": "flagged 12% against 30% wrong"}]
    text = "\n".join(format_checked_summary(before, after, 40, 40, 12))
    assert "with 40 training rows checked by hand (a random sample)" in text
    assert "the checks found 12 of 40 LLM labels wrong (30%); the run measures" in text
    assert "labels delivered: refined; model served: served" in text
    assert "why: the trusted rows measure 30% of the labels wrong" in text
    assert "temperatures fitted on: trusted rows (n=40" in text
    assert "warning: flagged 12% against 30% wrong" in text
    assert "delivered labels             accuracy 0.810 -> 0.860" in text
    assert "delivered model              accuracy 0.800 -> 0.840" in text
    after["eval"] = None
    short = format_checked_summary(before, after, 40, 37, 13)
    assert "the checks found 13 of 37 LLM labels wrong (35%), and 3 the LLM left unlabelled;" in short[2]
    assert short[-1] == "no evaluation rows with gold labels: nothing measured"
