"""How many trusted rows the NLL temperature fit needs (planted; no data set, seconds on one CPU thread).

A model over-confident by exactly T0 = 2 (logits = 2 x the true logits, 4 classes, true logits N(0, 4)) is
fitted by `fit_temperature_nll` on n trusted rows (labels drawn from the true P(y | x)), 200 draws per n;
each fit is scored by the ECE (15 bins) on 20,000 fresh rows. Chose `MIN_TRUSTED_FOR_TEMPERATURE`
(sidyp_engine/stages/select.py); figures in docs/method.md.

    OMP_NUM_THREADS=1 python -m benchmarks.trusted_temperature_rows
"""

from __future__ import annotations

import numpy as np
import torch

from sidyp_engine.temperature import fit_temperature_nll

PLANTED_T, N_CLASSES, DRAWS = 2.0, 4, 200


def ece(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> float:
    confidence, predicted = probs.max(dim=1)
    right = (predicted == labels).double()
    edges = torch.linspace(0, 1, bins + 1)
    total = 0.0
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            gap = abs(float(confidence[in_bin].mean() - right[in_bin].mean()))
            total += float(in_bin.double().mean()) * gap
    return total


def draw(n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(the model's logits, labels drawn from the truth) for n rows."""
    true_logits = torch.randn(n, N_CLASSES, generator=gen) * 2
    labels = torch.multinomial(torch.softmax(true_logits, dim=1), 1, generator=gen).squeeze(1)
    return true_logits * PLANTED_T, labels


def main() -> None:
    gen = torch.Generator().manual_seed(0)
    fresh_logits, fresh_labels = draw(20_000, gen)
    print(f"untempered ECE {ece(torch.softmax(fresh_logits, 1), fresh_labels):.3f}")
    for n in (10, 20, 30, 50, 100):
        ratios, errors = [], []
        for _ in range(DRAWS):
            t = fit_temperature_nll(*draw(n, gen))
            ratios.append(t / PLANTED_T)
            errors.append(ece(torch.softmax(fresh_logits / t, 1), fresh_labels))
        low, high = np.percentile(ratios, [10, 90])
        print(
            f"n={n:3d}  T/T0 median {np.median(ratios):.2f} (10-90 % {low:.2f}-{high:.2f})  "
            f"ECE median {np.median(errors):.3f}, 90th percentile {np.percentile(errors, 90):.3f}"
        )


if __name__ == "__main__":
    main()
