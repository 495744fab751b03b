"""The denoising model of stage 3, diffusers-style: `SimplexNoiseScheduler` owns the noise schedule,
`add_noise` and the reverse `step` (no parameters); `LabelDenoiser` is the network.

Labels live on the "simplex" of SSD-LM / TESS: a class distribution p maps to logits `k * (2p - 1)` with
k = simplex_value (5), so a one-hot label is +5 on its class and -5 elsewhere. Noise is Gaussian with the
same scale k, so signal and noise are comparable across the schedule.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LabelDenoiser", "SimplexNoiseScheduler", "timestep_embedding"]


# --------------------------------------------------------------------------------------------------------
# Scheduler
# --------------------------------------------------------------------------------------------------------


class SimplexNoiseScheduler:
    """Cosine noise schedule over label simplexes (no parameters, not an nn.Module).

    Training: `add_noise(x0, noise, t)` with t drawn from [0, num_train_timesteps).
    Sampling: `set_timesteps(n)` then, for t in `self.timesteps`, `sample = step(model_logits, t, sample)`.
    The inference timesteps are spread over the *training* range (799, 710, ..., 0), and each step uses the
    cumulative alphas of exactly those timesteps; the published code sampled timesteps 9..0 instead, feeding
    pure noise to a model that had only seen nearly clean inputs at those timesteps.
    """

    def __init__(
        self,
        num_train_timesteps: int = 800,
        simplex_value: float = 5.0,
        cosine_offset: float = 0.008,
        max_beta: float = 0.999,
    ):
        if num_train_timesteps < 2:
            raise ValueError("num_train_timesteps must be at least 2")
        self.num_train_timesteps = int(num_train_timesteps)
        self.simplex_value = float(simplex_value)
        # Nichol & Dhariwal's cosine schedule, in float64 so that the cumulative product is exact enough
        # near t = 0 (alphas_cumprod[0] must be ~1 for the last sampling step to return a clean label).
        steps = torch.arange(self.num_train_timesteps + 1, dtype=torch.float64) / self.num_train_timesteps
        alpha_bar = torch.cos((steps + cosine_offset) / (1 + cosine_offset) * math.pi / 2) ** 2
        betas = (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=max_beta)
        self.betas = betas.float()
        self.alphas_cumprod = torch.cumprod(1 - betas, dim=0).float()
        self.timesteps = torch.arange(self.num_train_timesteps - 1, -1, -1, dtype=torch.long)
        self.num_inference_steps = self.num_train_timesteps

    # -- label <-> simplex ---------------------------------------------------------------------------------
    def labels_to_simplex(self, probs_or_onehot: Tensor) -> Tensor:
        """[B, C] class distribution (one-hot or soft) -> [B, C] simplex logits in [-k, k]."""
        return self.simplex_value * (2.0 * probs_or_onehot.float() - 1.0)

    def simplex_to_probs(self, simplex: Tensor) -> Tensor:
        """Inverse of `labels_to_simplex` for points produced by it (clamped into [0, 1])."""
        return ((simplex / self.simplex_value + 1.0) / 2.0).clamp(0.0, 1.0)

    def sample_noise(
        self, shape: tuple[int, ...], generator: torch.Generator | None = None, device=None
    ) -> Tensor:
        """Gaussian noise in simplex units: N(0, simplex_value^2)."""
        return self.simplex_value * torch.randn(shape, generator=generator, device=device)

    # -- forward process -----------------------------------------------------------------------------------
    def add_noise(self, x0: Tensor, noise: Tensor, timesteps: Tensor) -> Tensor:
        """q(x_t | x_0) = sqrt(ab_t) x0 + sqrt(1 - ab_t) noise, with `noise` in simplex units.

        `timesteps` is [B] (one per row) or a scalar.
        """
        ab = self.alphas_cumprod.to(x0.device)[torch.as_tensor(timesteps, device=x0.device).long()]
        while ab.dim() < x0.dim():
            ab = ab.unsqueeze(-1)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    # -- reverse process -----------------------------------------------------------------------------------
    def set_timesteps(self, num_inference_steps: int = 10) -> Tensor:
        """Spread `num_inference_steps` evenly over the training timesteps, from T-1 down to 0."""
        n = int(num_inference_steps)
        if not 1 <= n <= self.num_train_timesteps:
            raise ValueError(f"num_inference_steps must be in [1, {self.num_train_timesteps}]")
        if n == 1:
            ts = torch.tensor([self.num_train_timesteps - 1], dtype=torch.long)
        else:
            ts = torch.linspace(self.num_train_timesteps - 1, 0, n, dtype=torch.float64).round().long()
        self.timesteps = ts
        self.num_inference_steps = n
        return ts

    def previous_timestep(self, timestep: int) -> int:
        """The inference timestep after `timestep` in the current schedule, or -1 after the last one."""
        later = (self.timesteps < int(timestep)).nonzero()
        return int(self.timesteps[later[0, 0]]) if len(later) else -1

    def step(
        self,
        model_output_logits: Tensor,
        timestep: int | Tensor,
        sample: Tensor,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """One reverse step x_t -> x_prev from the model's predicted x0 logits.

        The predicted logits become the simplex point `k * (2 softmax - 1)`: the expected clean simplex
        under the model's class distribution (the MMSE estimate of x0), so the DDPM posterior
        q(x_prev | x_t, x0) below is evaluated at a consistent x0 estimate. Hard argmax projection (TESS)
        would turn the last output into a near one-hot and lose the calibration we need for P(y | ỹ, x).
        After the last timestep the clean estimate itself is returned.
        """
        t = int(timestep)
        prev_t = self.previous_timestep(t)
        x0_hat = self.labels_to_simplex(torch.softmax(model_output_logits.float(), dim=-1))
        if prev_t < 0:
            return x0_hat
        acp = self.alphas_cumprod
        ab_t = float(acp[t])
        ab_prev = float(acp[prev_t])
        alpha_t = ab_t / ab_prev  # the product of alphas between the two inference timesteps
        beta_t = 1.0 - alpha_t
        coef_x0 = math.sqrt(ab_prev) * beta_t / (1.0 - ab_t)
        coef_xt = math.sqrt(alpha_t) * (1.0 - ab_prev) / (1.0 - ab_t)
        variance = max((1.0 - ab_prev) / (1.0 - ab_t) * beta_t, 0.0)
        noise = self.sample_noise(tuple(sample.shape), generator=generator, device=sample.device)
        return coef_x0 * x0_hat + coef_xt * sample + math.sqrt(variance) * noise


# --------------------------------------------------------------------------------------------------------
# Denoiser
# --------------------------------------------------------------------------------------------------------


def timestep_embedding(timesteps: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Sinusoidal timestep embedding [B] -> [B, dim] (as in DDPM / diffusers)."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    )
    args = timesteps.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class _ResidualBlock(nn.Module):
    def __init__(self, hidden: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc1 = nn.Linear(hidden, hidden * 2)
        self.fc2 = nn.Linear(hidden * 2, hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.dropout(self.fc2(F.gelu(self.fc1(self.norm(h)))))


class LabelDenoiser(nn.Module):
    """Predicts the clean label's logits from (x_t, t, dynamics vector, noisy label).

    All three conditions enter additively into the hidden state (the published code built a text and a
    timestep embedding and then did not use them). The noisy-label table has C + 1 rows: row C stands
    for a missing label, so a missing label is its own condition, never a random class.
    The dynamics vector is large (epochs x hidden size); it is normalised and projected down once, and
    `encode_cond` lets callers reuse that projection across timesteps and candidate noisy labels.
    """

    def __init__(
        self,
        n_classes: int,
        cond_dim: int,
        hidden: int = 256,
        time_dim: int = 64,
        n_blocks: int = 2,
        dropout: float = 0.1,
        simplex_value: float = 5.0,
    ):
        super().__init__()
        self.n_classes = n_classes
        self.cond_dim = cond_dim
        self.hidden = hidden
        self.time_dim = time_dim
        self.simplex_value = simplex_value
        self.cond_proj = nn.Sequential(
            nn.LayerNorm(cond_dim), nn.Dropout(dropout), nn.Linear(cond_dim, hidden), nn.GELU()
        )
        self.time_mlp = nn.Sequential(nn.Linear(time_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.label_emb = nn.Embedding(n_classes + 1, hidden)
        # The noised simplex enters both scaled and as a softmax: the softmax is what carries the label
        # at low noise, the scaled logits keep the magnitude information at high noise.
        self.x_in = nn.Linear(2 * n_classes, hidden)
        self.blocks = nn.ModuleList(_ResidualBlock(hidden, dropout) for _ in range(n_blocks))
        self.out_norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, n_classes)

    def encode_cond(self, cond: Tensor) -> Tensor:
        return self.cond_proj(cond.float())

    def forward(
        self,
        noisy_simplex: Tensor,
        timesteps: Tensor,
        cond: Tensor | None,
        noisy_label: Tensor,
        cond_emb: Tensor | None = None,
    ) -> Tensor:
        if cond_emb is None:
            if cond is None:
                raise ValueError("pass cond or cond_emb")
            cond_emb = self.encode_cond(cond)
        x = noisy_simplex.float()
        x_feat = torch.cat([x / self.simplex_value, torch.softmax(x, dim=-1)], dim=-1)
        label_idx = torch.where(noisy_label < 0, torch.full_like(noisy_label, self.n_classes), noisy_label)
        # Rows share few distinct timesteps (all rows share one during sampling): embed each once.
        t_unique, t_inverse = torch.unique(timesteps, return_inverse=True)
        t_emb = self.time_mlp(timestep_embedding(t_unique, self.time_dim))[t_inverse]
        h = self.x_in(x_feat) + t_emb + cond_emb + self.label_emb(label_idx)
        for block in self.blocks:
            h = block(h)
        return self.out(self.out_norm(h))
