"""The linear probe: scikit-learn's default logistic regression, and a served model that reproduces it."""

from __future__ import annotations

import numpy as np
import torch

from sidyp_engine.classifier import embed_texts
from sidyp_engine.model import load_tokenizer
from sidyp_engine.probe import fit_probe, out_of_fold_probs, probe_classifier, probe_logits
from tests.conftest import toy_dataset


def _blobs(n=300, d=16, c=3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(c, d)) * 2
    y = rng.integers(0, c, size=n)
    x = centres[y] + rng.normal(size=(n, d))
    return torch.from_numpy(x).float(), torch.from_numpy(y)


def test_the_probe_is_scikit_learns_default_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    x, y = _blobs()
    weight, bias = fit_probe(x, y, 3)
    ours = torch.softmax(probe_logits(x, weight, bias), dim=-1).numpy()
    theirs = LogisticRegression(max_iter=5000, tol=1e-8).fit(x.numpy(), y.numpy()).predict_proba(x.numpy())
    assert np.abs(ours - theirs).max() < 1e-3


def test_rows_without_a_label_are_left_out_and_out_of_fold_rows_are_unseen():
    x, y = _blobs(n=200)
    y_missing = y.clone()
    y_missing[:50] = -1
    w_all, _ = fit_probe(x[50:], y[50:], 3)
    w_missing, _ = fit_probe(x, y_missing, 3)
    assert torch.allclose(w_all, w_missing, atol=1e-4)
    # a row whose label is flipped: in-sample the probe leans towards the flip, out of fold it does not
    y_flipped = y.clone()
    y_flipped[0] = (y[0] + 1) % 3
    oof = out_of_fold_probs(x, y_flipped, 3, seed=0)
    assert oof.shape == (200, 3) and torch.allclose(oof.sum(1), torch.ones(200), atol=1e-5)
    assert int(oof[0].argmax()) == int(y[0])
    assert (oof.argmax(1) == y).float().mean() > 0.9


def test_the_served_probe_predicts_what_the_probe_does_on_the_embeddings(tiny_backbone):
    texts, noisy, _, classes = toy_dataset(n_per_class=10, noise=0.0, seed=3)
    emb = embed_texts(tiny_backbone, load_tokenizer(tiny_backbone), texts, 32, torch.device("cpu"))
    y = torch.tensor([classes.index(t) for t in noisy])
    weight, bias = fit_probe(emb, y, len(classes))
    served = probe_classifier(tiny_backbone, weight, bias, classes, 32, torch.device("cpu"))
    expected = probe_logits(emb, weight, bias).numpy()
    assert np.allclose(served.logits(texts), expected, atol=1e-4)
