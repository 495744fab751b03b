"""Stage 2-4 variants over cached stage-1 runs: the harness behind FINDINGS.md's third follow-up.

    # once per dataset and seed (about 6 min per semeval seed on 2 CPU cores): stage 1 + frozen embeddings
    python -m benchmarks.research.stage2_sweep cache --data ../shared/data/semeval-mixtral-fewshot --seeds 0 1 2
    # then any number of variants, seconds each; every key of `run_variant` can be set
    python -m benchmarks.research.stage2_sweep run --data ../shared/data/semeval-mixtral-fewshot --seeds 0 1 2 \
        --variants '[{}, {"score": "margin"}, {"spread": {"k": 20, "alpha": 0.99, "tau": 0.1}}]'

Stage 1 is trained exactly as `calibrate` trains it with the default configuration (same seeds, so the
dynamics equal the benchmark's). Gold labels are read only to score test predictions.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.quality import read_split
from sidyp_engine.classifier import embed_texts, train_ensemble
from sidyp_engine.device import resolve_device
from sidyp_engine.diffusion import DiffusionRefiner, RefinerConfig, refiner_conditioning
from sidyp_engine.model import load_tokenizer, resolve_backbone
from sidyp_engine.noise import noise_scores, select_likely_noisy
from sidyp_engine.prior import (
    NoiseModelPrior,
    PriorOutput,
    candidate_sets,
    knn_prior,
    noise_matrix,
    noise_model_prior,
)
from sidyp_engine.stages.posterior import refined_posterior
from sidyp_engine.stages.prior import knn_epoch
from sidyp_engine.temperature import apply_temperature, expected_accuracy, fit_temperature, probs_to_logits
from sidyp_engine.types import CalibrationConfig

CACHE_DIR = Path("/tmp/sidyp-stage2-sweep")
SPLITS = ("train", "valid", "extra")


def load_data(data_dir: str) -> dict:
    tr, va, te = (read_split(os.path.join(data_dir, f"{s}.csv")) for s in ("train", "valid", "test"))
    classes = sorted({y for y in tr["noisy"] + va["noisy"] if y is not None})
    ids = {c: i for i, c in enumerate(classes)}

    def to_ids(labels):
        return torch.tensor([ids[y] if y is not None else -1 for y in labels])

    return {
        "name": os.path.basename(os.path.normpath(data_dir)),
        "classes": classes,
        "texts": {"train": tr["texts"], "valid": va["texts"], "extra": te["texts"]},
        "noisy": {"train": to_ids(tr["noisy"]), "valid": to_ids(va["noisy"])},
        "gold_test": to_ids(te["gold"]),  # scoring only
        "gold_train": to_ids(tr["gold"]),  # scoring only (purity of the likely-clean set)
    }


def cache_dir(name: str, seed: int, tag: str = "") -> Path:
    return CACHE_DIR / (name + tag) / f"seed{seed}"


def config_tag(overrides: dict) -> str:
    """Cache folder suffix for stage-1 config overrides ('' for the default configuration)."""
    return "".join(f"-{k}={v}" for k, v in sorted(overrides.items()))


def build_cache(data: dict, seed: int, overrides: dict) -> None:
    from safetensors.torch import save_file

    cfg = CalibrationConfig(seed=seed, **overrides)
    backbone = resolve_backbone(cfg.backbone)
    tokenizer = load_tokenizer(backbone)
    device = resolve_device(cfg.device)
    t, y = data["texts"], data["noisy"]
    n_classes = len(data["classes"])
    ens = train_ensemble(
        cfg,
        backbone,
        tokenizer,
        t["train"],
        y["train"],
        t["valid"],
        y["valid"],
        t["extra"],
        n_classes,
        device,
    )
    frozen = embed_texts(backbone, tokenizer, t["train"] + t["valid"] + t["extra"], cfg.max_length, device)
    out = cache_dir(data["name"], seed, config_tag(overrides))
    out.mkdir(parents=True, exist_ok=True)
    tensors = {f"dynamics.{s}": ens.dynamics[s].contiguous() for s in SPLITS}
    tensors |= {f"noisy_posteriors.{s}": ens.noisy_posteriors[s].contiguous() for s in SPLITS}
    tensors["frozen"] = frozen.contiguous()
    save_file(tensors, str(out / "stage1.safetensors"))


def margin_scores(dynamics: torch.Tensor, noisy: torch.Tensor) -> torch.Tensor:
    """Distance to the own noisy-class centroid minus the distance to the nearest other one, mean + std."""
    m, n, e, _ = dynamics.shape
    labelled = noisy >= 0
    ids = noisy.clamp_min(0)
    n_classes = int(noisy.max()) + 1
    per_branch = torch.zeros(m, n)
    for b in range(m):
        z = F.normalize(dynamics[b].float(), dim=-1)  # [n, E, D]
        sums = torch.zeros(n_classes, e, z.shape[-1]).index_add_(0, ids[labelled], z[labelled])
        counts = torch.bincount(ids[labelled], minlength=n_classes).clamp_min(1).view(-1, 1, 1).float()
        centroids = sums / counts
        dist = torch.cdist(z.transpose(0, 1), centroids.transpose(0, 1)).transpose(0, 1)  # [n, E, C]
        own_index = ids.view(-1, 1, 1).expand(-1, e, 1)
        own = dist.gather(2, own_index).squeeze(2)
        other = dist.scatter(2, own_index, float("inf")).min(2).values
        margin = own - other
        per_branch[b] = margin.mean(1) + margin.std(1, unbiased=False)
    scores = per_branch.mean(0)
    scores[~labelled] = float("nan")
    return scores


def spread_prior(
    space: dict[str, torch.Tensor],
    noisy: torch.Tensor,
    clean: torch.Tensor,
    n_classes: int,
    k: int,
    alpha: float,
    tau: float,
    folds: int,
    seed: int,
) -> tuple[torch.Tensor, ...]:
    """Label spreading (Zhou et al. 2004) from the clean rows over a k-NN graph of every text.

    Weights cos^3 (Iscen et al. 2019), symmetric, normalised D^-1/2 W D^-1/2; seeds one-hot on the noisy
    label divided by the class's seed count. folds = 0: exact leave-own-seed-out through the diagonal of
    (I - alpha S)^-1 (dense); folds > 0: every seed's scores come from propagating the other folds' seeds.
    Scores are sharpened as p^(1/tau) and renormalised. Returns the [N, C] priors of train, valid, extra.
    """
    import faiss
    import scipy.sparse as sparse

    x = F.normalize(torch.cat([space[s] for s in SPLITS]).float(), dim=1).numpy()
    n = len(x)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    sim, nbr = index.search(x, k + 1)
    rows = np.repeat(np.arange(n), k)
    w = sparse.csr_matrix(
        (np.maximum(sim[:, 1:].ravel(), 0.0) ** 3, (rows, nbr[:, 1:].ravel())), shape=(n, n)
    )
    w = w.maximum(w.T)
    d = 1.0 / np.sqrt(np.maximum(np.asarray(w.sum(1)).ravel(), 1e-12))
    s_norm = sparse.diags(d) @ w @ sparse.diags(d)
    y = noisy.numpy()
    seeds = np.flatnonzero(clean.numpy())
    counts = np.bincount(y[seeds], minlength=n_classes).astype(np.float64)
    y0 = np.zeros((n, n_classes))
    y0[seeds, y[seeds]] = 1.0 / counts[y[seeds]]
    if folds == 0:
        g = np.linalg.inv(np.eye(n) - alpha * s_norm.toarray())
        scores = (1 - alpha) * (g @ y0 - np.diag(g)[:, None] * y0)
    else:
        fold = np.full(n, -1)
        fold[seeds] = np.random.default_rng(seed).permutation(len(seeds)) % folds
        scores, uses = np.zeros((n, n_classes)), np.zeros(n)
        for f in range(folds):
            yf = y0 * (fold != f)[:, None]
            fi = yf.copy()
            for _ in range(300):  # alpha^300 = 0.05 for alpha = 0.99
                fi = alpha * (s_norm @ fi) + (1 - alpha) * yf
            use = (fold == f) | (fold < 0)
            scores[use] += fi[use]
            uses[use] += 1
        scores /= uses[:, None]
    p = np.maximum(scores, 0.0)
    p = p / np.maximum(p.sum(1, keepdims=True), 1e-12)
    p = p ** (1.0 / tau)
    p = torch.from_numpy(p / np.maximum(p.sum(1, keepdims=True), 1e-300)).float()
    n_tr, n_v = len(space["train"]), len(space["valid"])
    return p[:n_tr], p[n_tr : n_tr + n_v], p[n_tr + n_v :]


def fit_cross_entropy_temperature(probs: torch.Tensor, target: torch.Tensor) -> float:
    """The pipeline's previous rule: T minimising the cross-entropy of softmax(log probs / T) to soft targets."""
    log_p = torch.log(probs.double().clamp_min(1e-8))
    grid = torch.exp(torch.linspace(-2.0, 3.0, 201, dtype=torch.float64))
    ce = torch.stack([-(target.double() * torch.log_softmax(log_p / t, dim=1)).sum(1).mean() for t in grid])
    return float(grid[int(ce.argmin())])


def calibration_diagnostics(
    p: torch.Tensor,
    refiner: DiffusionRefiner,
    cond: dict,
    post: dict,
    y_va: torch.Tensor,
    pv: PriorOutput,
    nm: NoiseModelPrior,
    c: int,
    gold: torch.Tensor,
) -> dict:
    """Test ECE of the refined posterior `p` under temperature rules fitted on the validation texts.

    "adopted": the pipeline's rule (confidence matching to the smoothed noise-model prior, labelled
    reading of the validation posteriors); "cross_entropy": the previous rule on the same target;
    "matching_unseen": the adopted rule on the validation posteriors read as for unseen texts. Gold labels
    score only; "gold_best" (the best single temperature on a grid) is a diagnosis, never a setting.
    """
    from sidyp_engine.metrics import ece
    from sidyp_engine.prior import fit_vote_smoothing

    def scored(t: float) -> tuple[float, float]:
        return round(t, 2), round(ece(apply_temperature(probs_to_logits(p), t).numpy(), gold.numpy()), 3)

    transition = refiner.transition(cond["valid"])
    p_val = refined_posterior(transition, post["valid"], y_va)
    p_val_unseen = refined_posterior(transition, post["valid"], torch.full_like(y_va, -1))
    eps = fit_vote_smoothing(pv.probs, y_va, nm.noise_matrix)
    target = (1 - eps) * pv.probs + eps / c
    conf = p.max(1).values
    return {
        "smoothing": eps,
        "uncalibrated": round(ece(p.numpy(), gold.numpy()), 3),
        "adopted": scored(fit_temperature(probs_to_logits(p_val), target)),
        "expected_accuracy_valid": round(expected_accuracy(probs_to_logits(p_val), target), 3),
        "cross_entropy": scored(fit_cross_entropy_temperature(p_val, target)),
        "matching_unseen": scored(fit_temperature(probs_to_logits(p_val_unseen), target)),
        "gold_best": min(scored(t)[::-1] for t in (0.5, 0.75, 1, 1.5, 2, 2.5, 3, 4, 6)),
        "mean_conf": round(float(conf.mean()), 3),
        # share of test rows per raw confidence band (<.5, .5-.7, .7-.9, .9-.99, >=.99)
        "conf_bands": [
            round(float(((conf >= a) & (conf < b)).float().mean()), 3)
            for a, b in ((0, 0.5), (0.5, 0.7), (0.7, 0.9), (0.9, 0.99), (0.99, 1.01))
        ],
    }


def noise_likelihood_product(
    p: torch.Tensor,
    refiner: DiffusionRefiner,
    cond_train: torch.Tensor,
    post: dict,
    y_tr: torch.Tensor,
    c: int,
    beta: float = 1.0,
    form: str = "ce",
    smooth: float = 0.01,
) -> torch.Tensor:
    pt = refined_posterior(refiner.transition(cond_train), post["train"], y_tr)
    t = torch.from_numpy(noise_matrix(pt.numpy(), y_tr.numpy(), c)).float()
    t = (t + smooth) / (1 + c * smooth)
    q = post["extra"]
    if form == "ce":
        log_lik = q @ torch.log(t).T  # [N, C]: sum_j q_j log T[y, j]
    else:
        log_lik = torch.log((q @ t.T).clamp_min(1e-12))
    out = torch.log(p.clamp_min(1e-12)) + beta * log_lik
    return torch.softmax(out, dim=1)


def run_variant(
    data: dict,
    seed: int,
    tag: str = "",
    score: str = "dist",
    fraction: str | float = "auto",
    k: int = 10,
    epoch: int | None = None,
    refiner_seeds: list[int] | None = None,
    noisy_posterior_temperature: float | None = 1.0,
    spread: dict | None = None,
    transductive: bool = False,
    likelihood: dict | None = None,
    noise_model: dict | None = None,
    refiner: dict | None = None,
) -> dict:
    """One variant of stages 2-4 on a cached stage 1; returns test accuracies (gold used to score only).

    noisy_posterior_temperature None = uniform P(ỹ | x) in the composition.
    refiner: RefinerConfig overrides (e.g. {"samples": 8} or {"readout": "expected"}).
    likelihood {"beta": b, "form": "ce" | "lin", "smooth": s}: multiply the refined posterior of the extra
    texts by how well each true class's noise row T[y] (estimated from the refined training posteriors)
    explains the classifiers' P(ỹ | x): "ce" exp(b · sum_j P(ỹ=j|x) log T[y, j]), "lin" (T P(ỹ|x))_y^b.
    """
    from safetensors.torch import load_file

    stored = load_file(str(cache_dir(data["name"], seed, tag) / "stage1.safetensors"))
    dyn = {s: stored[f"dynamics.{s}"] for s in SPLITS}
    post = {s: stored[f"noisy_posteriors.{s}"] for s in SPLITS}
    y_tr, y_va = data["noisy"]["train"], data["noisy"]["valid"]
    n_tr, n_v, c = len(y_tr), len(y_va), len(data["classes"])
    frozen_all = stored["frozen"]
    frozen = {
        "train": frozen_all[:n_tr],
        "valid": frozen_all[n_tr : n_tr + n_v],
        "extra": frozen_all[n_tr + n_v :],
    }
    gold = data["gold_test"]

    scores = noise_scores(dyn["train"], y_tr) if score == "dist" else margin_scores(dyn["train"], y_tr)
    likely_noisy, share = select_likely_noisy(scores, y_tr, fraction)
    clean = (~likely_noisy) & (y_tr >= 0)
    ep = knn_epoch(dyn["train"].shape[2]) if epoch is None else epoch
    space = {s: dyn[s][:, :, ep].mean(0) for s in SPLITS}
    if spread is None:
        pt = knn_prior(space["train"], y_tr, clean, c, k)
        pv = knn_prior(space["train"], y_tr, clean, c, k, queries=space["valid"], query_noisy=y_va)
        px = knn_prior(space["train"], y_tr, clean, c, k, queries=space["extra"])
    else:
        opts = {"k": 20, "alpha": 0.99, "tau": 0.1, "folds": 5} | spread
        probs = spread_prior(space, y_tr, clean, c, seed=seed, **opts)
        labelled = (y_tr >= 0, y_va >= 0, None)
        pt, pv, px = (PriorOutput(p, *candidate_sets(p, lab)) for p, lab in zip(probs, labelled, strict=True))

    if noise_model is not None:  # EM over the neighbours' noisy labels, from the k-NN prior
        opts = {"k": k} | noise_model
        nm = noise_model_prior(
            space["train"], y_tr, pt.probs, c, queries=[space["valid"], space["extra"]], **opts
        )
        pt = PriorOutput(nm.train, *candidate_sets(nm.train, y_tr >= 0))
        pv = PriorOutput(nm.queries[0], *candidate_sets(nm.queries[0], y_va >= 0))
        px = PriorOutput(nm.queries[1], *candidate_sets(nm.queries[1], None))
    cond = {s: refiner_conditioning(dyn[s], frozen[s]) for s in SPLITS}
    if noisy_posterior_temperature is None:
        p_noisy = torch.ones_like(post["extra"])
    else:
        p_noisy = apply_temperature(probs_to_logits(post["extra"]), noisy_posterior_temperature).float()
    no_label = torch.full((len(gold),), -1, dtype=torch.long)
    fit_args = (cond["train"], y_tr, pt.probs, pt.candidates, pt.certain)
    if transductive:  # the extra texts join the refiner's training without a label, their prior as target
        fit_args = (
            torch.cat([cond["train"], cond["extra"]], 1),
            torch.cat([y_tr, no_label]),
            torch.cat([pt.probs, px.probs]),
            torch.cat([pt.candidates, px.candidates]),
            torch.cat([pt.certain, px.certain]),
        )
    averaged, members, calib = torch.zeros(len(gold), c), [], []
    for rs in refiner_seeds or [seed]:
        refiner = DiffusionRefiner(
            RefinerConfig(**({"epochs": 4, "branches": 3, "seed": rs} | (refiner or {}))), device="cpu"
        )
        refiner.fit(*fit_args, valid=(cond["valid"], y_va, pv.probs))
        p = refined_posterior(refiner.transition(cond["extra"]), p_noisy, no_label)
        if likelihood is not None:
            p = noise_likelihood_product(p, refiner, cond["train"], post, y_tr, c, **likelihood)
        members.append(float((p.argmax(1) == gold).float().mean()))
        if noise_model is not None:  # calibration of the test posteriors: the pipeline's rule vs others
            calib.append(calibration_diagnostics(p, refiner, cond, post, y_va, pv, nm, c, gold))
        averaged += p
    purity = round(float((data["gold_train"][clean] == y_tr[clean]).float().mean()), 3)
    return {
        "seed": seed,
        "noisy_share": round(share, 3),
        "clean_purity": purity,
        "noisy_ensemble": round(float((post["extra"].argmax(1) == gold).float().mean()), 4),
        "prior": round(float((px.probs.argmax(1) == gold).float().mean()), 4),
        "refined_mean_over_refiner_seeds": round(float(np.mean(members)), 4),
        "refined_averaged_posterior": round(float((averaged.argmax(1) == gold).float().mean()), 4),
        "calibration": calib,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=("cache", "run"))
    p.add_argument("--data", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument(
        "--refiner-seeds", type=int, default=3, help="refiner seeds per variant (seed, seed+10, ...)"
    )
    p.add_argument("--variants", default="[{}]", help="JSON list of run_variant keyword arguments")
    p.add_argument("--config", default="{}", help="JSON CalibrationConfig overrides for stage 1 (own cache)")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    data = load_data(args.data)
    overrides = json.loads(args.config)
    tag = config_tag(overrides)
    if args.command == "cache":
        for s in args.seeds:
            build_cache(data, s, overrides)
            print(f"seed {s}: cached in {cache_dir(data['name'], s, tag)}", flush=True)
        return 0
    torch.set_num_threads(1)
    for variant in json.loads(args.variants):
        runs = [
            run_variant(
                data,
                s,
                tag,
                **({"refiner_seeds": [s + 10 * i for i in range(args.refiner_seeds)]} | variant),
            )
            for s in args.seeds
        ]
        mean = np.mean([r["refined_mean_over_refiner_seeds"] for r in runs])
        print(
            json.dumps({"variant": variant, "refined_mean": round(float(mean), 4), "per_seed": runs}),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
