"""Stage 3/4: simplex noise scheduler, label denoiser, diffusion refiner with dynamic prior, posterior."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from sidyp_engine.denoiser import LabelDenoiser, SimplexNoiseScheduler
from sidyp_engine.diffusion import (
    DiffusionRefiner,
    RefinerConfig,
    compose_posterior,
    dynamics_features,
    refiner_conditioning,
)
from sidyp_engine.types import CalibrationStopped


@pytest.fixture(autouse=True)
def _few_threads():
    # Other processes share this machine's cores; tiny MLPs gain nothing from more threads.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def make_problem(n: int, c: int = 4, dc: int = 16, flip: float = 0.4, prior_acc: float = 0.75, seed: int = 0):
    """True label = nearest class centre of the conditioning vector; noisy labels flip `flip` of the rows;
    the prior is right on `prior_acc` of rows (soft), with the k-NN rules for candidates and certainty."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(c, dc, generator=g)
    gold = torch.randint(0, c, (n,), generator=g)
    x = centres[gold] + 0.6 * torch.randn(n, dc, generator=g)
    cond = torch.stack([x + 0.2 * torch.randn(n, dc, generator=g) for _ in range(2)])  # [M=2, N, Dc]
    flipped = torch.rand(n, generator=g) < flip
    noisy = torch.where(flipped, (gold + torch.randint(1, c, (n,), generator=g)) % c, gold)
    right = torch.rand(n, generator=g) < prior_acc
    prior_label = torch.where(right, gold, torch.randint(0, c, (n,), generator=g))
    sharp = torch.rand(n, generator=g) < 0.2  # some rows are "certain"
    mix = torch.where(sharp, torch.tensor(0.95), torch.tensor(0.55))[:, None]
    prior = mix * F.one_hot(prior_label, c) + (1 - mix) * torch.softmax(torch.randn(n, c, generator=g), 1)
    prior = prior / prior.sum(1, keepdim=True)
    top2 = prior.topk(2, dim=1)
    certain = top2.values[:, 0] >= 0.9
    two = ~certain & (top2.values.sum(1) >= 0.8)
    candidates = torch.ones(n, c, dtype=torch.bool)
    candidates[certain] = F.one_hot(top2.indices[certain, 0], c).bool()
    candidates[two] = torch.zeros(int(two.sum()), c, dtype=torch.bool).scatter_(1, top2.indices[two], True)
    # A noisy-label classifier's P(ỹ | x): mostly the given noisy label.
    noisy_posterior = 0.7 * F.one_hot(noisy, c).float() + 0.3 / c
    return {
        "cond": cond,
        "noisy": noisy,
        "gold": gold,
        "prior": prior,
        "candidates": candidates,
        "certain": certain,
        "noisy_posterior": noisy_posterior,
    }


def split(problem: dict, k: int) -> tuple[dict, dict]:
    head = {key: v[:, :k] if key == "cond" else v[:k] for key, v in problem.items()}
    tail = {key: v[:, k:] if key == "cond" else v[k:] for key, v in problem.items()}
    return head, tail


def fit(train: dict, valid: dict | None = None, **overrides) -> tuple[DiffusionRefiner, dict]:
    cfg = RefinerConfig(**{"epochs": 3, "branches": 2, "batch_size": 64, **overrides})
    refiner = DiffusionRefiner(cfg, device="cpu")
    history = refiner.fit(
        train["cond"],
        train["noisy"],
        train["prior"],
        train["candidates"],
        train["certain"],
        valid=None if valid is None else (valid["cond"], valid["noisy"], valid["prior"]),
    )
    return refiner, history


@pytest.fixture(scope="module")
def trained():
    torch.set_num_threads(1)
    train, valid = split(make_problem(1400), 1200)
    refiner, history = fit(train, valid)
    return train, valid, refiner, history


# -- scheduler ---------------------------------------------------------------------------------------------


def test_cosine_schedule_runs_from_clean_to_pure_noise():
    sched = SimplexNoiseScheduler(num_train_timesteps=800)
    acp = sched.alphas_cumprod
    assert acp.shape == (800,)
    assert torch.all(acp[1:] < acp[:-1])
    assert acp[0] > 0.999
    assert acp[-1] < 1e-3


def test_add_noise_interpolates_between_label_and_noise():
    sched = SimplexNoiseScheduler()
    g = torch.Generator().manual_seed(0)
    x0 = sched.labels_to_simplex(F.one_hot(torch.randint(0, 5, (64,), generator=g), 5))
    assert set(x0.unique().tolist()) == {-5.0, 5.0}
    noise = sched.sample_noise((64, 5), g)
    at_start = sched.add_noise(x0, noise, torch.zeros(64, dtype=torch.long))
    at_end = sched.add_noise(x0, noise, torch.full((64,), 799))
    assert torch.allclose(at_start, x0, atol=0.25)  # noise std there: 5 * sqrt(1e-4)
    assert torch.allclose(at_end, noise, atol=0.01)
    mid = sched.add_noise(x0, noise, torch.full((64,), 400))
    assert (mid - x0).abs().mean() > 0.5 and (mid - noise).abs().mean() > 0.5


def test_inference_timesteps_span_the_training_range():
    sched = SimplexNoiseScheduler(num_train_timesteps=800)
    ts = sched.set_timesteps(10)
    assert len(ts) == 10
    assert ts[0] == 799 and ts[-1] == 0
    assert ts[1] == 710
    assert torch.all(ts[1:] < ts[:-1])
    assert sched.previous_timestep(799) == 710 and sched.previous_timestep(0) == -1


def test_step_with_the_true_label_lands_on_the_marginal_of_the_previous_timestep():
    """With a perfect x0 prediction, one reverse step from x_t ~ q(x_t | x0) must give x_prev distributed as
    q(x_prev | x0): this holds only if the step uses the cumulative alphas of the mapped timesteps."""
    sched = SimplexNoiseScheduler()
    sched.set_timesteps(10)
    g = torch.Generator().manual_seed(1)
    n, c = 20_000, 3
    x0 = sched.labels_to_simplex(F.one_hot(torch.zeros(n, dtype=torch.long), c))
    oracle_logits = 50.0 * F.one_hot(torch.zeros(n, dtype=torch.long), c).float()
    for t in (799, 444, 89):
        prev = sched.previous_timestep(t)
        xt = sched.add_noise(x0, sched.sample_noise((n, c), g), torch.full((n,), t))
        x_prev = sched.step(oracle_logits, t, xt, generator=g)
        ab_prev = sched.alphas_cumprod[prev]
        assert torch.allclose(x_prev.mean(0), ab_prev.sqrt() * x0[0], atol=0.1)
        assert torch.allclose(x_prev.std(0), (1 - ab_prev).sqrt() * 5.0 * torch.ones(c), rtol=0.05)
    # The last step returns the clean label estimate itself.
    last = sched.step(oracle_logits[:4], 0, torch.zeros(4, c))
    assert torch.allclose(last, x0[:4], atol=1e-4)


# -- denoiser ----------------------------------------------------------------------------------------------


def test_denoiser_uses_its_conditions_and_treats_missing_labels_apart():
    torch.manual_seed(0)
    model = LabelDenoiser(n_classes=4, cond_dim=8, hidden=32).eval()
    x = torch.randn(6, 4)
    t = torch.full((6,), 300)
    cond = torch.randn(6, 8)
    base = model(x, t, cond, torch.zeros(6, dtype=torch.long))
    assert base.shape == (6, 4)
    missing = model(x, t, cond, torch.full((6,), -1))
    assert not torch.allclose(base, missing)  # -1 has its own embedding, not class 0's
    assert not torch.allclose(base, model(x, t, -cond, torch.zeros(6, dtype=torch.long)))
    assert not torch.allclose(base, model(x, torch.full((6,), 10), cond, torch.zeros(6, dtype=torch.long)))


def test_dynamics_features_concatenate_normalised_epochs():
    dyn = torch.randn(3, 5, 4, 7) * 10
    feats = dynamics_features(dyn)
    assert feats.shape == (3, 5, 28)
    assert torch.allclose(feats.reshape(3, 5, 4, 7).norm(dim=-1), torch.ones(3, 5, 4), atol=1e-5)


def test_refiner_conditioning_starts_with_the_normalised_sentence_embedding():
    dyn = torch.randn(3, 5, 4, 7)
    sentence = torch.randn(5, 6) * 3
    cond = refiner_conditioning(dyn, sentence)
    assert cond.shape == (3, 5, 6 + 28)
    for branch in range(3):  # every branch sees the same starting point, then its own trajectory
        assert torch.allclose(cond[branch, :, :6], F.normalize(sentence, dim=-1))
        assert torch.allclose(cond[branch, :, 6:], dynamics_features(dyn)[branch])
    assert torch.equal(refiner_conditioning(dyn, None), dynamics_features(dyn))
    with pytest.raises(ValueError, match="4 sentence embeddings for 5 rows"):
        refiner_conditioning(dyn, sentence[:4])


# -- refiner -----------------------------------------------------------------------------------------------


def test_refined_posterior_beats_the_noisy_labels(trained):
    train, _, refiner, _ = trained
    noisy_acc = (train["noisy"] == train["gold"]).float().mean().item()
    prior_acc = (train["prior"].argmax(1) == train["gold"]).float().mean().item()
    posterior = compose_posterior(train["noisy_posterior"], refiner.transition(train["cond"]))
    acc = (posterior.argmax(1) == train["gold"]).float().mean().item()
    assert 0.55 < noisy_acc < 0.65
    assert acc > noisy_acc + 0.2, (acc, noisy_acc, prior_acc)
    assert acc > prior_acc  # the denoiser generalises over the conditioning, not a copy of the prior


def test_transition_is_a_stochastic_matrix_per_example(trained):
    train, _, refiner, _ = trained
    trans = refiner.transition(train["cond"][:, :50])
    assert trans.shape == (50, 4, 4)
    assert torch.all(trans >= 0)
    assert torch.allclose(trans.sum(-1), torch.ones(50, 4), atol=1e-5)
    # The noisy-label condition matters: the rows for different ỹ are not all identical.
    assert (trans[:, 0] - trans[:, 1]).abs().max() > 1e-3


def test_transition_is_deterministic_given_the_seed(trained):
    train, _, refiner, _ = trained
    a = refiner.transition(train["cond"][:, :40])
    b = refiner.transition(train["cond"][:, :40])
    assert torch.equal(a, b)


def test_model_selection_keeps_the_epoch_that_best_agrees_with_the_valid_prior(trained):
    _, _, _, history = trained
    scores = history["valid_agreement"]
    assert len(scores) == 3
    assert history["selected_epoch"] == max(range(3), key=scores.__getitem__)
    assert len(history["loss"]) == 3 and all(torch.isfinite(torch.tensor(history["loss"])))


def test_dynamic_update_moves_uncertain_weights_only_within_candidates():
    w = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    cand = torch.tensor([[True, False, False], [True, True, False], [True, True, True]])
    certain = torch.tensor([True, False, False])
    model = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.2, 0.8], [0.0, 0.0, 1.0]])
    new = DiffusionRefiner.dynamic_update(w, model, cand, certain, rate=0.5)
    assert torch.equal(new[0], w[0])  # certain: untouched
    assert new[1, 2] == 0  # not a candidate: stays excluded
    assert new[1, 1] > w[1, 1] and new[1, 0] < w[1, 0]  # towards the model, within candidates
    assert new[2, 2] > w[2, 2]
    assert torch.allclose(new.sum(1), torch.ones(3))


def test_fit_moves_uncertain_weights_and_keeps_certain_ones(trained):
    train, _, refiner, history = trained
    initial = DiffusionRefiner.initial_weights(train["prior"], train["candidates"], train["certain"])
    final = refiner.weights
    certain = train["certain"]
    assert certain.any() and (~certain).any()
    assert torch.equal(final[certain], initial[certain])
    assert (final[~certain] - initial[~certain]).abs().sum(1).mean() > 0.05
    assert torch.all(final[~train["candidates"]] == 0)
    assert len(history["weights_shift"]) == 3


def test_without_dynamic_update_weights_stay_at_the_prior():
    train, _ = split(make_problem(300), 300)
    refiner, history = fit(train, epochs=1, prior_update_rate=0.0)
    initial = DiffusionRefiner.initial_weights(train["prior"], train["candidates"], train["certain"])
    assert torch.equal(refiner.weights, initial)
    assert history["weights_shift"] == []


def test_same_seed_same_result_other_seed_differs():
    train, _ = split(make_problem(300), 300)
    a, _ = fit(train, epochs=1, seed=5)
    b, _ = fit(train, epochs=1, seed=5)
    c, _ = fit(train, epochs=1, seed=6)
    ta, tb, tc = (r.transition(train["cond"][:, :30]) for r in (a, b, c))
    assert torch.equal(ta, tb)
    assert not torch.allclose(ta, tc)


def test_fit_honours_should_stop():
    train, _ = split(make_problem(300), 300)
    calls = []

    def stop() -> bool:
        calls.append(1)
        return len(calls) >= 3

    refiner = DiffusionRefiner(RefinerConfig(epochs=2, branches=2, batch_size=64), device="cpu")
    with pytest.raises(CalibrationStopped):
        refiner.fit(
            train["cond"],
            train["noisy"],
            train["prior"],
            train["candidates"],
            train["certain"],
            should_stop=stop,
        )
    assert len(calls) == 3  # checked before each batch, stopped at the third


def test_missing_noisy_labels_are_accepted():
    train, _ = split(make_problem(200), 200)
    train["noisy"][::5] = -1
    refiner, _ = fit(train, epochs=1)
    probs = refiner.predict_given_noisy(train["cond"], train["noisy"])
    assert probs.shape == (200, 4)
    assert torch.allclose(probs.sum(1), torch.ones(200), atol=1e-5)


def test_checkpoint_round_trip_through_safetensors(tmp_path, trained):
    train, _, refiner, _ = trained
    save_file(refiner.state_dict(), tmp_path / "refiner.safetensors")
    (tmp_path / "refiner.json").write_text(json.dumps(refiner.metadata()))
    restored = DiffusionRefiner.from_state_dict(
        load_file(tmp_path / "refiner.safetensors"),
        json.loads((tmp_path / "refiner.json").read_text()),
        device="cpu",
    )
    cond = train["cond"][:, :25]
    assert torch.equal(restored.transition(cond), refiner.transition(cond))
    assert torch.equal(restored.weights, refiner.weights)


def test_compose_posterior_sums_over_noisy_classes():
    noisy_post = torch.tensor([[0.75, 0.25]])
    trans = torch.tensor([[[0.9, 0.1], [0.2, 0.8]]])
    post = compose_posterior(noisy_post, trans)
    assert torch.allclose(post, torch.tensor([[0.75 * 0.9 + 0.25 * 0.2, 0.75 * 0.1 + 0.25 * 0.8]]))


def test_fit_leaves_the_callers_random_state_and_thread_count_alone():
    train, _ = split(make_problem(200), 200)
    torch.set_num_threads(2)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    fit(train, epochs=1)
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == 2


def test_chain_readout_runs_the_full_reverse_pass(trained):
    train, _, refiner, _ = trained
    meta = refiner.metadata()
    meta["config"] = {**meta["config"], "readout": "chain", "samples": 2}
    chained = DiffusionRefiner.from_state_dict(refiner.state_dict(), meta, device="cpu")
    cond = train["cond"][:, :200]
    trans = chained.transition(cond)
    assert trans.shape == (200, 4, 4)
    assert torch.allclose(trans.sum(-1), torch.ones(200, 4), atol=1e-5)
    assert torch.equal(trans, chained.transition(cond))
    assert not torch.allclose(trans, refiner.transition(cond))  # a different estimator, not a no-op
    given = trans[torch.arange(200), train["noisy"][:200]]
    gold = train["gold"][:200]
    assert (given.argmax(1) == gold).float().mean() > (train["noisy"][:200] == gold).float().mean() + 0.2
