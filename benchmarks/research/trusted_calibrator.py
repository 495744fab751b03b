"""Which calibrator, fitted on 100 trusted rows, calibrates the served model best: a temperature or more?

The twenty-second round found that no temperature rule closes trec's gap between the NLL fit and a model
calibrated by construction (`trusted_temperature --redraw`: 0.066 against 0.049), so what is left is the
shape of the confidences, not their scale. This compares calibrators with a few more parameters, each fitted
on the trusted rows' labels only:

  temperature   one T, minimum NLL (the rule on main)
  bias          T and a bias per class, the biases held near 0 by a ridge penalty (a class the served model
                under- or over-predicts as a whole)
  bias_r0.3, bias_r3   the same with a ridge 0.3 or 3 times as strong
  bias_cv       `bias` where it beats the temperature alone in the trusted rows' 5-fold out-of-fold NLL
  uniform       T and a share eps mixed in uniformly: (1 - eps) softmax(z / T) + eps / C (confident rows
                that are wrong more often than a temperature allows)
  top_platt     on the top label only: its confidence c at the NLL temperature mapped to
                sigmoid(a logit(c) + b), the other classes scaled to fill the rest (the ECE's own quantity)
  plain_mix     the served model's and the plain model's probabilities, each at its own NLL temperature,
                averaged with the weight in {0, 1/4, 1/2} that gives the lowest trusted-row NLL
  forward       one T, minimum NLL of the trusted labels and, through the run's noise matrix, of the noisy
                labels of other validation rows: P(noisy | x) = sum_y softmax(z / T)_y M[y, noisy] (more
                rows than the trusted ones, at the price of the matrix's error)
  forward_cnt   the same with the matrix counted on the trusted rows (gold against noisy label), shrunk
                towards the run's by 5 pseudo-rows per class

Protocol as `trusted_temperature --redraw`: the trusted rows and the validation rows pooled (every one has
gold, none was fitted by the served model), 100 drawn at random 200 times as the trusted rows; of the rest,
half (at random) lend `forward` their noisy labels and the other half are scored (ECE 15 bins, NLL), the
same half for every rule; `calibrated` is the ECE a perfectly calibrated model with the temperature fit's
confidences shows on those rows (the finite-sample floor).

    python -m benchmarks.research.trusted_calibrator /work/dumps/suite/*trusted100*/seed*.npz
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch

from benchmarks.research.trusted_temperature import top as softmax
from sidyp_engine import metrics
from sidyp_engine.temperature import fit_temperature_nll

RIDGE = 1.0  # the bias penalty per trusted row's NLL: lam / n * |b|^2 with lam = RIDGE * C


def _lbfgs(params, loss_fn, steps: int = 100) -> None:
    opt = torch.optim.LBFGS(params, lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    opt.step(closure)


def fit_bias(logits, labels, t0: float, ridge: float = RIDGE):
    z, y = torch.from_numpy(logits).double(), torch.from_numpy(labels).long()
    log_t = torch.tensor(np.log(t0), dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    lam = ridge * z.shape[1] / len(y)
    _lbfgs(
        [log_t, bias],
        lambda: torch.nn.functional.cross_entropy(z / log_t.exp() + bias, y) + lam * (bias**2).sum(),
    )
    t, b = float(log_t.detach().exp()), bias.detach().numpy()
    return lambda x: torch.softmax(torch.from_numpy(x).double() / t + torch.from_numpy(b), -1).numpy()


def fit_bias_cv(logits, labels, t0: float, folds: int = 5):
    """`bias` where it beats the temperature alone on the trusted rows' out-of-fold NLL, else the temperature."""
    order = np.random.default_rng(0).permutation(len(labels))
    nll_t = nll_b = 0.0
    for k in range(folds):
        held = order[k::folds]
        fit = np.setdiff1d(order, held)
        t = fit_temperature_nll(torch.from_numpy(logits[fit]), torch.from_numpy(labels[fit]))
        nll_t += metrics.nll(softmax(logits[held], t), labels[held]) * len(held)
        nll_b += metrics.nll(fit_bias(logits[fit], labels[fit], t)(logits[held]), labels[held]) * len(held)
    if nll_b < nll_t:
        return fit_bias(logits, labels, t0)
    return lambda x: softmax(x, t0)


def fit_uniform(logits, labels, t0: float):
    z, y = torch.from_numpy(logits).double(), torch.from_numpy(labels).long()
    c = z.shape[1]
    log_t = torch.tensor(np.log(t0), dtype=torch.float64, requires_grad=True)
    raw = torch.tensor(-4.0, dtype=torch.float64, requires_grad=True)  # eps = sigmoid(raw)

    def mixed(x, lt, r):
        eps = torch.sigmoid(r)
        return (1 - eps) * torch.softmax(x / lt.exp(), -1) + eps / c

    _lbfgs([log_t, raw], lambda: -torch.log(mixed(z, log_t, raw)[torch.arange(len(y)), y]).mean())
    lt, r = log_t.detach(), raw.detach()
    return lambda x: mixed(torch.from_numpy(x).double(), lt, r).numpy()


def _top_logit(probs: np.ndarray) -> np.ndarray:
    c = np.clip(probs.max(1), 1e-6, 1 - 1e-6)
    return np.log(c / (1 - c))


def fit_top_platt(logits, labels, t: float):
    probs = softmax(logits, t)
    x = torch.from_numpy(_top_logit(probs))
    right = torch.from_numpy((probs.argmax(1) == labels).astype(np.float64))
    ab = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
    _lbfgs([ab], lambda: torch.nn.functional.binary_cross_entropy_with_logits(ab[0] * x + ab[1], right))
    a, b = (float(v) for v in ab.detach())

    def apply(x_logits):
        p = softmax(x_logits, t)
        top = p.argmax(1)
        c = p[np.arange(len(p)), top]
        c_new = 1 / (1 + np.exp(-(a * _top_logit(p) + b)))
        rest = np.where(c < 1, (1 - c_new) / np.maximum(1 - c, 1e-12), 0.0)
        out = p * rest[:, None]
        out[np.arange(len(p)), top] = c_new
        return out

    return apply


def fit_plain_mix(served, plain, labels):
    t_s = fit_temperature_nll(torch.from_numpy(served), torch.from_numpy(labels))
    t_p = fit_temperature_nll(torch.from_numpy(plain), torch.from_numpy(labels))
    ps, pp = softmax(served, t_s), softmax(plain, t_p)
    best = min((0.0, 0.25, 0.5), key=lambda w: metrics.nll((1 - w) * ps + w * pp, labels))
    return lambda s, p: (1 - best) * softmax(s, t_s) + best * softmax(p, t_p), best


def fit_forward(served, labels, noisy_served, noisy, matrix, t0: float) -> float:
    z, y = torch.from_numpy(served).double(), torch.from_numpy(labels).long()
    zn, yn = torch.from_numpy(noisy_served).double(), torch.from_numpy(noisy).long()
    m = torch.from_numpy(matrix).double()
    log_t = torch.tensor(np.log(t0), dtype=torch.float64, requires_grad=True)

    def loss():
        t = log_t.exp()
        clean = torch.nn.functional.cross_entropy(z / t, y, reduction="sum")
        given = torch.softmax(zn / t, -1) @ m  # P(noisy label | x)
        noisy_nll = -torch.log(given[torch.arange(len(yn)), yn].clamp_min(1e-12)).sum()
        return (clean + noisy_nll) / (len(y) + len(yn))

    _lbfgs([log_t], loss)
    return float(log_t.detach().exp())


def pooled(path: str) -> dict[str, np.ndarray | None]:
    """The served (and plain) model's logits on every row with gold it did not fit, that gold, the noisy
    label (-1 on trusted training rows: the dump does not keep it) and the run's noise matrix."""
    a = np.load(path)
    n_valid = int(a["trusted_n_valid"]) if "trusted_n_valid" in a else 0

    def rows(name):
        # validation rows with a trusted label are in both arrays: keep them once (their validation copy)
        return np.concatenate([a[f"trusted_{name}"][n_valid:], a[f"valid_{name}"]])

    gold = np.concatenate([a["trusted_labels"][n_valid:], a["valid_gold"]])
    noisy = np.concatenate([np.full(len(a["trusted_labels"]) - n_valid, -1), a["valid_noisy"]])
    known = gold >= 0
    plain = (
        rows("logits_plain_model").astype(np.float64)[known] if "trusted_logits_plain_model" in a else None
    )
    return {
        "served": rows("logits_served").astype(np.float64)[known],
        "plain": plain,
        "gold": gold[known],
        "noisy": noisy[known],
        "matrix": a["selection_noise_matrix"].astype(np.float64),
    }


def counted(tr, gold, noisy, d, strength: float = 5.0) -> np.ndarray:
    """The noise matrix counted on the trusted rows that carry a noisy label, each row shrunk towards the
    run's anchor matrix by `strength` pseudo-rows."""
    c = d["matrix"].shape[0]
    counts = np.zeros((c, c))
    have = tr[noisy[tr] >= 0]
    np.add.at(counts, (gold[have], noisy[have]), 1.0)
    m = counts + strength * d["matrix"]
    return m / m.sum(1, keepdims=True)


def redraw(path: str, n_trusted: int = 100, draws: int = 200) -> dict[str, list]:
    d = pooled(path)
    served, gold, plain, noisy = d["served"], d["gold"], d["plain"], d["noisy"]
    rng = np.random.default_rng(0)
    found: dict[str, list] = {}
    for _ in range(draws):
        order = rng.permutation(len(gold))
        tr, rest = order[:n_trusted], order[n_trusted:]
        lend, ev = rest[: len(rest) // 2], rest[len(rest) // 2 :]
        lend = lend[noisy[lend] >= 0]
        t = fit_temperature_nll(torch.from_numpy(served[tr]), torch.from_numpy(gold[tr]))
        t_fwd = fit_forward(served[tr], gold[tr], served[lend], noisy[lend], d["matrix"], t)
        t_cnt = fit_forward(served[tr], gold[tr], served[lend], noisy[lend], counted(tr, gold, noisy, d), t)
        probs = {
            "temperature": softmax(served[ev], t),
            "bias": fit_bias(served[tr], gold[tr], t)(served[ev]),
            "bias_r0.3": fit_bias(served[tr], gold[tr], t, 0.3)(served[ev]),
            "bias_r3": fit_bias(served[tr], gold[tr], t, 3.0)(served[ev]),
            "bias_cv": fit_bias_cv(served[tr], gold[tr], t)(served[ev]),
            "uniform": fit_uniform(served[tr], gold[tr], t)(served[ev]),
            "top_platt": fit_top_platt(served[tr], gold[tr], t)(served[ev]),
            "forward": softmax(served[ev], t_fwd),
            "forward_cnt": softmax(served[ev], t_cnt),
        }
        if plain is not None:
            mix, _ = fit_plain_mix(served[tr], plain[tr], gold[tr])
            probs["plain_mix"] = mix(served[ev], plain[ev])
        for name, p in probs.items():
            found.setdefault(name, []).append(
                (metrics.ece(p, gold[ev]), metrics.nll(p, gold[ev]), float((p.argmax(1) == gold[ev]).mean()))
            )
        p = probs["temperature"]
        drawn = np.minimum((p.cumsum(1) < rng.random((len(ev), 1))).sum(1), p.shape[1] - 1)
        found.setdefault("calibrated", []).append(
            (metrics.ece(p, drawn), metrics.nll(p, drawn), float((p.argmax(1) == drawn).mean()))
        )
    return found


def main(paths: list[str]) -> None:
    print(f"{'run':44s} {'rows':>5s} {'rule':12s} {'ECE':>7s} {'ECE 90%':>8s} {'NLL':>7s} {'acc':>6s}")
    means: dict[str, list] = {}
    for path in paths:
        n = len(pooled(path)["gold"])
        for name, rows in redraw(path).items():
            e, nll, acc = (np.array(c) for c in zip(*rows, strict=True))
            means.setdefault(name, []).append((e.mean(), nll.mean(), acc.mean()))
            run = os.path.basename(os.path.dirname(path)) + "/" + os.path.basename(path)
            print(
                f"{run[-44:]:44s} {n:5d} {name:12s} {e.mean():7.4f} {np.percentile(e, 90):8.4f} "
                f"{nll.mean():7.4f} {acc.mean():6.3f}"
            )
    print(f"\n{'rule':12s} {'mean ECE':>9s} {'mean NLL':>9s} {'mean acc':>9s}  ({len(paths)} runs)")
    for name, rows in means.items():
        e, nll, acc = np.array(rows).mean(0)
        print(f"{name:12s} {e:9.4f} {nll:9.4f} {acc:9.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
