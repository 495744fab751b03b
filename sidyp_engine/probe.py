"""The linear probe: a logistic regression on the frozen encoder's sentence embeddings, fitted to the noisy labels.

The cheapest classifier a user would try (seconds on a CPU), and a candidate of the "select" stage. It
cannot bend to every label the way a fine-tuned encoder can, so where its held-out agreement with the
noisy labels still beats the fine-tuned plain classifier's it is the better one (docs/method.md, "The
linear probe"). The objective is scikit-learn's default: summed cross-entropy plus 0.5 * ||W||^2 (C = 1,
intercept unpenalised), on the raw mean-pooled embeddings.

As a served model it is a `TextClassifier` whose encoder is the frozen encoder and whose head is the probe:
the same mean pooling, so its predictions on a text equal the probe's on that text's embedding.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from sidyp_engine.model import TextClassifier, load_tokenizer
from sidyp_engine.served import ServedClassifier

PROBE_L2 = 1.0  # scikit-learn's C = 1
PROBE_FOLDS = 5  # out-of-fold probabilities for the training rows (their suggested labels)


def fit_probe(
    x: torch.Tensor, y: torch.Tensor, n_classes: int, l2: float = PROBE_L2, iterations: int = 200
) -> tuple[torch.Tensor, torch.Tensor]:
    """(W [C, D], b [C]) minimising sum_i CE(x_i W^T + b, y_i) + l2 / 2 ||W||^2 over rows with y >= 0."""
    known = y >= 0
    x, y = x[known].double(), y[known].long()
    weight = torch.zeros(n_classes, x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
    if not len(x):
        return weight.detach().float(), bias.detach().float()
    optimizer = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=iterations, tolerance_grad=1e-7, line_search_fn="strong_wolfe"
    )

    def closure():
        optimizer.zero_grad()
        logits = x @ weight.T + bias
        loss = torch.nn.functional.cross_entropy(logits, y, reduction="sum") + 0.5 * l2 * (weight**2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weight.detach().float(), bias.detach().float()


def probe_logits(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return x.float() @ weight.T + bias


def out_of_fold_probs(
    x: torch.Tensor, y: torch.Tensor, n_classes: int, seed: int, folds: int = PROBE_FOLDS
) -> torch.Tensor:
    """P(ỹ | x) of each row from a probe that did not see it (rows split into `folds` at random)."""
    n = len(x)
    out = torch.full((n, n_classes), 1.0 / n_classes)
    if n < 2:
        return out
    fold_of = np.random.default_rng(seed + 104729).permutation(n) % max(2, min(folds, n))
    for fold in np.unique(fold_of):
        held = torch.from_numpy(fold_of == fold)
        weight, bias = fit_probe(x[~held], y[~held], n_classes)
        out[held] = torch.softmax(probe_logits(x[held], weight, bias), dim=-1)
    return out


def probe_classifier(
    encoder: str,
    weight: torch.Tensor,
    bias: torch.Tensor,
    classes: Sequence[str],
    max_length: int,
    device: torch.device,
) -> ServedClassifier:
    """The probe as a served model: the frozen encoder, mean pooling, the probe as the head."""
    model = TextClassifier(encoder, len(classes))
    with torch.no_grad():
        model.head.weight.copy_(weight.to(model.head.weight.dtype))
        model.head.bias.copy_(bias.to(model.head.bias.dtype))
    return ServedClassifier(model, load_tokenizer(encoder), classes, 1.0, max_length, device)
