"""calibrate() end to end on toy data with the tiny backbone: outputs, progress, stopping, resuming."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from sidyp_engine import calibrate
from sidyp_engine.types import CalibrationConfig, CalibrationStopped, InvalidInputError
from tests.conftest import toy_dataset


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The tiny backbone is too small to gain from threads, and on a busy box two threads lose a lot."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


STAGES = ["validate", "classifier", "prior", "refiner", "posterior", "served", "plain", "select", "done"]


def _config(backbone: str, **overrides) -> CalibrationConfig:
    fields = dict(
        backbone=backbone, epochs=2, branches=2, diffusion_epochs=2, batch_size=16, learning_rate=1e-3
    )
    return CalibrationConfig(**(fields | overrides))


EXTRA_TEXTS = ["the pizza recipe with cheese", "the laptop server code", "the coach and the team"]


def _call_toy_again(toy_run, backbone, work_dir, progress, **overrides):
    """`toy_run`'s call once more, in `work_dir`, with config overrides."""
    return calibrate(
        toy_run["texts"],
        toy_run["noisy"],
        toy_run["classes"],
        extra_texts=EXTRA_TEXTS,
        config=_config(backbone, **overrides),
        progress=progress,
        work_dir=work_dir,
    )


@pytest.fixture(scope="module")
def toy_run(tiny_backbone, tmp_path_factory):
    texts, noisy, gold, classes = toy_dataset(n_per_class=12, noise=0.3, seed=1)
    noisy = list(noisy)
    noisy[4] = None  # one row the labeller gave no answer for
    extra = EXTRA_TEXTS
    seen = []
    work_dir = tmp_path_factory.mktemp("work")
    result = calibrate(
        texts,
        noisy,
        classes + ["unused"],
        extra_texts=extra,
        config=_config(tiny_backbone),
        progress=seen.append,
        work_dir=work_dir,
        collect_diagnostics=True,
    )
    # the work dir as this call left it: later tests run other calls in `work_dir`, which replace its stages
    snapshot = tmp_path_factory.mktemp("snapshot") / "work"
    shutil.copytree(work_dir, snapshot)
    return dict(
        result=result,
        seen=seen,
        texts=texts,
        noisy=noisy,
        classes=classes + ["unused"],
        work_dir=work_dir,
        snapshot=snapshot,
    )


def test_outputs_cover_every_training_row(toy_run):
    r, texts = toy_run["result"], toy_run["texts"]
    n, c = len(texts), 4
    assert r.posteriors.shape == (n, c)
    assert np.allclose(r.posteriors.sum(1), 1.0, atol=1e-4)
    assert (r.posteriors >= 0).all()
    assert r.given_labels == toy_run["noisy"]
    assert len(r.suggested_labels) == n and set(r.suggested_labels) <= set(toy_run["classes"])
    assert r.suggested_labels == [toy_run["classes"][i] for i in r.posteriors.argmax(1)]
    # label quality is the posterior of the given label; the unlabelled row has none
    labelled = np.array([x is not None for x in toy_run["noisy"]])
    ids = np.array([toy_run["classes"].index(x) if x else -1 for x in toy_run["noisy"]])
    assert np.allclose(r.label_quality[labelled], r.posteriors[labelled, ids[labelled]])
    assert r.label_quality[4] == 0.0 and not r.is_label_issue[4]
    assert np.array_equal(r.is_label_issue, labelled & (r.posteriors.argmax(1) != ids))
    # no validation set given: about 10% of the rows were held out and still got outputs
    assert r.is_validation.sum() == round(0.1 * n)
    assert np.allclose(r.posteriors[r.is_validation].sum(1), 1.0, atol=1e-4)


def test_noise_matrix_and_share(toy_run):
    r = toy_run["result"]
    assert r.noise_matrix.shape == (4, 4)
    assert np.allclose(r.noise_matrix.sum(1), 1.0)
    labelled = np.array([x is not None for x in toy_run["noisy"]])
    # the method's own estimate, the one the noise gate read, whichever labels were kept
    assert r.noise_share == r.diagnostics["selection"]["method_noise_share"]
    # the delivered posteriors carry the class floor's weights, the estimate reads them without
    if r.diagnostics["selection"]["kept"] == "refined" and r.diagnostics["class_floor_weights"] is None:
        assert r.noise_share == pytest.approx(float((1 - r.label_quality[labelled]).mean()), abs=1e-3)
    assert 0.0 <= r.noise_share <= 1.0


def test_extra_texts_get_refined_and_noisy_posteriors(toy_run):
    r = toy_run["result"]
    assert r.extra_posteriors.shape == (3, 4) and r.extra_noisy_posteriors.shape == (3, 4)
    assert np.allclose(r.extra_posteriors.sum(1), 1.0, atol=1e-4)


def test_served_model_predicts_probabilities(toy_run):
    probs = toy_run["result"].model.predict_proba(["a new football match", "pasta for dinner"])
    assert probs.shape == (2, 4) and np.allclose(probs.sum(1), 1.0, atol=1e-4)


def test_progress_goes_through_the_stages_in_order(toy_run):
    seen = toy_run["seen"]
    order = []
    for p in seen:
        assert 0.0 <= p.fraction <= 1.0
        if not order or order[-1] != p.stage:
            order.append(p.stage)
    assert order == STAGES
    timings = toy_run["result"].timings
    assert set(STAGES[:-1]) | {"total"} <= set(timings)
    assert timings["total"] >= sum(timings[s] for s in STAGES[:-1]) * 0.99


@pytest.mark.slow  # two more calibrate runs (~3 s): in `make test`, not `make test-fast`
def test_second_call_with_the_same_work_dir_skips_finished_stages(toy_run, tiny_backbone):
    seen = []
    again = _call_toy_again(toy_run, tiny_backbone, toy_run["work_dir"], seen.append)
    first = toy_run["result"]
    assert again.diagnostics["reused_stage1"] is True
    # no training step was reported: stage 1 went straight from 0 to done
    assert [p.fraction for p in seen if p.stage == "classifier"] == [0.0, 1.0]
    # nor for the plain fine-tune: its checkpoint shares stage 1's key
    assert [(p.fraction, p.message) for p in seen if p.stage == "plain"][-1] == (1.0, "reused checkpoint")
    assert [p.fraction for p in seen if p.stage == "plain"] == [0.0, 1.0]
    assert not any(p.stage == "served" and 0.0 < p.fraction < 1.0 for p in seen)
    assert again.timings["classifier"] < first.timings["classifier"] / 3
    assert np.allclose(again.posteriors, first.posteriors, atol=1e-5)

    # a call that changes only a later stage's setting reuses stage 1 and recomputes the rest
    seen_k = []
    other_k = _call_toy_again(toy_run, tiny_backbone, toy_run["work_dir"], seen_k.append, k=2)
    assert other_k.diagnostics["reused_stage1"] is True and other_k.diagnostics["k"] == 2.0
    assert any(p.stage == "served" and 0.0 < p.fraction < 1.0 for p in seen_k)  # distilled again
    assert [p.fraction for p in seen_k if p.stage == "plain"] == [0.0, 1.0]  # the plain fine-tune reused

    # a different call never reuses another's stages; this one also takes the frozen-encoder k-NN path
    changed = calibrate(
        toy_run["texts"],
        toy_run["noisy"],
        toy_run["classes"],
        valid_texts=toy_run["texts"][:6],
        valid_labels=toy_run["noisy"][:6],
        config=_config(tiny_backbone, seed=5, epochs=1, encoder=tiny_backbone, knn_space="encoder", k=3),
        work_dir=toy_run["work_dir"],
        collect_diagnostics=True,
    )
    assert changed.diagnostics["reused_stage1"] is False
    assert changed.diagnostics["knn_space"].startswith("encoder:")
    assert changed.diagnostics["k"] == 3.0  # an explicit k is used as given
    assert first.diagnostics["knn_space"] == "stage1-epoch-1"
    # with an explicit validation set no training row is held out
    assert not changed.is_validation.any()
    assert changed.diagnostic_arrays["valid_posteriors"].shape == (6, 4)


def test_should_stop_raises_within_one_batch(tiny_backbone):
    texts, noisy, _, classes = toy_dataset(n_per_class=8, noise=0.2, seed=2)
    steps = []
    requested = []

    def progress(p):
        if p.stage == "classifier" and p.fraction > 0:
            steps.append(p.fraction)

    def should_stop():
        if len(steps) >= 2:
            requested.append(len(steps))
            return True
        return False

    with pytest.raises(CalibrationStopped):
        calibrate(
            texts, noisy, classes, config=_config(tiny_backbone), progress=progress, should_stop=should_stop
        )
    assert requested and len(steps) == requested[0]  # no further batch ran after the stop request


def test_invalid_input_raises_the_one_error_type(tiny_backbone):
    texts, noisy, _, classes = toy_dataset(n_per_class=5, noise=0.0)
    bad = list(texts)
    bad[2] = " "
    with pytest.raises(InvalidInputError) as err:
        calibrate(bad, noisy, classes, config=_config(tiny_backbone))
    assert err.value.rows == [2]
    with pytest.raises(InvalidInputError, match="valid_labels"):
        calibrate(texts, noisy, classes, valid_texts=texts[:3], config=_config(tiny_backbone))
    with pytest.raises(InvalidInputError, match="not in the class list"):
        calibrate(texts, noisy, classes, valid_texts=texts[:2], valid_labels=["sports", "golf"])


def test_holdout_that_leaves_too_few_examples_names_the_callers_rows(tiny_backbone):
    texts = ["p one", "p two", "q one", "q two", "r one"]
    labels = ["a", "a", "b", "b", "c"]
    with pytest.raises(InvalidInputError, match="after holding out 1 validation rows") as err:
        calibrate(texts, labels, ["a", "b", "c"], config=_config(tiny_backbone))
    # the rows are the caller's row numbers of the classes left with a single training example
    assert err.value.rows and set(err.value.rows) <= {0, 1, 2, 3, 4}
    assert 4 in err.value.rows


def test_held_out_agreement_counts_labelled_rows_only():
    from sidyp_engine.stages.prior import held_out_agreement

    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
    noisy = torch.tensor([0, 1, 1, -1])  # the last row has no label: it does not count
    assert held_out_agreement(probs, noisy) == pytest.approx(2 / 3)
    assert np.isnan(held_out_agreement(probs, torch.full((4,), -1)))
    assert np.isnan(held_out_agreement(None, noisy))


@pytest.mark.parametrize(
    ("setting", "agreement", "expected"),
    [
        ("auto", 0.99, "encoder"),  # the classifiers reproduce held-out labels: the labels are a rule
        ("auto", 0.97, "encoder"),
        ("auto", 0.91, "stage1"),  # an accurate labeller on an easy task (trec with 5 % noise read 0.909)
        ("auto", 0.59, "stage1"),  # LLM-like noise: the fine-tuned space carries the task
        ("auto", float("nan"), "stage1"),  # no labelled held-out row: keep the default space
        ("stage1", 0.99, "stage1"),  # an explicit choice is never overridden
        ("encoder", 0.10, "encoder"),
    ],
)
def test_knn_space_choice(setting, agreement, expected):
    from sidyp_engine.stages.prior import choose_knn_space

    assert choose_knn_space(setting, agreement) == expected


def test_default_k_follows_the_knn_space(toy_run):
    diag = toy_run["result"].diagnostics
    assert diag["k"] == (10.0 if diag["knn_space"].startswith("stage1") else 50.0)
    assert 0.0 <= diag["held_out_label_agreement"] <= 1.0


@pytest.mark.parametrize(
    ("setting", "agreement", "knn_space", "expected"),
    [
        ("auto", 0.99, "auto", False),  # rule-like labels: noise follows the text, not the true class
        ("auto", 0.59, "auto", True),  # an LLM's habits: one noise row per true class
        ("auto", float("nan"), "auto", True),
        ("auto", 0.59, "encoder", False),  # the frozen space, chosen by the caller: off all the same
        ("off", 0.59, "auto", False),
        ("on", 0.99, "auto", True),
    ],
)
def test_noise_model_switch(setting, agreement, knn_space, expected):
    from sidyp_engine.stages.prior import choose_knn_space, use_noise_model

    assert use_noise_model(setting, choose_knn_space(knn_space, agreement)) is expected


def test_toy_run_reports_both_priors(toy_run):
    diag, arrays = toy_run["result"].diagnostics, toy_run["result"].diagnostic_arrays
    vote, used = arrays["extra_vote_prior"], arrays["extra_prior"]
    assert vote.shape == used.shape
    np.testing.assert_allclose(used.sum(1), 1.0, atol=1e-4)
    if diag["noise_model"]:
        assert not np.allclose(vote, used)  # EM moved the prior
    else:
        np.testing.assert_array_equal(vote, used)


def test_diagnostics_are_json_safe_and_name_no_paths(toy_run, tiny_backbone):
    import json

    diag = toy_run["result"].diagnostics
    text = json.dumps(diag)  # raises on numpy arrays or tensors
    assert tiny_backbone not in text
    assert diag["max_length"] == 128
    # the toy texts are a few words: none reaches the 128-token cap
    assert diag["texts_truncated"] == 0
    n_fit = int((~toy_run["result"].is_validation).sum())
    assert toy_run["result"].diagnostic_arrays["noise_scores"].shape == (n_fit,)


def test_texts_truncated_counts_texts_over_max_length(tiny_backbone):
    from sidyp_engine.model import load_tokenizer
    from sidyp_engine.stages.inputs import count_truncated

    tok = load_tokenizer(tiny_backbone)
    texts = ["short text", " ".join(["pizza"] * 40), "the coach"]
    assert count_truncated(tok, texts, 8) == 1
    assert count_truncated(tok, texts, 512) == 0


def test_setup_counts_every_training_text_over_max_length(tiny_backbone):
    # what `texts_truncated` in the diagnostics (and the report's warning) is made of: all the caller's
    # training rows, the held-out validation share included
    from sidyp_engine.pipeline import _setup
    from sidyp_engine.stages.inputs import validate

    texts, noisy, _, classes = toy_dataset(n_per_class=6, noise=0.0, seed=0)
    texts = list(texts)
    texts[0] = texts[3] = " ".join(["pizza"] * 40)
    cfg = _config(tiny_backbone, max_length=16, device="cpu")
    inputs = validate(cfg, texts, noisy, classes, None, None, None)
    assert _setup(cfg, inputs, None).texts_truncated == 2
    assert _setup(_config(tiny_backbone, device="cpu"), inputs, None).texts_truncated == 0


@pytest.mark.slow  # a second calibrate call: in `make test`, not `make test-fast`
def test_a_resumed_call_distils_the_served_model_a_fresh_call_did(toy_run, tiny_backbone, tmp_path):
    """A job resumed after stage 1 loads it instead of training it; the served model it then distils must be
    the uninterrupted run's (its dropout once drew from the global RNG that stage 1's training moved)."""
    from sidyp_engine.served import ServedClassifier

    work_dir = tmp_path / "work"
    shutil.copytree(toy_run["snapshot"], work_dir)
    probe_texts = ["a new football match", "pasta for dinner", "the server crashed again"]
    first = ServedClassifier.load(work_dir / "served", device="cpu").predict_proba(probe_texts)
    shutil.rmtree(work_dir / "served")
    for stored in ("served.json", "served.safetensors"):
        (work_dir / stored).unlink(missing_ok=True)
    seen = []
    _call_toy_again(toy_run, tiny_backbone, work_dir, seen.append)
    assert [p.fraction for p in seen if p.stage == "classifier"] == [0.0, 1.0]  # stage 1 was loaded
    assert any(p.stage == "served" and 0.0 < p.fraction < 1.0 for p in seen)  # the model was distilled again
    again = ServedClassifier.load(work_dir / "served", device="cpu").predict_proba(probe_texts)
    np.testing.assert_array_equal(again, first)
