"""Stage 3 of SiDyP: the diffusion refiner, M denoiser branches (`sidyp_engine.denoiser`) with one scheduler.

`DiffusionRefiner` trains the branches with co-regularisation, EMA weights, the dynamic prior update and
model selection on noisy validation data, and computes the batched transition P(y | ỹ = j, x) for every j
at once; `compose_posterior` turns it into P(y | x). Measurements: docs/method.md, "Refiner readout and
training".
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sidyp_engine.denoiser import LabelDenoiser, SimplexNoiseScheduler
from sidyp_engine.device import resolve_device, seeded_rng, single_thread_on_cpu
from sidyp_engine.types import CalibrationStopped, Progress, ProgressCallback, ShouldStop

__all__ = [
    "DiffusionRefiner",
    "RefinerConfig",
    "compose_posterior",
    "dynamics_features",
    "refiner_conditioning",
]


def dynamics_features(dynamics: Tensor) -> Tensor:
    """Training dynamics [M, N, E, D] -> conditioning vectors [M, N, E * D].

    Each epoch's embedding is L2-normalised (epochs differ in scale as the encoder drifts) and the epochs
    are concatenated, so the trajectory, not only its end point, reaches the denoiser.
    """
    if dynamics.dim() != 4:
        raise ValueError(f"dynamics must be [M, N, E, D], got shape {tuple(dynamics.shape)}")
    m, n, e, d = dynamics.shape
    return F.normalize(dynamics.float(), dim=-1).reshape(m, n, e * d)


def refiner_conditioning(dynamics: Tensor, sentence_embeddings: Tensor | None) -> Tensor:
    """Denoiser conditioning [M, N, Ds + E * D]: the frozen sentence embedding, then the dynamics.

    The frozen embedding is where each trajectory starts, before the encoder saw any noisy label. When
    the labels are a rule of the text (keyword votes), the fine-tuned epochs encode the rule and little
    else, so without it the refiner cannot tell apart examples the labeller treated alike (docs/method.md,
    "Refiner conditioning").
    """
    feats = dynamics_features(dynamics)
    if sentence_embeddings is None:
        return feats
    start = F.normalize(torch.as_tensor(sentence_embeddings).float(), dim=-1)
    if start.shape[0] != feats.shape[1]:
        raise ValueError(f"{start.shape[0]} sentence embeddings for {feats.shape[1]} rows of dynamics")
    return torch.cat([start.unsqueeze(0).expand(feats.shape[0], -1, -1), feats], dim=-1)


def compose_posterior(noisy_posterior: Tensor, transition: Tensor) -> Tensor:
    """P(y | x) = sum_j P(ỹ = j | x) P(y | ỹ = j, x); [N, C] x [N, C, C] -> [N, C], rows sum to 1."""
    p = torch.einsum("nj,njc->nc", noisy_posterior.float(), transition.float())
    return p / p.sum(dim=-1, keepdim=True).clamp_min(1e-12)


# --------------------------------------------------------------------------------------------------------
# Refiner
# --------------------------------------------------------------------------------------------------------


@dataclass
class RefinerConfig:
    epochs: int = 4
    branches: int = 3
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    num_train_timesteps: int = 800
    num_inference_steps: int = 10
    simplex_value: float = 5.0
    hidden: int = 128
    ema_decay: float = 0.99
    coreg_weight: float = 1.0
    prior_update_rate: float = 0.3  # r in w <- normalise((1 - r) w + r p_model), uncertain examples only
    grad_clip: float = 1.0
    dropout: float = 0.1
    seed: int = 0
    pure_noise_share: float = 0.5  # share of training rows drawn at t = T-1 (the "expected" readout's input)
    readout: str = "chain"  # "chain" (the 10-step reverse pass) or "expected" (one step); see _reverse
    samples: int = 1  # reverse chains per row and branch, averaged (readout "chain" only)
    chunk_rows: int = 65_536  # rows per chunk of the batched reverse pass (bounds memory, not semantics)

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 1,
            "branches": self.branches >= 1,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "num_inference_steps": 1 <= self.num_inference_steps <= self.num_train_timesteps,
            "samples": self.samples >= 1,
            "readout": self.readout in ("expected", "chain"),
            "ema_decay": 0.0 <= self.ema_decay < 1.0,
            "coreg_weight": self.coreg_weight >= 0,
            "prior_update_rate": 0.0 <= self.prior_update_rate <= 1.0,
            "pure_noise_share": 0.0 <= self.pure_noise_share <= 1.0,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid RefinerConfig values: {', '.join(bad)}")


class DiffusionRefiner:
    """M denoiser branches + one scheduler; learns P(y | ỹ, x) from the dynamic prior."""

    def __init__(self, config: RefinerConfig | None = None, device: torch.device | str = "auto"):
        self.config = config or RefinerConfig()
        self.device = resolve_device(device)
        self.scheduler = SimplexNoiseScheduler(self.config.num_train_timesteps, self.config.simplex_value)
        self.models: nn.ModuleList | None = None  # trained weights
        self.ema: nn.ModuleList | None = None  # EMA weights: the ones used for every prediction
        self.n_classes: int | None = None
        self.cond_dim: int | None = None
        self.weights: Tensor | None = None  # [N, C] candidate weights after the dynamic updates

    # -- construction --------------------------------------------------------------------------------------
    def _build(self, n_classes: int, cond_dim: int) -> None:
        cfg = self.config
        self.n_classes, self.cond_dim = int(n_classes), int(cond_dim)
        # A private RNG stream, so that building the refiner neither depends on nor disturbs global state.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            models = nn.ModuleList(
                LabelDenoiser(
                    self.n_classes,
                    self.cond_dim,
                    hidden=cfg.hidden,
                    dropout=cfg.dropout,
                    simplex_value=cfg.simplex_value,
                )
                for _ in range(cfg.branches)
            )
        self.models = models.to(self.device)
        self.ema = copy.deepcopy(self.models).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)

    def _branch_cond(self, cond: Tensor, m: int) -> Tensor:
        # Stage 1 may have recorded a different number of branches than the refiner uses: cycle over them.
        return cond[m % cond.shape[0]]

    @staticmethod
    def initial_weights(prior_probs: Tensor, candidates: Tensor, certain: Tensor) -> Tensor:
        """Candidate weights: one-hot on the prior's argmax when certain, else the prior on the candidates."""
        prior = prior_probs.float()
        cand = candidates.bool().clone()
        empty = ~cand.any(dim=1)
        cand[empty] = True  # no candidates recorded: all classes are candidates
        w = prior * cand
        w = torch.where(w.sum(1, keepdim=True) > 0, w, cand.float())
        w = w / w.sum(1, keepdim=True)
        hard = F.one_hot(prior.argmax(1), prior.shape[1]).float()
        return torch.where(certain.bool()[:, None], hard, w)

    @staticmethod
    def dynamic_update(
        weights: Tensor, model_probs: Tensor, candidates: Tensor, certain: Tensor, rate: float
    ) -> Tensor:
        """One dynamic-prior step, vectorised over all rows.

        Uncertain rows move towards the refiner's prediction, restricted to their candidates and
        renormalised; certain rows are returned unchanged.
        """
        cand = candidates.bool().clone()
        cand[~cand.any(dim=1)] = True
        moved = ((1.0 - rate) * weights + rate * model_probs.to(weights)) * cand
        total = moved.sum(1, keepdim=True)
        moved = torch.where(total > 0, moved / total.clamp_min(1e-12), weights)
        return torch.where(certain.bool()[:, None], weights, moved)

    # -- training ------------------------------------------------------------------------------------------
    def fit(
        self,
        cond: Tensor,
        noisy: Tensor,
        prior_probs: Tensor,
        candidates: Tensor,
        certain: Tensor,
        valid: tuple[Tensor, Tensor, Tensor] | None = None,
        progress: ProgressCallback | None = None,
        should_stop: ShouldStop | None = None,
    ) -> dict:
        """Train the branches; returns a history dict (per-epoch loss, validation agreement, selection).

        cond [M', N, Dc]; noisy [N] int (-1 missing); prior_probs [N, C]; candidates [N, C] bool;
        certain [N] bool; valid = (cond_v [M', Nv, Dc], noisy_v [Nv], prior_v [Nv, C]) for model selection:
        after every epoch the EMA model's P(y | ỹ, x) on validation rows is scored by its expected
        agreement with the validation prior, sum_c p(c) prior(c), and the best epoch's EMA weights are kept.
        """
        dev = self.device
        if cond.dim() != 3:
            raise ValueError(f"cond must be [M, N, Dc], got {tuple(cond.shape)}")
        n, c = prior_probs.shape
        if cond.shape[1] != n or noisy.shape[0] != n or candidates.shape != (n, c) or certain.shape[0] != n:
            raise ValueError("cond, noisy, prior_probs, candidates and certain disagree on N or C")
        # dropout draws from the global RNG: seeded here, a fit is reproducible
        with seeded_rng(self.config.seed, dev), single_thread_on_cpu(dev):
            return self._fit(cond, noisy, prior_probs, candidates, certain, valid, progress, should_stop)

    def _fit(self, cond, noisy, prior_probs, candidates, certain, valid, progress, should_stop) -> dict:
        cfg = self.config
        dev = self.device
        n, c = prior_probs.shape
        self._build(c, cond.shape[2])
        assert self.models is not None and self.ema is not None

        started = time.perf_counter()
        cond = cond.to(dev, torch.float32)
        noisy = noisy.to(dev).long()
        candidates = candidates.to(dev).bool()
        certain = certain.to(dev).bool()
        weights = self.initial_weights(prior_probs.to(dev), candidates, certain)
        gen = torch.Generator(device=dev)
        gen.manual_seed(cfg.seed)
        optim, lr_sched, total_steps = self._optimiser(n)
        history: dict = {"loss": [], "coreg": [], "valid_agreement": [], "weights_shift": []}
        best_score, best_state, best_epoch = -math.inf, None, cfg.epochs - 1
        self._step_no = 0
        for epoch in range(cfg.epochs):
            self.models.train()
            perm = torch.randperm(n, generator=gen, device=dev)
            loss_sum, coreg_sum, batches = 0.0, 0.0, 0
            for start in range(0, n, cfg.batch_size):
                if should_stop is not None and should_stop():
                    raise CalibrationStopped("stopped during refiner training")
                idx = perm[start : start + cfg.batch_size]
                ce, coreg = self._train_batch(cond, noisy, weights, idx, gen, optim, lr_sched)
                loss_sum, coreg_sum, batches = loss_sum + ce, coreg_sum + coreg, batches + 1
                if progress is not None:
                    done = self._step_no / (total_steps + cfg.epochs)
                    progress(Progress("refiner", done, f"epoch {epoch + 1}/{cfg.epochs}", {"loss": ce}))
            history["loss"].append(loss_sum / batches)
            history["coreg"].append(coreg_sum / batches)
            weights = self._dynamic_prior_step(
                cond, noisy, weights, candidates, certain, epoch, history, should_stop
            )
            if valid is not None:
                score = self._valid_agreement(valid)
                history["valid_agreement"].append(score)
                if score > best_score:
                    best_score, best_epoch = score, epoch
                    best_state = {k: v.detach().clone() for k, v in self.ema.state_dict().items()}
            if progress is not None:
                metrics = {"loss": history["loss"][-1]}
                if history["valid_agreement"]:
                    metrics["valid_agreement"] = history["valid_agreement"][-1]
                progress(Progress("refiner", (epoch + 1) / cfg.epochs, f"epoch {epoch + 1} done", metrics))

        if best_state is not None:
            self.ema.load_state_dict(best_state)
        history["selected_epoch"] = best_epoch
        history["seconds"] = time.perf_counter() - started
        self.weights = weights.detach().cpu()  # as load_state_dict leaves it
        return history

    def _optimiser(self, n: int):
        cfg = self.config
        assert self.models is not None
        optim = torch.optim.AdamW(list(self.models.parameters()), lr=cfg.lr, weight_decay=cfg.weight_decay)
        total_steps = math.ceil(n / cfg.batch_size) * cfg.epochs
        warmup = max(1, total_steps // 20)

        def lr_factor(step: int) -> float:
            # Linear warm-up then cosine decay to 10%: one schedule over the whole run (not reset per epoch).
            if step < warmup:
                return (step + 1) / warmup
            progress_frac = (step - warmup) / max(1, total_steps - warmup)
            return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress_frac))

        return optim, torch.optim.lr_scheduler.LambdaLR(optim, lr_factor), total_steps

    def _train_batch(self, cond, noisy, weights, idx, gen, optim, lr_sched) -> tuple[float, float]:
        """One step on the rows `idx`; returns (cross-entropy, co-regularisation) of the batch."""
        cfg, dev = self.config, self.device
        assert self.models is not None
        b, c = idx.numel(), weights.shape[1]
        t_max = self.scheduler.num_train_timesteps
        # Target: one label per row sampled from its candidate weights (shared across branches so that
        # co-regularisation compares like with like).
        target = torch.multinomial(weights[idx], 1, generator=gen).squeeze(1)
        x0 = self.scheduler.labels_to_simplex(F.one_hot(target, c))
        t = torch.randint(0, t_max, (b,), generator=gen, device=dev)
        if cfg.pure_noise_share > 0:
            pure = torch.rand(b, generator=gen, device=dev) < cfg.pure_noise_share
            t = torch.where(pure, torch.full_like(t, t_max - 1), t)
        xt = self.scheduler.add_noise(x0, self.scheduler.sample_noise((b, c), gen, dev), t)
        branches = enumerate(self.models)
        logits = torch.stack(
            [model(xt, t, self._branch_cond(cond, m)[idx], noisy[idx]) for m, model in branches]
        )
        # Cross-entropy on the x0 logits against the sampled label (the simplex-diffusion objective of
        # SSD-LM/TESS). MSE on the ±5 simplex saturates once the sign is right and gives weak gradients for
        # the class probabilities we need calibrated; CE is a proper scoring rule, so the softmax estimates
        # P(y | ỹ, x, x_t). Mean over rows and branches, not a batch sum.
        ce = F.cross_entropy(logits.reshape(-1, c), target.repeat(len(self.models)))
        log_p = F.log_softmax(logits, dim=-1)
        if len(self.models) > 1 and cfg.coreg_weight > 0:
            log_mean = torch.logsumexp(log_p, dim=0) - math.log(len(self.models))
            coreg = (log_mean.exp() * (log_mean - log_p)).sum(-1).mean()  # KL(mean || branch), averaged
        else:
            coreg = torch.zeros((), device=dev)
        loss = ce + cfg.coreg_weight * coreg
        optim.zero_grad(set_to_none=True)
        loss.backward()
        for model in self.models:  # every branch, not only the last
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optim.step()
        lr_sched.step()
        self._update_ema(self._step_no)
        self._step_no += 1
        return float(ce.detach()), float(coreg.detach())

    def _dynamic_prior_step(self, cond, noisy, weights, candidates, certain, epoch, history, should_stop):
        """Dynamic prior: one cheap batched no-grad reverse pass per epoch with the EMA weights (no
        gradients through sampling, no per-example loop)."""
        rate = self.config.prior_update_rate
        if rate <= 0:
            return weights
        if should_stop is not None and should_stop():
            raise CalibrationStopped("stopped during refiner training")
        model_probs = self.predict_given_noisy(cond, noisy, seed=self.config.seed + 1 + epoch)
        new_w = self.dynamic_update(weights, model_probs, candidates, certain, rate)
        history["weights_shift"].append(float((new_w - weights).abs().sum(1).mean()))
        return new_w

    def _valid_agreement(self, valid) -> float:
        """Expected agreement of the EMA model's P(y | ỹ, x) with the validation prior."""
        cond_v, noisy_v, prior_v = valid
        dev = self.device
        pv = self.predict_given_noisy(cond_v.to(dev, torch.float32), noisy_v.to(dev), seed=self.config.seed)
        return float((pv * prior_v.to(pv.device, torch.float32)).sum(1).mean())  # pv comes back on the CPU

    def _update_ema(self, step: int) -> None:
        assert self.models is not None and self.ema is not None
        # Warm-up of the decay: with only a few hundred steps a fixed 0.99 would keep the EMA near the
        # random initialisation for too long.
        decay = min(self.config.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for p_ema, p in zip(self.ema.parameters(), self.models.parameters(), strict=True):
                p_ema.lerp_(p.detach(), 1.0 - decay)
            for b_ema, b in zip(self.ema.buffers(), self.models.buffers(), strict=True):
                b_ema.copy_(b)

    # -- inference -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def _reverse(self, cond_emb: list[Tensor], noisy_label: Tensor, gen: torch.Generator) -> Tensor:
        """Batched reverse diffusion for all rows at once; returns [B, C] probabilities (mean over branches).

        cond_emb[m] is branch m's projected conditioning per row ([B, H]).

        readout "chain" (default): the full `num_inference_steps` reverse pass (the published method's
        sampler, with the timesteps mapped onto the training range), `samples` chains averaged per row.
        readout "expected": the denoiser's x0 class distribution at the first reverse step, from pure noise
        at t = T-1 (one step instead of ten). Their measurements: docs/method.md.
        """
        assert self.ema is not None and self.n_classes is not None
        sched = SimplexNoiseScheduler(self.config.num_train_timesteps, self.config.simplex_value)
        sched.set_timesteps(self.config.num_inference_steps)
        chain = self.config.readout == "chain"
        b, c = noisy_label.shape[0], self.n_classes
        s = self.config.samples if chain else 1
        dev = noisy_label.device
        labels = noisy_label.repeat(s)  # `samples` independent chains per row, averaged below
        probs = torch.zeros(b, c, device=dev)
        for m, model in enumerate(self.ema):
            emb = cond_emb[m].repeat(s, 1)
            sample = sched.sample_noise((s * b, c), gen, dev)
            for t in sched.timesteps.tolist():
                ts = torch.full((s * b,), t, device=dev, dtype=torch.long)
                logits = model(sample, ts, None, labels, cond_emb=emb)
                if not chain:
                    sample = sched.labels_to_simplex(torch.softmax(logits.float(), dim=-1))
                    break
                sample = sched.step(logits, t, sample, generator=gen)
            probs += sched.simplex_to_probs(sample).view(s, b, c).mean(0)
        probs = probs / len(self.ema)
        return probs / probs.sum(1, keepdim=True).clamp_min(1e-12)

    def _check_ready(self) -> None:
        if self.ema is None:
            raise RuntimeError("the refiner is not trained: call fit() or load_state_dict() first")

    @torch.no_grad()
    def predict_given_noisy(self, cond: Tensor, noisy: Tensor, seed: int | None = None) -> Tensor:
        """P(y | ỹ = the row's own noisy label, x) for every row: [N, C] (EMA weights, branch mean)."""
        self._check_ready()
        assert self.ema is not None
        dev = self.device
        cond = cond.to(dev, torch.float32)
        noisy = noisy.to(dev).long()
        gen = torch.Generator(device=dev)
        gen.manual_seed(self.config.seed if seed is None else seed)
        with single_thread_on_cpu(dev):
            out = []
            step = max(1, self.config.chunk_rows // self.config.samples)
            for s in range(0, noisy.shape[0], step):
                sl = slice(s, s + step)
                emb = [model.encode_cond(self._branch_cond(cond, m)[sl]) for m, model in enumerate(self.ema)]
                out.append(self._reverse(emb, noisy[sl], gen))
            return torch.cat(out).cpu()

    @torch.no_grad()
    def transition(self, cond: Tensor, seed: int | None = None) -> Tensor:
        """P(y | ỹ = j, x) for every row and every noisy class j: [N, C_noisy, C_true].

        One batched reverse pass over N * C rows (chunked by `chunk_rows` to bound memory); the dynamics
        projection is computed once per row and shared by its C copies. Deterministic given the seed.
        """
        self._check_ready()
        assert self.ema is not None and self.n_classes is not None
        dev, c = self.device, self.n_classes
        cond = cond.to(dev, torch.float32)
        n = cond.shape[1]
        gen = torch.Generator(device=dev)
        gen.manual_seed(self.config.seed if seed is None else seed)
        rows_per_chunk = max(1, self.config.chunk_rows // (c * self.config.samples))
        with single_thread_on_cpu(dev):
            out = []
            for s in range(0, n, rows_per_chunk):
                sl = slice(s, s + rows_per_chunk)
                emb = [
                    model.encode_cond(self._branch_cond(cond, m)[sl]).repeat_interleave(c, dim=0)
                    for m, model in enumerate(self.ema)
                ]
                rows = emb[0].shape[0] // c
                labels = torch.arange(c, device=dev).repeat(rows)  # row-major: example i, noisy class j
                out.append(self._reverse(emb, labels, gen).reshape(rows, c, c))
            return torch.cat(out).cpu()

    # -- checkpointing -------------------------------------------------------------------------------------
    def metadata(self) -> dict:
        """JSON-able description needed to rebuild the refiner (config + dimensions)."""
        return {
            "config": asdict(self.config),
            "n_classes": self.n_classes,
            "cond_dim": self.cond_dim,
        }

    def state_dict(self) -> dict[str, Tensor]:
        """Flat tensors for safetensors: EMA weights per branch (`ema.{m}.*`) and the candidate weights."""
        self._check_ready()
        assert self.ema is not None
        state = {f"ema.{k}": v.detach().cpu().contiguous() for k, v in self.ema.state_dict().items()}
        if self.weights is not None:
            state["candidate_weights"] = self.weights.detach().cpu().contiguous()
        return state

    def load_state_dict(self, state: dict[str, Tensor], metadata: dict | None = None) -> DiffusionRefiner:
        if self.ema is None:
            meta = metadata or {}
            if meta.get("n_classes") is None or meta.get("cond_dim") is None:
                raise ValueError("an untrained refiner needs metadata() to load a state dict")
            self._build(int(meta["n_classes"]), int(meta["cond_dim"]))
        assert self.ema is not None
        ema_state = {k[len("ema.") :]: v for k, v in state.items() if k.startswith("ema.")}
        self.ema.load_state_dict(ema_state)
        self.ema.to(self.device)
        self.weights = state.get("candidate_weights")
        return self

    @classmethod
    def from_state_dict(
        cls, state: dict[str, Tensor], metadata: dict, device: torch.device | str = "auto"
    ) -> DiffusionRefiner:
        # unknown keys (e.g. the "device" older checkpoints stored) are dropped
        known = {f.name for f in fields(RefinerConfig)}
        cfg_dict = {k: v for k, v in metadata.get("config", {}).items() if k in known}
        return cls(RefinerConfig(**cfg_dict), device=device).load_state_dict(state, metadata)
