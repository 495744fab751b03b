"""select_outputs with trusted rows: temperatures fitted to their labels, every estimate from them.

No model is trained: the two models are lookup tables of planted logits per text.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sidyp_engine import estimates, selection
from sidyp_engine.stages import select as select_stage
from sidyp_engine.stages.inputs import Inputs
from sidyp_engine.stages.posterior import Posteriors
from sidyp_engine.temperature import fit_temperature_nll

N_ROWS, N_VALID, C = 2400, 1200, 3
SERVED_T, PLAIN_T = 2.0, 3.0  # how over-confident the planted models are


class _LookupModel:
    """Stands in for a ServedClassifier: fixed logits per text."""

    def __init__(self, texts: list[str], logits: np.ndarray):
        self.table = dict(zip(texts, logits.astype(np.float32), strict=True))
        self.temperature = 1.0

    def logits(self, texts):
        return np.stack([self.table[t] for t in texts])


@pytest.fixture
def planted():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(size=(N_ROWS, C)) * 2
    probs = np.exp(true_logits) / np.exp(true_logits).sum(1, keepdims=True)
    gold = np.array([rng.choice(C, p=p) for p in probs])
    flip = rng.random(N_ROWS) < 0.3
    noisy = np.where(flip, (gold + rng.integers(1, C, N_ROWS)) % C, gold)
    texts = [f"text {i}" for i in range(N_ROWS)]
    is_validation = np.arange(N_ROWS) < N_VALID
    fit_rows, held = np.flatnonzero(~is_validation), np.flatnonzero(is_validation)
    inputs = Inputs(
        texts, noisy, ["a", "b", "c"], [texts[i] for i in fit_rows], noisy[fit_rows],
        [texts[i] for i in held], noisy[held], [], is_validation, fit_rows,
    )  # fmt: skip
    noisy_probs = torch.from_numpy(np.eye(C)[noisy] * 0.7 + 0.1).float()
    ens = SimpleNamespace(noisy_posteriors={"train": noisy_probs[fit_rows], "valid": noisy_probs[held]})
    refined = torch.from_numpy(probs).float()
    post = Posteriors(
        refined[fit_rows],
        refined[held],
        None,
        temperature=1.0,
        vote_smoothing=0.0,
        valid_unlabelled=refined[held],
    )
    served = _LookupModel(texts, true_logits * SERVED_T)
    plain = _LookupModel(texts, true_logits * PLAIN_T)
    return SimpleNamespace(inputs=inputs, ens=ens, post=post, refined_valid=refined[held], served=served,
                           plain=plain, gold=gold, true_logits=true_logits)  # fmt: skip


def _select(p, trusted_ids):
    t_matrix = np.full((C, C), 0.15) + np.eye(C) * 0.55
    return select_stage.select_outputs(
        p.inputs, p.ens, p.ens, p.post, p.served, p.plain, t_matrix, trusted_ids, seed=0
    )


def _trusted(p, n_valid: int, n_train: int) -> np.ndarray:
    """Trusted ids (the gold label) on the first n_valid validation and the first n_train training rows."""
    ids = np.full(N_ROWS, -1)
    rows = np.r_[np.arange(n_valid), N_VALID + np.arange(n_train)]
    ids[rows] = p.gold[rows]
    return ids


def test_trusted_rows_set_both_temperatures(planted):
    kept = _select(planted, _trusted(planted, N_VALID, 100))
    # fitted on every trusted row (none was trained on), which recovers the planted temperatures
    rows = np.r_[np.arange(N_VALID), N_VALID + np.arange(100)]
    gold = torch.from_numpy(planted.gold[rows])
    logits = torch.from_numpy(planted.true_logits[rows])
    assert planted.served.temperature == pytest.approx(fit_temperature_nll(logits * SERVED_T, gold), rel=1e-4)
    assert planted.served.temperature == pytest.approx(SERVED_T, rel=0.10)
    assert planted.plain.temperature == pytest.approx(PLAIN_T, rel=0.10)
    chosen = kept.selection.as_dict()
    assert (
        chosen["temperature_source"]
        == f"trusted rows (n={N_VALID + 100}: {N_VALID} validation, 100 training)"
    )
    # every estimate the report shows comes from the trusted rows, with an interval around it
    found = [*chosen["estimates"].values(), chosen["llm_label_accuracy"], chosen["noise_share"]]
    assert all(e["method"] == "trusted" and e["low"] <= e["accuracy"] <= e["high"] for e in found)
    assert chosen["estimates"]["served"]["rows"] == N_VALID + 100
    assert chosen["llm_label_accuracy"]["accuracy"] == pytest.approx(
        float((planted.inputs.ids == planted.gold)[_trusted(planted, N_VALID, 100) >= 0].mean()), abs=1e-4
    )


def test_few_trusted_validation_rows_fit_with_the_training_ones(planted):
    kept = _select(planted, _trusted(planted, 10, 40))
    assert kept.selection.temperature_source == "trusted rows (n=50: 10 validation, 40 training)"
    rows = np.r_[np.arange(10), N_VALID + np.arange(40)]
    expected = fit_temperature_nll(torch.from_numpy(planted.true_logits[rows] * SERVED_T), planted.gold[rows])
    assert planted.served.temperature == pytest.approx(expected, rel=1e-4)


def test_too_few_trusted_rows_keep_the_gold_free_temperatures(planted):
    planted.served.temperature = 1.7  # as distillation left it
    kept = _select(planted, _trusted(planted, 10, 19))
    assert kept.selection.temperature_source == "gold-free reference"
    assert planted.served.temperature == 1.7
    plain_accuracy = kept.selection.estimates[selection.PLAIN_MODEL]
    assert plain_accuracy.method == "trusted"  # the estimates still come from the trusted rows
    _assert_moved_into(
        planted.plain.logits(planted.inputs.valid_texts), planted.plain.temperature, plain_accuracy
    )


def _mean_confidence(logits, temperature: float = 1.0) -> float:
    return torch.softmax(torch.as_tensor(logits).double() / temperature, -1).max(1).values.mean().item()


def _assert_moved_into(logits, temperature: float, estimate) -> None:
    """The model's mean confidence was lowered to the top of the estimate's interval, not to its point (the
    planted plain model is over-confident: untempered, it lies above every interval here)."""
    own = _mean_confidence(logits)
    assert own > estimate.high
    assert _mean_confidence(logits, temperature) == pytest.approx(estimate.high, abs=1e-3)


def test_confidence_target_flattens_only_to_the_interval_and_sharpens_to_the_estimate():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(400, 3)) * 2
    own = _mean_confidence(logits)
    inside = estimates.Estimate(own - 0.1, own - 0.15, own + 0.05, "moments", 400)
    followed = select_stage._confidence_target(logits, inside)
    assert followed.accuracy == own and (followed.low, followed.high) == (inside.low, inside.high)
    assert select_stage._temperature_for(logits, followed.accuracy) == 1.0  # the model as trained
    below = estimates.Estimate(own - 0.2, own - 0.3, own - 0.1, "moments", 400)
    followed = select_stage._confidence_target(logits, below)
    assert followed.accuracy == pytest.approx(own - 0.1)
    assert _mean_confidence(
        logits, select_stage._temperature_for(logits, followed.accuracy)
    ) == pytest.approx(own - 0.1, abs=1e-3)
    # an under-confident model is raised to the estimate itself, even with its confidence in the interval
    above = estimates.Estimate(own + 0.1, own - 0.05, own + 0.2, "moments", 400)
    assert select_stage._confidence_target(logits, above).accuracy == pytest.approx(own + 0.1)
    # a bound (near-singular T) says only where the accuracy can lie: the confidence follows the model's
    # agreement with its noisy labels (the bound's centre), the point only where no agreement is given
    bound = estimates.Estimate(own - 0.2, 0.0, 1.0, "bound", 400)
    assert select_stage._confidence_target(logits, bound) == bound
    followed = select_stage._confidence_target(logits, bound, agreement=own - 0.05)
    assert followed.accuracy == pytest.approx(own - 0.05) and (followed.low, followed.high) == (0.0, 1.0)
    # a bound held to the run's wrong-label share keeps [0, 1]; its point is an upper bound on the accuracy
    held = estimates.Estimate(own - 0.1, 0.0, 1.0, estimates.HELD, 400)
    assert select_stage._confidence_target(logits, held, agreement=own - 0.05).accuracy == own - 0.1
    assert select_stage._confidence_target(logits, held, agreement=own - 0.15).accuracy == own - 0.15
    # a held estimate with an informative interval: its point is the top the wrong-label share allows, so a
    # confidence above it is lowered to it, not to the interval's top (the moments'); the agreement plays no part
    narrow = estimates.Estimate(own - 0.1, own - 0.15, own + 0.05, estimates.HELD, 400)
    assert select_stage._confidence_target(logits, narrow, agreement=0.2).accuracy == own - 0.1
    raised = estimates.Estimate(own + 0.1, own - 0.15, own + 0.15, estimates.HELD, 400)
    assert select_stage._confidence_target(logits, raised, agreement=0.2).accuracy == own + 0.1


def test_label_agreement_reads_the_rows_with_a_given_label():
    logits = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 2.0]])
    assert select_stage._label_agreement(logits, np.array([0, 0, -1, 1])) == pytest.approx(2 / 3)
    assert select_stage._label_agreement(logits, np.array([-1, -1, -1, -1])) is None
    assert select_stage._label_agreement(logits[:0], np.array([], dtype=np.int64)) is None


def test_without_trusted_rows_the_gold_free_rule_is_unchanged(planted):
    planted.served.temperature = 1.7
    kept = _select(planted, None)
    assert planted.served.temperature == 1.7
    valid_preds = kept.valid_predictions
    t_matrix = kept.noise_matrix
    wrong = select_stage.method_wrong_share(planted.post, planted.inputs, 0)
    # the gold-free estimates read the refined posteriors (without the class floor's weights)
    reference = select_stage.calibrated(planted.post.valid, planted.post).numpy()
    rows_per_class = float((planted.inputs.train_ids >= 0).sum()) / planted.inputs.n_classes
    expected = selection.select(
        valid_preds,
        planted.inputs.valid_ids,
        t_matrix,
        None,
        0,
        False,
        wrong,
        reference=reference,
        rows_per_class=rows_per_class,
    )
    assert kept.selection.as_dict() == expected.as_dict()
    assert expected.temperature_source == "gold-free reference"
    assert all(e.method == "posterior" for e in expected.estimates.values())
    # the plain labels here are the noisy labels themselves: their moments are held to the wrong share
    held = expected.moment_estimates[selection.PLAIN]
    assert held.method == estimates.HELD and held.accuracy == pytest.approx(1 - wrong.accuracy)
    others = [e for name, e in expected.moment_estimates.items() if name != selection.PLAIN]
    assert all(e.method in ("moments", "bound") for e in others)
    # the plain model's confidence is lowered to the top of its moment estimate's interval (the gate may have
    # just set the refined posteriors aside)
    valid_logits = planted.plain.logits(planted.inputs.valid_texts)
    moments = expected.moment_estimates[selection.PLAIN_MODEL]
    _assert_moved_into(valid_logits, planted.plain.temperature, moments)


def test_a_near_singular_noise_matrix_sets_the_plain_confidence_at_its_label_agreement(planted):
    # two classes the labeller cannot tell apart: the moments only bound the plain model's accuracy
    t_matrix = np.array([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    p = planted
    kept = select_stage.select_outputs(
        p.inputs, p.ens, p.ens, p.post, p.served, p.plain, t_matrix, None, seed=0
    )
    moments = kept.selection.moment_estimates[selection.PLAIN_MODEL]
    assert moments.method == "bound"
    valid_logits = p.plain.logits(p.inputs.valid_texts)
    agreement = float((valid_logits.argmax(1) == p.inputs.valid_ids).mean())
    assert abs(agreement - moments.accuracy) > 0.05  # the bound's point is elsewhere
    assert _mean_confidence(valid_logits, p.plain.temperature) == pytest.approx(agreement, abs=1e-3)


def test_a_plain_model_that_copies_its_labels_is_flattened_to_its_held_estimate(planted):
    # the plain model reproduces every noisy label, surely: the moments read it as near perfect, and the run's
    # wrong-label share holds that to at most the labels' own accuracy, with an interval above it
    p = planted
    p.plain = _LookupModel(p.inputs.texts, np.eye(C)[p.inputs.ids] * 6.0)
    kept = _select(p, None)
    held = kept.selection.moment_estimates[selection.PLAIN_MODEL]
    assert held.method == estimates.HELD and 0.0 < held.low and held.high > held.accuracy + 0.05
    valid_logits = p.plain.logits(p.inputs.valid_texts)
    # as trained it is inside the interval, far above the point
    assert held.accuracy + 0.3 < _mean_confidence(valid_logits) <= held.high
    assert _mean_confidence(valid_logits, p.plain.temperature) == pytest.approx(held.accuracy, abs=1e-3)


def _diffuse_posteriors(p, vote_shares: bool, keep: float = 0.4) -> None:
    """Refined posteriors that hold the label noise in their spread (as a k-NN vote of noisy labels without
    the noise model gives): the true P(y | x) shrunk towards uniform, argmax unchanged. `vote_shares`: what
    the posterior stage records (the prior had no noise model)."""
    refined = keep * p.refined_valid + (1 - keep) / C
    train = keep * p.post.train + (1 - keep) / C
    p.post = Posteriors(
        train,
        refined,
        None,
        temperature=1.0,
        vote_smoothing=0.0,
        vote_shares=vote_shares,
        valid_unlabelled=refined,
    )
    p.refined_valid = refined


def test_vote_share_posteriors_do_not_set_the_served_confidence_below_the_moment_estimate(planted):
    _diffuse_posteriors(planted, vote_shares=True)
    planted.served.temperature = 1.7
    kept = _select(planted, None)
    posterior = kept.selection.estimates[selection.SERVED].accuracy
    moments = kept.selection.moment_estimates[selection.SERVED].accuracy
    valid_logits = planted.served.logits(planted.inputs.valid_texts)
    truth = float((valid_logits.argmax(1) == planted.gold[:N_VALID]).mean())
    # the diffuse posteriors under-state the served model's accuracy; the planted T makes the moments right
    assert posterior < truth - 0.1
    assert moments == pytest.approx(truth, abs=0.04)
    assert planted.served.temperature == select_stage._temperature_for(valid_logits, moments)
    assert kept.selection.temperature_source == select_stage.SERVED_MOMENTS_TEMPERATURE
    confidence = torch.softmax(torch.from_numpy(valid_logits) / planted.served.temperature, -1).max(-1).values
    assert float(confidence.mean()) == pytest.approx(truth, abs=0.04)


def test_with_the_noise_model_the_served_model_keeps_its_distilled_temperature(planted):
    _diffuse_posteriors(planted, vote_shares=False)
    planted.served.temperature = 1.7
    kept = _select(planted, None)
    assert planted.served.temperature == 1.7
    assert kept.selection.temperature_source == select_stage.GOLD_FREE_TEMPERATURE


def _with_easier_evaluation_texts(p, n: int = 3000, sharpness: float = 2.5):
    """Extra (evaluation) texts whose true P(y | x) is sharper than the validation texts': the models are
    right on more of them. Returns their gold."""
    rng = np.random.default_rng(1)
    true_logits = rng.normal(size=(n, C)) * 2 * sharpness
    probs = np.exp(true_logits - true_logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    gold = np.array([rng.choice(C, p=q) for q in probs])
    texts = [f"extra {i}" for i in range(n)]
    p.inputs.extra_texts = texts
    for model, scale in ((p.served, SERVED_T), (p.plain, PLAIN_T)):
        model.table |= dict(zip(texts, (true_logits * scale).astype(np.float32), strict=True))
    return texts, gold, true_logits


def test_gold_free_the_kept_model_confidence_follows_its_estimate_carried_to_the_evaluation_texts(planted):
    texts, gold, _ = _with_easier_evaluation_texts(planted)
    planted.served.temperature = 1.7
    kept = _select(planted, None)
    logits = planted.served.logits(texts)
    measured = float((logits.argmax(1) == gold).mean())
    valid_estimate = kept.selection.estimates[selection.SERVED].accuracy
    carried = kept.selection.evaluation_estimate
    # the evaluation texts are easier: the validation estimate misses their accuracy, the carried one not
    assert carried.method == "carried" and carried.rows == len(texts)
    assert measured - valid_estimate > 0.1
    assert carried.accuracy == pytest.approx(measured, abs=0.04)
    assert carried.low <= carried.accuracy <= carried.high
    assert planted.served.temperature == select_stage._temperature_for(logits, carried.accuracy)
    confidence = torch.softmax(torch.from_numpy(logits) / planted.served.temperature, -1).max(-1).values
    assert float(confidence.mean()) == pytest.approx(measured, abs=0.04)
    assert kept.selection.temperature_source == (
        select_stage.GOLD_FREE_TEMPERATURE + selection.CARRIED_TEMPERATURE
    )
    # only the delivered model is matched there; the plain one keeps its validation temperature
    valid_logits = planted.plain.logits(planted.inputs.valid_texts)
    moments = kept.selection.moment_estimates[selection.PLAIN_MODEL]
    _assert_moved_into(valid_logits, planted.plain.temperature, moments)


def test_with_trusted_rows_the_evaluation_texts_do_not_move_the_fitted_temperature(planted):
    texts, gold, _ = _with_easier_evaluation_texts(planted)
    kept = _select(planted, _trusted(planted, N_VALID, 100))
    rows = np.r_[np.arange(N_VALID), N_VALID + np.arange(100)]
    expected = fit_temperature_nll(
        torch.from_numpy(planted.true_logits[rows] * SERVED_T), torch.from_numpy(planted.gold[rows])
    )
    assert planted.served.temperature == pytest.approx(expected, rel=1e-4)
    assert kept.selection.evaluation_estimate.method == "transferred"
    measured = float((planted.served.logits(texts).argmax(1) == gold).mean())
    assert kept.selection.evaluation_estimate.accuracy == pytest.approx(measured, abs=0.04)


def test_trusted_rows_picked_among_wrong_labels_do_not_look_random(planted):
    # a stage 1 that sees through the noise: P(ỹ = given | x) is 0.2 where the label is wrong, 0.8 where right
    p = planted
    noisy, gold = p.inputs.ids, p.gold
    probs = np.full((N_ROWS, C), 0.1)
    probs[np.arange(N_ROWS), noisy] = np.where(noisy == gold, 0.8, 0.2)
    probs /= probs.sum(1, keepdims=True)
    held, fit = np.flatnonzero(p.inputs.is_validation), p.inputs.fit_rows
    p.ens.noisy_posteriors = {"train": torch.from_numpy(probs[fit]), "valid": torch.from_numpy(probs[held])}
    at_random = _select(p, _trusted(p, 0, 100)).selection.trusted_sample
    assert (
        at_random["looks_random"] and at_random["trusted_rows"] == 100 and at_random["other_rows"] == N_VALID
    )
    wrong_first = np.full(N_ROWS, -1)
    picked = fit[noisy[fit] != gold[fit]][:100]  # reviewed because their label looked wrong
    wrong_first[picked] = gold[picked]
    chosen = _select(p, wrong_first).selection
    assert not chosen.trusted_sample["looks_random"] and chosen.trusted_sample["z"] < -3
    assert chosen.as_dict()["trusted_sample"] == chosen.trusted_sample
    assert _select(p, None).selection.trusted_sample is None


class _StubNetwork:
    """Stands in for the refit's TextClassifier: what ServedClassifier's constructor touches."""

    n_classes = C

    def to(self, device):
        return self

    def eval(self):
        return self


@pytest.mark.parametrize(
    ("labels", "model", "words"),
    [
        (selection.PLAIN, selection.PLAIN_MODEL, "the plain classifier's labels and model"),
        (selection.REFINED, selection.PLAIN_MODEL, "the plain classifier's model"),
        (selection.PLAIN, selection.SERVED, "the plain classifier's labels and the distilled served model"),
        (selection.REFINED, selection.SERVED, "the distilled served model"),
        (selection.PROBE, selection.PROBE, "the linear probe's labels and model"),
        (selection.REFINED, selection.PROBE, "the linear probe's model"),
        (selection.PROBE, selection.SERVED, "the linear probe's labels and the distilled served model"),
    ],
)
def test_what_is_kept_is_replaced_by_its_refit(planted, labels, model, words):
    kept = _select(planted, _trusted(planted, N_VALID, 100))
    kept.selection.kept_labels, kept.selection.kept_model = labels, model
    kept.model = {
        selection.PLAIN_MODEL: planted.plain,
        selection.SERVED: planted.served,
        selection.PROBE: planted.plain,
    }[model]
    kept.model.temperature = 1.7
    refitted_labels = (
        None if labels == selection.REFINED else labels
    )  # the refined labels carry the trusted ones
    assert select_stage.to_refit(kept.selection) == (refitted_labels, model)
    before = kept.train_posteriors
    n_train, n_valid = len(planted.inputs.train_texts), len(planted.inputs.valid_texts)

    def flat(n):
        return torch.full((n, C), 1 / C)

    refits = select_stage.Refits(
        plain=SimpleNamespace(
            models=[_StubNetwork()], noisy_posteriors={"train": flat(n_train), "valid": flat(n_valid)}
        ),
        served=SimpleNamespace(temperature=1.0),  # a distillation's own validation fit, replaced
        probe=SimpleNamespace(
            model=SimpleNamespace(temperature=1.0), train=flat(n_train), valid=flat(n_valid), extra=None
        ),
    )
    out = select_stage.with_refits(kept, refits, None, planted.inputs, 32, "cpu", 100)
    assert out.selection.refit == {
        "trusted_rows": 100,
        "labels": refitted_labels,
        "model": model,
        "temperature": 1.7,
    }
    delivered = {
        selection.PLAIN_MODEL: getattr(out.model, "model", None) is refits.plain.models[0],
        selection.SERVED: out.model is refits.served,
        selection.PROBE: out.model is refits.probe.model,
    }
    assert delivered == {name: name == model for name in delivered}
    assert out.model.temperature == 1.7  # the held-out fit's, carried
    train_rows = {
        selection.PLAIN: refits.plain.noisy_posteriors["train"],
        selection.PROBE: refits.probe.train,
    }
    assert out.train_posteriors is train_rows.get(labels, before)
    assert f"delivered: {words}, fitted again on every row" in out.selection.reason
    assert selection.refit_summary(refitted_labels, model) == words
