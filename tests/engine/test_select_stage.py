"""The "select" stage inside calibrate(): trusted rows, the selection diagnostics, and a kept plain model."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sidyp_engine import calibrate, estimates, selection
from sidyp_engine.served import ServedClassifier
from sidyp_engine.stages import select as select_stage
from sidyp_engine.types import CalibrationConfig, InvalidInputError
from tests.conftest import toy_dataset


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _config(backbone: str) -> CalibrationConfig:
    return CalibrationConfig(
        backbone=backbone, epochs=2, branches=2, diffusion_epochs=2, batch_size=16, learning_rate=1e-3
    )


@pytest.fixture(scope="module")
def toy():
    texts, noisy, gold, classes = toy_dataset(n_per_class=14, noise=0.3, seed=2)
    trusted = [g if i % 4 == 0 else None for i, g in enumerate(gold)]
    return texts, noisy, gold, classes, trusted


@pytest.mark.slow  # a whole calibrate run (5-13 s): in `make test`, not `make test-fast`
def test_trusted_rows_are_never_flagged_and_decide_the_selection(toy, tiny_backbone):
    texts, noisy, gold, classes, trusted = toy
    result = calibrate(texts, noisy, classes, config=_config(tiny_backbone), trusted_labels=trusted)
    known = np.array([t is not None for t in trusted])
    assert not result.is_label_issue[known].any()
    assert [s for s, k in zip(result.suggested_labels, known, strict=True) if k] == [t for t in trusted if t]
    chosen = result.diagnostics["selection"]
    assert chosen["kept"] in ("refined", "plain", "probe")
    assert chosen["kept_model"] in ("served", "plain_model", "probe")
    assert set(chosen["estimates"]) == {"plain", "refined", "served", "plain_model", "probe"}
    assert all(e["method"] == "trusted" for e in chosen["estimates"].values())
    # the rows that decide are the trusted ones, validation and training rows alike
    assert chosen["estimates"]["plain"]["rows"] == int(known.sum())
    assert chosen["llm_label_accuracy"]["method"] == "trusted"
    flipped = [n != g for n, g, k in zip(noisy, gold, known, strict=True) if k]
    assert chosen["llm_label_accuracy"]["accuracy"] == pytest.approx(1 - np.mean(flipped), abs=1e-4)
    # the report's headline share of wrong labels is the one the trusted rows measure, not the method's
    # own estimate (which the gold-free gate would read)
    assert result.noise_share == pytest.approx(np.mean(flipped), abs=1e-4)
    assert abs(chosen["method_noise_share"] - np.mean(flipped)) > 1e-3


@pytest.mark.slow  # a whole calibrate run: in `make test`, not `make test-fast`
def test_with_enough_trusted_rows_the_kept_model_is_estimated_on_the_extra_texts(tiny_backbone):
    texts, noisy, gold, classes = toy_dataset(n_per_class=20, noise=0.3, seed=3)
    trusted = [g if i % 2 == 0 else None for i, g in enumerate(gold)]  # 30 of 60: enough for temperatures
    extra = ["the pizza recipe with cheese", "the laptop server code", "the team scored a goal"]
    result = calibrate(
        texts, noisy, classes, extra_texts=extra, config=_config(tiny_backbone), trusted_labels=trusted
    )
    chosen = result.diagnostics["selection"]
    assert chosen["temperature_source"].startswith("trusted rows (n=30")
    carried = chosen["evaluation_estimate"]
    assert carried["method"] == "transferred" and carried["rows"] == len(extra)
    assert 0.0 <= carried["low"] <= carried["accuracy"] <= carried["high"] <= 1.0


def test_a_trusted_label_outside_the_classes_names_the_row(toy, tiny_backbone):
    texts, noisy, _, classes, _ = toy
    trusted = [None] * len(texts)
    trusted[5] = "weather"
    with pytest.raises(InvalidInputError) as err:
        calibrate(texts, noisy, classes, config=_config(tiny_backbone), trusted_labels=trusted)
    assert err.value.rows == [5] and err.value.column == "trusted_label"


def _keeps(monkeypatch, labels: str, model: str) -> None:
    """Whatever the select stage reads, it keeps `labels` and `model`."""
    real_select = selection.select

    def forced(*args, **kwargs):
        chosen = real_select(*args, **kwargs)
        chosen.kept_labels, chosen.kept_model = labels, model
        return chosen

    monkeypatch.setattr(select_stage.selection, "select", forced)


def _plain_wins(monkeypatch) -> None:
    _keeps(monkeypatch, selection.PLAIN, selection.PLAIN_MODEL)


@pytest.mark.slow  # a whole calibrate run (5-13 s): in `make test`, not `make test-fast`
def test_kept_plain_classifier_is_what_the_run_delivers(toy, tiny_backbone, monkeypatch):
    texts, noisy, _, classes, _ = toy
    _plain_wins(monkeypatch)
    extra = ["the pizza recipe with cheese", "the laptop server code"]
    result = calibrate(
        texts, noisy, classes, extra_texts=extra, config=_config(tiny_backbone), collect_diagnostics=True
    )
    assert np.allclose(result.extra_posteriors, result.extra_noisy_posteriors)
    assert result.diagnostics["selection"]["kept"] == "plain"
    # what is delivered is plain fine-tuning itself: the benchmark's noisy baseline, trained apart on the
    # same data, gives the same P(ỹ | x), not a stage-1 branch trained beside the others
    baseline = _plain_fine_tune(texts, noisy, classes, extra, _config(tiny_backbone))
    assert np.allclose(result.extra_posteriors, baseline, atol=1e-5)
    assert not np.allclose(
        result.extra_posteriors, result.diagnostic_arrays["extra_stage1_ensemble"], atol=1e-3
    )
    # the served model is the plain fine-tune, not the distilled one
    served = result.model.predict_proba(extra)
    assert np.allclose(served, result.diagnostic_arrays["extra_plain_model"], atol=1e-5)
    assert (served.argmax(1) == baseline.argmax(1)).all()
    assert not np.allclose(served, result.diagnostic_arrays["extra_served"], atol=1e-3)
    flagged = np.array(result.suggested_labels) != np.array(noisy, dtype=object)
    assert (flagged == result.is_label_issue).all()
    assert result.diagnostics["selection"]["refit"] is None  # without trusted rows nothing is fitted again


@pytest.mark.slow  # a whole calibrate run (5-13 s): in `make test`, not `make test-fast`
def test_a_plain_classifier_kept_with_trusted_rows_is_fitted_again_with_their_labels(
    toy, tiny_backbone, monkeypatch, tmp_path
):
    texts, noisy, _, classes, trusted = toy
    _plain_wins(monkeypatch)
    extra = ["the pizza recipe with cheese", "the laptop server code"]
    seen = []
    cfg = _config(tiny_backbone)
    result = calibrate(
        texts, noisy, classes, extra_texts=extra, config=cfg, collect_diagnostics=True,
        trusted_labels=trusted, progress=seen.append, work_dir=tmp_path,
    )  # fmt: skip
    corrected = [t if t is not None else n for n, t in zip(noisy, trusted, strict=True)]
    assert corrected != list(noisy)  # some trusted rows fix a wrong label
    chosen = result.diagnostics["selection"]
    n_trusted = sum(t is not None for t in trusted)
    assert chosen["refit"] == {
        "trusted_rows": n_trusted, "labels": "plain", "model": "plain_model",
        "temperature": result.model.temperature,
    }  # fmt: skip
    assert f"with the {n_trusted} trusted labels in place" in chosen["reason"]
    assert any(p.stage == "refit" for p in seen)
    # delivered: plain fine-tuning on the labels with the user's checks applied, validation rows included
    refit = _plain_fine_tune(texts, noisy, classes, extra, cfg, fitted_labels=corrected)
    assert not np.allclose(refit, _plain_fine_tune(texts, noisy, classes, extra, cfg), atol=1e-3)
    assert np.allclose(result.extra_posteriors, refit, atol=1e-5)
    assert (result.model.predict_proba(extra).argmax(1) == refit.argmax(1)).all()
    # not the fit that left the trusted rows out, which they scored and whose temperature it carries
    held_out = result.diagnostic_arrays["extra_plain_model"]
    assert not np.allclose(result.model.predict_proba(extra), held_out, atol=1e-3)
    temperature = chosen["refit"]["temperature"]
    assert temperature != 1.0
    tempered = torch.softmax(torch.from_numpy(np.log(refit)).double() / temperature, dim=-1).numpy()
    assert np.allclose(result.model.predict_proba(extra), tempered, atol=1e-4)
    # a resumed job reuses the refit from its checkpoint and delivers the same
    again = []
    resumed = calibrate(
        texts, noisy, classes, extra_texts=extra, config=cfg, trusted_labels=trusted, progress=again.append,
        work_dir=tmp_path,
    )  # fmt: skip
    assert [p.message for p in again if p.stage == "refit"][-1] == "reused checkpoint"
    assert np.allclose(resumed.extra_posteriors, result.extra_posteriors, atol=1e-6)
    assert np.allclose(resumed.model.predict_proba(extra), result.model.predict_proba(extra), atol=1e-6)


@pytest.mark.slow  # two whole calibrate runs: in `make test`, not `make test-fast`
def test_a_served_model_kept_with_trusted_rows_is_distilled_again_with_their_labels(
    toy, tiny_backbone, monkeypatch, tmp_path
):
    texts, noisy, _, classes, trusted = toy
    real_distill = ServedClassifier.distill
    distilled = []

    def recorded(*args, **kwargs):
        model = real_distill(*args, **kwargs)
        distilled.append((list(args[3]), torch.as_tensor(args[4]).clone(), model))
        return model

    _keeps(monkeypatch, selection.REFINED, selection.SERVED)
    monkeypatch.setattr(ServedClassifier, "distill", recorded)
    extra = ["the pizza recipe with cheese", "the laptop server code"]
    cfg, seen = _config(tiny_backbone), []
    result = calibrate(
        texts, noisy, classes, extra_texts=extra, config=cfg, collect_diagnostics=True,
        trusted_labels=trusted, progress=seen.append, work_dir=tmp_path,
    )  # fmt: skip
    chosen = result.diagnostics["selection"]
    n_trusted = sum(t is not None for t in trusted)
    temperature = result.model.temperature
    assert chosen["refit"] == {
        "trusted_rows": n_trusted, "labels": None, "model": "served", "temperature": temperature,
    }  # fmt: skip
    assert "delivered: the distilled served model, fitted again" in chosen["reason"]
    assert [p.message for p in seen if p.stage == "refit"][
        -1
    ] == "kept classifier fitted with the trusted labels"
    (held_texts, held_targets, held_out), (refit_texts, refit_targets, refit) = distilled
    # the first distillation left the trusted rows out; the second has every training row, each trusted row
    # at its trusted label and every other at the refined posterior the first learned
    checked = {t: c for t, c in zip(texts, trusted, strict=True) if c is not None}
    assert not set(held_texts) & set(checked) and set(held_texts) < set(refit_texts)
    for text, target in zip(refit_texts, refit_targets, strict=True):
        if text in checked:
            assert target.tolist() == [float(c == checked[text]) for c in classes]
        else:
            assert torch.allclose(target, held_targets[held_texts.index(text)])
    # delivered: the second, at the temperature the trusted rows fitted to the first
    assert result.model is refit and refit.temperature == held_out.temperature
    assert not np.allclose(
        result.model.predict_proba(extra), result.diagnostic_arrays["extra_served"], atol=1e-4
    )
    # a resumed job reuses the refit from its checkpoint and delivers the same
    again = []
    resumed = calibrate(
        texts, noisy, classes, extra_texts=extra, config=cfg, trusted_labels=trusted, progress=again.append,
        work_dir=tmp_path,
    )  # fmt: skip
    assert [p.message for p in again if p.stage == "refit"][-1] == "reused checkpoint"
    assert np.allclose(resumed.model.predict_proba(extra), result.model.predict_proba(extra), atol=1e-6)


def _plain_fine_tune(texts, noisy, classes, extra, cfg, fitted_labels=None) -> np.ndarray:
    """P(ỹ | x) of the extra texts from plain fine-tuning as the benchmark's baseline runs it: on `noisy`, or
    on `fitted_labels` with the validation rows the run holds out of `noisy`."""
    from sidyp_engine.classifier import train_ensemble
    from sidyp_engine.device import resolve_device
    from sidyp_engine.model import load_tokenizer
    from sidyp_engine.stages.ensemble import plain_config
    from sidyp_engine.stages.inputs import validate

    inputs = validate(cfg, texts, noisy, classes, None, None, extra)
    ids = inputs.ids
    if fitted_labels is not None:
        ids = np.array([classes.index(y) if y is not None else -1 for y in fitted_labels])
    out = train_ensemble(
        plain_config(cfg),
        cfg.backbone,
        load_tokenizer(cfg.backbone),
        inputs.train_texts,
        torch.from_numpy(ids[inputs.fit_rows]),
        inputs.valid_texts,
        torch.from_numpy(ids[inputs.is_validation]),
        extra,
        len(classes),
        resolve_device(cfg.device),  # the run's own device: CPU and CUDA arithmetic differ in the last digits
    )
    return out.noisy_posteriors["extra"].numpy()


@pytest.mark.slow  # a whole calibrate run (5-13 s): in `make test`, not `make test-fast`
def test_a_kept_probe_is_what_the_run_delivers(toy, tiny_backbone, monkeypatch):
    texts, noisy, _, classes, _ = toy
    _keeps(monkeypatch, selection.PROBE, selection.PROBE)
    extra = ["the pizza recipe with cheese", "the laptop server code"]
    result = calibrate(
        texts, noisy, classes, extra_texts=extra, config=_config(tiny_backbone), collect_diagnostics=True
    )
    assert result.diagnostics["selection"]["kept"] == "probe"
    # the served model is the probe: the frozen encoder with the logistic regression as its head
    served = result.model.predict_proba(extra)
    assert np.allclose(served, result.diagnostic_arrays["extra_probe"], atol=1e-4)
    assert np.allclose(result.extra_posteriors.argmax(1), served.argmax(1))
    # the training rows' suggestions are out of fold: a row's own noisy label did not fit its prediction
    assert result.posteriors.shape == (len(texts), len(classes))
    assert np.allclose(result.posteriors.sum(1), 1.0, atol=1e-4)


@pytest.mark.slow  # a whole calibrate run (5-13 s): in `make test`, not `make test-fast`
def test_a_probe_kept_with_trusted_rows_is_fitted_again_with_their_labels(toy, tiny_backbone, monkeypatch):
    texts, noisy, _, classes, trusted = toy
    from sidyp_engine import probe as probe_module
    from sidyp_engine.stages.inputs import validate

    real_fit = probe_module.fit_probe
    fits = []

    def recorded(x, y, *rest, **kw):
        fits.append(y.numpy().copy())
        return real_fit(x, y, *rest, **kw)

    _keeps(monkeypatch, selection.PROBE, selection.PROBE)
    monkeypatch.setattr(probe_module, "fit_probe", recorded)
    extra = ["the pizza recipe with cheese", "the laptop server code"]
    cfg = _config(tiny_backbone)
    result = calibrate(
        texts, noisy, classes, extra_texts=extra, config=cfg, collect_diagnostics=True, trusted_labels=trusted
    )
    refit = result.diagnostics["selection"]["refit"]
    assert refit == {
        "trusted_rows": sum(t is not None for t in trusted), "labels": "probe", "model": "probe",
        "temperature": result.model.temperature,
    }  # fmt: skip
    # of the fits on every training row (the out-of-fold ones fit parts), the first left the trusted rows out
    # (it was scored) and the refit has each at its trusted label
    inputs = validate(cfg, texts, noisy, classes, None, None, None)
    checked = np.array([classes.index(t) if t is not None else -1 for t in trusted])[inputs.fit_rows]
    full = [y for y in fits if len(y) == len(inputs.fit_rows)]
    assert len(full) == 2
    assert (full[0] == np.where(checked >= 0, -1, inputs.train_ids)).all()
    assert (full[1] == np.where(checked >= 0, checked, inputs.train_ids)).all()
    # delivered: the refit probe, at the temperature the trusted rows fitted to the held-out one
    assert not np.allclose(
        result.model.predict_proba(extra), result.diagnostic_arrays["extra_probe"], atol=1e-4
    )


@pytest.mark.slow  # a whole calibrate run (5-13 s): in `make test`, not `make test-fast`
def test_no_candidate_fits_the_trusted_rows_labels(toy, tiny_backbone, monkeypatch, tmp_path):
    texts, noisy, _, classes, trusted = toy
    from sidyp_engine import probe as probe_module
    from sidyp_engine.stages import ensemble as ensemble_stage
    from sidyp_engine.stages.inputs import validate

    fitted: dict[str, list[np.ndarray]] = {"stage1": [], "plain": [], "probe": []}
    real_ensemble, real_probe = ensemble_stage.train_ensemble, probe_module.fit_probe

    def ensemble_spy(cfg, backbone, tokenizer, train_texts, y_train, *rest):
        fitted["stage1" if cfg.branches > 1 else "plain"].append(y_train.numpy().copy())
        return real_ensemble(cfg, backbone, tokenizer, train_texts, y_train, *rest)

    def probe_spy(x, y, *rest, **kw):
        fitted["probe"].append(y.numpy().copy())
        return real_probe(x, y, *rest, **kw)

    monkeypatch.setattr(ensemble_stage, "train_ensemble", ensemble_spy)
    monkeypatch.setattr(probe_module, "fit_probe", probe_spy)
    cfg = _config(tiny_backbone)
    calibrate(texts, noisy, classes, config=cfg, work_dir=tmp_path)
    fitted["probe"].clear()
    result = calibrate(texts, noisy, classes, config=cfg, trusted_labels=trusted, work_dir=tmp_path)
    # the run with trusted rows trains its own stage 1: the first run's checkpoint is not reused
    assert len(fitted["stage1"]) == 2 and result.diagnostics["reused_stage1"] is False
    inputs = validate(cfg, texts, noisy, classes, None, None, None)
    known = np.array([t is not None for t in trusted])[inputs.fit_rows]
    assert known.any() and (inputs.train_ids[known] >= 0).all()
    without, with_trusted = fitted["stage1"]
    assert (without == inputs.train_ids).all()
    # every trusted row unlabelled, every other row's label as before; the probe's full fit alike
    assert (with_trusted == np.where(known, -1, inputs.train_ids)).all()
    assert (fitted["probe"][0] == with_trusted).all()
    # the plain fine-tune, the fallback the select stage may deliver, leaves them out the same way (where it
    # is kept, a third fit with their trusted labels is what is delivered)
    assert len(fitted["plain"]) in (2, 3) and (fitted["plain"][1] == with_trusted).all()
    refit = result.diagnostics["selection"]["refit"]
    # with trusted rows the kept model is always fitted again; a third plain fit exactly where plain is kept
    assert refit is not None
    plain_kept = refit["labels"] == "plain" or refit["model"] == "plain_model"
    assert (len(fitted["plain"]) == 3) == plain_kept


@pytest.mark.slow  # a whole calibrate run: in `make test`, not `make test-fast`
def test_one_branch_stage1_is_the_plain_classifier_and_is_not_trained_twice(toy, tiny_backbone, monkeypatch):
    texts, noisy, _, classes, _ = toy
    from sidyp_engine.stages import ensemble as ensemble_stage

    calls = []
    real_ensemble = ensemble_stage.train_ensemble

    def ensemble_spy(cfg, *rest):
        calls.append(cfg.branches)
        return real_ensemble(cfg, *rest)

    monkeypatch.setattr(ensemble_stage, "train_ensemble", ensemble_spy)
    seen = []
    cfg = _config(tiny_backbone).model_copy(update={"branches": 1})
    extra = ["the pizza recipe with cheese", "the laptop server code"]
    result = calibrate(texts, noisy, classes, extra_texts=extra, config=cfg, progress=seen.append)
    assert calls == [1]
    assert [p.message for p in seen if p.stage == "plain"][-1] == "stage 1 is the plain classifier"
    assert result.extra_noisy_posteriors.shape == (2, len(classes))


class _FixedLogits:
    """A served-model stand-in: fixed logits per text, a temperature the select stage may set."""

    def __init__(self, logits_by_text: dict[str, list[float]], temperature: float = 1.0):
        self.logits_by_text, self.temperature = logits_by_text, temperature

    def logits(self, texts):
        return np.array([self.logits_by_text[t] for t in texts], dtype=np.float32)


def _trusted_rows(logits: np.ndarray, trusted: np.ndarray) -> select_stage.TrustedRows:
    preds = {selection.SERVED: logits.argmax(1)}
    return select_stage.TrustedRows(preds, trusted.copy(), trusted, {selection.SERVED: logits}, 0)


def test_the_kept_model_is_estimated_on_the_evaluation_texts_from_the_trusted_rows():
    # trusted rows: half confident (margin 3), right on 45 of 50; half unsure (margin 0.25), right on 25 of 50
    src = np.array([[3.0, 0.0]] * 50 + [[0.25, 0.0]] * 50)
    trusted = np.array([0] * 45 + [1] * 5 + [0] * 25 + [1] * 25)
    # evaluation texts: 40 confident, 10 unsure; the trusted rows' own 0.70 would miss the easier mix
    texts = [f"text {i}" for i in range(50)]
    model = _FixedLogits({t: [3.0, 0.0] if i < 40 else [0.25, 0.0] for i, t in enumerate(texts)})
    models = {selection.SERVED: model}
    rows = _trusted_rows(src, trusted)
    est = select_stage._evaluation_estimate(models, {}, {}, selection.SERVED, rows, texts, {}, seed=0)
    assert est.method == "transferred" and est.rows == 50
    # ATC: 70 of the 100 trusted rows are right, so the threshold is the unsure rows' confidence and 20 of
    # those 50 tied rows count: the 40 confident evaluation texts and 40 % of the 10 unsure ones
    assert est.accuracy == pytest.approx(0.88)
    assert est.low <= est.accuracy <= est.high
    # no evaluation texts, or too few trusted rows to fit a temperature: nothing to report
    assert select_stage._evaluation_estimate(models, {}, {}, selection.SERVED, rows, [], {}, seed=0) is None
    few = _trusted_rows(src[:10], trusted[:10])
    assert select_stage._evaluation_estimate(models, {}, {}, selection.SERVED, few, texts, {}, seed=0) is None


def test_a_gold_free_estimate_is_not_carried_from_a_handful_of_validation_texts():
    texts = [f"text {i}" for i in range(50)]
    model = _FixedLogits({t: [3.0, 0.0] if i < 40 else [0.25, 0.0] for i, t in enumerate(texts)})
    followed = {selection.SERVED: estimates.Estimate(0.7, 0.6, 0.8, "moments", 100)}
    n = select_stage.MIN_VALIDATION_FOR_CARRYING
    for rows, carried in ((n - 1, False), (n, True)):
        valid = {
            selection.SERVED: np.array([[3.0, 0.0], [0.25, 0.0]] * (rows // 2) + [[1.0, 0.0]] * (rows % 2))
        }
        model.temperature = 1.0
        args = ({selection.SERVED: model}, valid, {}, selection.SERVED, None, texts, followed)
        est = select_stage._evaluation_estimate(*args, seed=0)
        assert (est is not None and est.method == "carried") == carried
        assert (model.temperature != 1.0) == carried  # matched on the evaluation texts only when carried


def test_every_candidate_is_estimated_on_the_evaluation_texts_gold_free():
    # each candidate's validation texts: half confident, half unsure, and an estimate of 0.5 there; the
    # evaluation texts are 80 % confident, so each carried estimate rises to 0.8
    n = select_stage.MIN_VALIDATION_FOR_CARRYING
    source = np.array([0.9, 0.4] * (n // 2))
    target = np.array([0.9] * 40 + [0.4] * 10)
    names = (selection.PLAIN, selection.REFINED, selection.SERVED)
    confidences = {name: (source, target) for name in names}
    chosen = selection.Selection(
        selection.REFINED,
        selection.SERVED,
        "",
        {name: estimates.Estimate(0.5, 0.45, 0.55, "posterior", n) for name in names},
        estimates.Estimate(0.6, 0.5, 0.7, "posterior", n),
        estimates.Estimate(0.4, 0.3, 0.5, "posterior", n),
        {},
    )
    found = select_stage._candidates_on_evaluation(chosen, confidences, None, {}, seed=0)
    assert set(found) == set(names)
    for e in found.values():
        assert e.method == "carried" and e.accuracy == pytest.approx(0.8) and e.low <= 0.8 <= e.high
    # too few validation texts to carry from
    few = {name: (source[: n - 1], target) for name in names}
    assert select_stage._candidates_on_evaluation(chosen, few, None, {}, seed=0) == {}


def test_a_model_that_copies_its_labels_is_not_carried_by_its_confidence():
    """Its moments were held to the wrong share: its confidence is the labeller's certainty, so the evaluation
    texts' figures are its validation estimates, however much surer it is of them."""
    n = select_stage.MIN_VALIDATION_FOR_CARRYING
    source = np.array([0.9, 0.4] * (n // 2))
    target = np.array([0.9] * 50)  # every evaluation text as sure as the surest validation texts
    names = (selection.PLAIN_MODEL, selection.SERVED)
    held = estimates.Estimate(0.68, 0.68, 1.0, estimates.HELD, n)
    chosen = selection.Selection(
        selection.PLAIN,
        selection.PLAIN_MODEL,
        "",
        {name: estimates.Estimate(0.5, 0.45, 1.0, "posterior", n) for name in names},
        estimates.Estimate(0.6, 0.5, 0.7, "posterior", n),
        estimates.Estimate(0.4, 0.3, 0.5, "posterior", n),
        {},
        moment_estimates={
            selection.PLAIN_MODEL: held,
            selection.SERVED: estimates.Estimate(0.5, 0.45, 0.55, "moments", n),
        },
    )
    found = select_stage._candidates_on_evaluation(chosen, {m: (source, target) for m in names}, None, {}, 0)
    assert found[selection.PLAIN_MODEL] == chosen.estimates[selection.PLAIN_MODEL]  # not carried
    assert found[selection.SERVED].method == "carried" and found[selection.SERVED].accuracy == 1.0
    # kept: its figure on the evaluation texts is the held estimate, and its temperature is left as set
    texts = [f"text {i}" for i in range(50)]
    model = _FixedLogits({t: [3.0, 0.0] for t in texts}, temperature=1.3)
    valid = {selection.PLAIN_MODEL: np.array([[3.0, 0.0], [0.25, 0.0]] * (n // 2))}
    args = ({selection.PLAIN_MODEL: model}, valid, {}, selection.PLAIN_MODEL, None, texts)
    assert select_stage._evaluation_estimate(*args, {selection.PLAIN_MODEL: held}, seed=0) == held
    assert model.temperature == 1.3
    moments = estimates.Estimate(0.68, 0.6, 0.75, "moments", n)
    carried = select_stage._evaluation_estimate(*args, {selection.PLAIN_MODEL: moments}, seed=0)
    assert carried.method == "carried" and carried.accuracy == 1.0  # what a copier's confidence would say


def test_with_trusted_rows_the_models_accuracies_are_transferred_to_the_evaluation_texts():
    # the trusted rows as in the kept model's test above: 70 % right, the right ones the confident ones
    src = np.array([[3.0, 0.0]] * 50 + [[0.25, 0.0]] * 50)
    trusted = np.array([0] * 45 + [1] * 5 + [0] * 25 + [1] * 25)
    rows = select_stage.TrustedRows(
        {}, trusted.copy(), trusted, {selection.SERVED: src, selection.PLAIN_MODEL: src}, 0
    )
    models = {name: _FixedLogits({}) for name in (selection.SERVED, selection.PLAIN_MODEL)}
    target = select_stage._top_confidence(np.array([[3.0, 0.0]] * 40 + [[0.25, 0.0]] * 10), 1.0)
    confidences = {
        name: (None, target) for name in (selection.SERVED, selection.PLAIN_MODEL, selection.PLAIN)
    }
    chosen = selection.Selection(selection.REFINED, selection.SERVED, "", {}, None, None, {})
    found = select_stage._candidates_on_evaluation(chosen, confidences, rows, models, seed=0)
    assert set(found) == {selection.SERVED, selection.PLAIN_MODEL, selection.PLAIN}
    assert all(e.method == "transferred" and e.accuracy == pytest.approx(0.88) for e in found.values())
    # the refined posteriors, read without a label on the trusted rows, are transferred the same way where
    # their confidence orders right and wrong there
    conf = select_stage._top_confidence(src, 1.0)
    assert estimates.rank_z(conf, src.argmax(1) == trusted) >= estimates.RANK_Z
    rows.refined_unlabelled = (src.argmax(1), conf)
    confidences[selection.REFINED] = (None, target)
    found = select_stage._candidates_on_evaluation(chosen, confidences, rows, models, seed=0)
    assert found[selection.REFINED].method == "transferred"
    assert found[selection.REFINED].accuracy == pytest.approx(0.88)
    # and keep their trusted-row accuracy where it does not (the same confidence on every row)
    rows.refined_unlabelled = (src.argmax(1), np.full(len(src), 0.8))
    found = select_stage._candidates_on_evaluation(chosen, confidences, rows, models, seed=0)
    assert found[selection.REFINED].method == "trusted"
    assert found[selection.REFINED].accuracy == pytest.approx(0.70)
    # unless the served model reads how much easier the evaluation texts are than the validation texts:
    # that shift is carried onto their trusted-row accuracy (40 % of the validation texts sure, ATC 0.64;
    # 80 % of the evaluation texts, ATC 0.88)
    sure, unsure = select_stage._top_confidence(np.array([[3.0, 0.0], [0.25, 0.0]]), 1.0)
    valid = np.array([sure] * 40 + [unsure] * 60)
    served_shift = estimates.ShiftReader(
        select_stage._top_confidence(src, 1.0), src.argmax(1) == trusted, valid, target
    )
    found = select_stage._candidates_on_evaluation(chosen, confidences, rows, models, 0, served_shift)
    assert found[selection.REFINED].method == "transferred"
    assert found[selection.REFINED].accuracy == pytest.approx(0.70 + 0.88 - 0.64)
    assert found[selection.SERVED].accuracy == pytest.approx(0.88)  # the served model keeps ATC
    # fewer trusted rows than set the temperatures: nothing is transferred
    few = select_stage.TrustedRows({}, trusted[:10], trusted[:10], {selection.SERVED: src[:10]}, 0)
    assert select_stage._candidates_on_evaluation(chosen, confidences, few, models, seed=0) == {}


def test_with_trusted_rows_a_model_fitted_to_the_noisy_labels_carries_only_the_shift():
    """ATC's threshold is a quantile of the trusted rows' confidences; for the plain model and the probe the
    report carries only the shift it reads from the validation texts to the evaluation texts onto the
    trusted-row accuracy; the served model keeps ATC (docs/method.md, "Forty-second round")."""
    src = np.array([[3.0, 0.0]] * 50 + [[0.25, 0.0]] * 50)  # 70 % right, as above
    trusted = np.array([0] * 45 + [1] * 5 + [0] * 25 + [1] * 25)
    names = (selection.SERVED, selection.PLAIN_MODEL, selection.PROBE)
    rows = select_stage.TrustedRows({}, trusted.copy(), trusted, {name: src for name in names}, 0)
    models = {name: _FixedLogits({}) for name in names}
    n = select_stage.MIN_VALIDATION_FOR_CARRYING
    sure, unsure = select_stage._top_confidence(np.array([[3.0, 0.0], [0.25, 0.0]]), 1.0)
    valid = np.array([sure] * (2 * n // 5) + [unsure] * (n - 2 * n // 5))  # 40 % sure: ATC reads 0.64
    target = np.array([sure] * 30 + [unsure] * 20)  # 60 % sure: ATC reads 0.76
    chosen = selection.Selection(selection.REFINED, selection.SERVED, "", {}, None, None, {})
    found = select_stage._candidates_on_evaluation(
        chosen, {name: (valid, target) for name in names}, rows, models, seed=0
    )
    assert found[selection.SERVED].accuracy == pytest.approx(0.76)
    for name in (selection.PLAIN_MODEL, selection.PROBE, selection.PLAIN):
        assert found[name].method == "transferred"
        assert found[name].accuracy == pytest.approx(0.70 + 0.76 - 0.64)
    # the plain model's shift is the one the served model reads, whose confidence ranks its rightness (here
    # all trusted rows sure and right but 30 unsure wrong: the 20 unsure evaluation texts read wrong, none
    # of the validation texts, a shift of -0.4); the probe keeps its own
    served_src = np.array([[3.0, 0.0]] * 70 + [[0.25, 0.0]] * 30)
    served_right = np.array([True] * 70 + [False] * 30)
    served_conf = select_stage._top_confidence(served_src, 1.0)
    served_shift = estimates.ShiftReader(served_conf, served_right, np.full(n, sure), target)
    found = select_stage._candidates_on_evaluation(
        chosen, {name: (valid, target) for name in names}, rows, models, 0, served_shift
    )
    for name in (selection.PLAIN_MODEL, selection.PLAIN):
        assert found[name].method == "transferred"
        assert found[name].accuracy == pytest.approx(0.70 + 0.60 - 1.0)
    assert found[selection.PROBE].accuracy == pytest.approx(0.70 + 0.76 - 0.64)
    # too few validation texts to read the shift from: ATC
    few = {name: (valid[: n - 1], target) for name in names}
    found = select_stage._candidates_on_evaluation(chosen, few, rows, models, seed=0)
    assert found[selection.PLAIN_MODEL].accuracy == pytest.approx(0.76)
    # the kept plain model's own figure is made the same way
    texts = [f"text {i}" for i in range(50)]
    plain = _FixedLogits({t: [3.0, 0.0] if i < 30 else [0.25, 0.0] for i, t in enumerate(texts)})
    valid_logits = {
        selection.PLAIN_MODEL: np.array([[3.0, 0.0]] * (2 * n // 5) + [[0.25, 0.0]] * (n - 2 * n // 5))
    }
    args = ({selection.PLAIN_MODEL: plain}, valid_logits, {}, selection.PLAIN_MODEL, rows, texts, {})
    assert select_stage._evaluation_estimate(*args, seed=0).accuracy == pytest.approx(0.82)


def test_the_plain_model_reads_the_same_on_the_evaluation_texts_in_every_row_of_the_report():
    # a confident plain model: margins of 40, beyond what float32 probabilities and their logs keep
    texts = [f"text {i}" for i in range(50)]
    valid = np.array([[40.0, 0.0]] * 60 + [[0.5, 0.0]] * 40, dtype=np.float32)
    plain = _FixedLogits({t: [40.0, 0.0] if i < 45 else [0.5, 0.0] for i, t in enumerate(texts)})
    served = _FixedLogits({t: [2.0, 0.0] for t in texts})
    models = {selection.SERVED: served, selection.PLAIN_MODEL: plain}
    inputs = SimpleNamespace(extra_texts=texts)
    eval_logits = select_stage._evaluation_logits(models, inputs, None)
    # the model's own logits, as on the validation texts, not the logs of recorded probabilities
    assert np.array_equal(eval_logits[selection.PLAIN_MODEL], plain.logits(texts))
    n = len(valid)
    estimate = estimates.Estimate(0.7, 0.65, 0.75, "posterior", n)
    followed = {selection.PLAIN_MODEL: estimate}
    valid_logits = {selection.SERVED: np.tile([[2.0, 0.0]], (n, 1)), selection.PLAIN_MODEL: valid}
    confidences = {
        name: (
            select_stage._top_confidence(valid_logits[name], 1.0),
            select_stage._top_confidence(eval_logits[name], 1.0),
        )
        for name in models
    }
    confidences[selection.PLAIN] = confidences[selection.PLAIN_MODEL]
    chosen = selection.Selection(
        selection.PLAIN,
        selection.PLAIN_MODEL,
        "",
        {name: estimate for name in (selection.PLAIN, selection.SERVED, selection.PLAIN_MODEL)},
        estimate,
        estimate.complement(),
        {},
    )
    table = select_stage._candidates_on_evaluation(chosen, confidences, None, models, seed=0)
    kept = select_stage._evaluation_estimate(
        models, valid_logits, eval_logits, selection.PLAIN_MODEL, None, texts, followed, seed=0
    )
    # 0.7 on the validation texts: the 60 confident ones and 10 of the 40 unsure ones, tied at the
    # threshold; so the 45 confident evaluation texts and a quarter of the 5 unsure ones
    assert kept.accuracy == pytest.approx((45 + 5 / 4) / 50)
    assert table[selection.PLAIN].accuracy == table[selection.PLAIN_MODEL].accuracy == kept.accuracy


def test_a_kept_plain_model_reads_the_same_in_the_plain_classifier_row_on_the_evaluation_texts():
    # the table carries each reported estimate; the kept model's figure follows the estimate its
    # temperature follows, so the two rows of one plain model differed (0.786 and 0.738 on a trec run)
    table = {
        name: estimates.Estimate(0.786, 0.7, 0.85, "carried", 500)
        for name in (selection.PLAIN, selection.PLAIN_MODEL, selection.SERVED)
    }
    kept = estimates.Estimate(0.738, 0.6, 0.8, "carried", 500)
    rows = select_stage._with_the_kept_row(table, selection.PLAIN_MODEL, kept)
    assert rows[selection.PLAIN] == rows[selection.PLAIN_MODEL] == kept
    assert rows[selection.SERVED] == table[selection.SERVED]
    # a kept served model leaves the plain classifier's row as carried
    rows = select_stage._with_the_kept_row(table, selection.SERVED, kept)
    assert rows[selection.SERVED] == kept and rows[selection.PLAIN] == table[selection.PLAIN]
    assert select_stage._with_the_kept_row(table, selection.SERVED, None) == table


@pytest.mark.slow  # two whole calibrate runs: in `make test`, not `make test-fast`
def test_refined_labels_are_scored_on_trusted_rows_by_refits_that_hid_them(toy, tiny_backbone, monkeypatch):
    from sidyp_engine import pipeline
    from sidyp_engine.stages import trusted as trusted_stage
    from sidyp_engine.stages.inputs import validate

    texts, noisy, _, classes, trusted = toy
    cfg = _config(tiny_backbone)
    hidden_per_refit, found = [], {}
    real_prior, real_unchecked, real_rows = (
        trusted_stage.dynamic_prior,
        pipeline.refined_labels_unchecked,
        select_stage._trusted_rows,
    )

    def prior_spy(cfg, inputs, ens, flags, frozen, report, ids):
        hidden_per_refit.append(np.flatnonzero((full >= 0) & (ids < 0)))
        return real_prior(cfg, inputs, ens, flags, frozen, report, ids)

    def unchecked_spy(*args):
        found["unchecked"] = real_unchecked(*args)
        return found["unchecked"]

    def rows_spy(*args):
        found["rows"] = real_rows(*args)
        return found["rows"]

    full = np.array([classes.index(t) if t is not None else -1 for t in trusted])
    monkeypatch.setattr(trusted_stage, "dynamic_prior", prior_spy)
    monkeypatch.setattr(pipeline, "refined_labels_unchecked", unchecked_spy)
    monkeypatch.setattr(select_stage, "_trusted_rows", rows_spy)
    run = {"config": cfg, "trusted_labels": trusted, "collect_diagnostics": True}
    result = calibrate(texts, noisy, classes, **run)
    inputs = validate(cfg, texts, noisy, classes, None, None, None)
    on_train = np.flatnonzero(full[inputs.fit_rows] >= 0)
    # two re-fits, each hiding its own part of the trusted training rows, together all of them
    assert len(hidden_per_refit) == trusted_stage.TRUSTED_FOLDS
    assert all(len(h) for h in hidden_per_refit)
    assert sorted(np.concatenate(hidden_per_refit).tolist()) == inputs.fit_rows[on_train].tolist()
    # the refined labels of those rows are the re-fits' (the validation rows come first)
    rows = found["rows"]
    assert (rows.predictions[selection.REFINED][rows.n_valid :] == found["unchecked"].labels).all()
    # and read without their label, as an evaluation text is, by the same re-fits
    labels, confidence = rows.refined_unlabelled
    assert (labels[rows.n_valid :] == found["unchecked"].unlabelled_labels).all()
    assert len(confidence) == len(rows.trusted) and ((confidence > 0) & (confidence <= 1)).all()
    # nothing before the choice moved: without the re-fits the run trains the same served and plain models
    monkeypatch.setattr(pipeline, "refined_labels_unchecked", lambda *args: None)
    again = calibrate(texts, noisy, classes, **run)
    for name in ("valid_posteriors", "valid_logits_served", "valid_logits_plain_model", "noise_scores"):
        assert np.array_equal(result.diagnostic_arrays[name], again.diagnostic_arrays[name]), name


def test_the_refit_labels_put_each_trusted_label_in_place_on_both_sides_of_the_holdout():
    from sidyp_engine.stages.ensemble import corrected_labels
    from sidyp_engine.stages.inputs import validate

    texts, noisy, gold, classes = toy_dataset(n_per_class=20, noise=0.4, seed=5)
    cfg = CalibrationConfig(seed=0)
    trusted = np.array([classes.index(g) if i % 3 == 0 else -1 for i, g in enumerate(gold)])
    held = validate(cfg, texts, noisy, classes, None, None, None)
    train, valid = corrected_labels(held, trusted)
    want = np.where(trusted >= 0, trusted, held.ids)
    assert (train == want[held.fit_rows]).all() and (valid == want[held.is_validation]).all()
    assert (train != held.train_ids).any() and (valid != held.valid_ids).any()
    # a validation set the caller gave has no trusted labels: it stays as given
    given = validate(cfg, texts, noisy, classes, texts[:6], noisy[:6], None)
    train, valid = corrected_labels(given, trusted)
    assert (train == want).all() and (valid == given.valid_ids).all()
