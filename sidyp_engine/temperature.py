"""Temperature scaling against a reference distribution: the one rule the pipeline and the served model share.

Without gold labels the pipeline can only calibrate against a *reference*: a distribution over true classes
per validation text that it trusts more than the model being calibrated (the dynamic prior for the refined
posteriors, the refined posteriors for the served model). One temperature T (argmax unchanged) is chosen
so that the model's mean top-label confidence equals the reference's expected accuracy of those top labels:

    mean_i max_y softmax(z_i / T)_y  =  mean_i reference_i[argmax_y z_i]

Top-label confidence is what a user reads and what expected calibration error scores; the reference's
probability of the model's prediction is its estimate of how often that prediction is right. The previous
rule, minimising the cross-entropy to the reference, matches the *whole* distribution, so a reference
that spreads its remaining mass differently from the model (a noise-model prior does: it keeps the
labeller's habitual confusions) pulls T away from the top-label fit (docs/method.md, "The temperature
rule").

The mean top-label confidence decreases monotonically in T, so T is found by bisection on log T.

With labels known to be true (the user's trusted rows) no reference is needed: `fit_temperature_nll` takes
the T that minimises their negative log-likelihood, the usual temperature scaling (Guo et al., 2017).
"""

from __future__ import annotations

import math

import torch

LOG_TEMPERATURE_RANGE = (math.log(0.05), math.log(20.0))


def probs_to_logits(probs: torch.Tensor) -> torch.Tensor:
    """Log-probabilities (floored at 1e-8), a valid logit vector for `apply_temperature`."""
    return torch.log(torch.as_tensor(probs).double().clamp_min(1e-8))


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(logits / T), in the dtype of `logits`."""
    return torch.softmax(logits / float(temperature), dim=-1)


def expected_accuracy(logits: torch.Tensor, reference: torch.Tensor) -> float:
    """The reference's mean probability of the model's top classes: its estimate of the model's accuracy."""
    ref = torch.as_tensor(reference).double()
    ref = ref / ref.sum(dim=1, keepdim=True).clamp_min(1e-12)
    return float(ref[torch.arange(len(ref)), torch.as_tensor(logits).argmax(dim=1)].mean())


def fit_temperature(logits: torch.Tensor, reference: torch.Tensor, iterations: int = 60) -> float:
    """T in [0.05, 20] at which the mean top-label confidence of softmax(logits / T) equals `expected_accuracy`.

    `reference` rows are distributions over the same classes (normalised here). Clamped at the range ends
    when no temperature reaches the target (e.g. a uniform reference: as flat as allowed). No rows: T = 1.
    """
    logits = torch.as_tensor(logits).double()
    if logits.ndim != 2 or logits.shape != torch.as_tensor(reference).shape:
        raise ValueError(
            f"logits and reference must both be [N, C], got {tuple(logits.shape)} and "
            f"{tuple(torch.as_tensor(reference).shape)}"
        )
    if len(logits) == 0:
        return 1.0
    target = expected_accuracy(logits, reference)

    def confidence(log_t: float) -> float:
        return float(torch.softmax(logits / math.exp(log_t), dim=1).max(dim=1).values.mean())

    lo, hi = LOG_TEMPERATURE_RANGE
    if confidence(lo) <= target:
        return math.exp(lo)
    if confidence(hi) >= target:
        return math.exp(hi)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        if confidence(mid) > target:
            lo = mid  # still too confident: flatten more
        else:
            hi = mid
    return math.exp(0.5 * (lo + hi))


def _nll_slope(logits: torch.Tensor, labels: torch.Tensor, log_t: float) -> float:
    """d NLL / d(1/T) at T = exp(log_t): mean over rows of E_softmax(z / T)[z] - z_label.

    NLL is convex in 1/T, so this slope increases with 1/T (decreases with T): one sign change at most.
    """
    probs = torch.softmax(logits / math.exp(log_t), dim=1)
    return float(((probs * logits).sum(dim=1) - logits[torch.arange(len(labels)), labels]).mean())


def fit_temperature_nll(logits: torch.Tensor, labels, iterations: int = 60) -> float:
    """T in [0.05, 20] minimising the mean -log softmax(logits / T)[label] of rows with a label (>= 0).

    Bisection on log T for the zero of the slope; clamped at the range ends when the minimum lies beyond
    them (every row right and separable: as sharp as allowed). No labelled rows: T = 1.
    """
    logits = torch.as_tensor(logits).double()
    labels = torch.as_tensor(labels).long()
    if logits.ndim != 2 or labels.shape != (len(logits),):
        raise ValueError(
            f"logits must be [N, C] and labels [N], got {tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    known = labels >= 0
    logits, labels = logits[known], labels[known]
    if len(logits) == 0:
        return 1.0
    lo, hi = LOG_TEMPERATURE_RANGE
    if _nll_slope(logits, labels, lo) <= 0:
        return math.exp(lo)
    if _nll_slope(logits, labels, hi) >= 0:
        return math.exp(hi)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        if _nll_slope(logits, labels, mid) > 0:
            lo = mid  # the likelihood still gains from flattening
        else:
            hi = mid
    return math.exp(0.5 * (lo + hi))
