"""Can the linear probe's out-of-fold P(ỹ | x) estimate the share of wrong labels? (issue 13, part 2)

    python -m benchmarks.research.probe_wrong_share --cache /work/emb-cache <data dir> [<data dir> ...]

Per data dir (train + valid; their gold is read for the measured side only, test is not read): the frozen
encoder's embeddings (cached per text set under --cache), the probe's 5-fold out-of-fold probabilities over
every labelled row, and three gold-free estimates of the wrong-label share beside the measured one:
`disagree` (argmax != given), `expected` (mean 1 - P(given)) and `confident` (the confident joint of
Northcutt et al. 2021, calibrated to the label counts: 1 - its trace).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os

import numpy as np
import torch

from benchmarks.quality import read_split
from sidyp_engine import probe
from sidyp_engine.classifier import embed_texts
from sidyp_engine.model import load_tokenizer, resolve_backbone
from sidyp_engine.types import CalibrationConfig


def confident_share(probs: np.ndarray, given: np.ndarray) -> float:
    """1 - trace of the calibrated confident joint (per-class thresholds = mean P(class) of its rows)."""
    n, c = probs.shape
    thresholds = np.array([probs[given == j, j].mean() if (given == j).any() else 1.0 for j in range(c)])
    above = probs >= thresholds[None, :] - 1e-9
    masked = np.where(above, probs, -1.0)
    counted = above.any(1)
    joint = np.zeros((c, c))
    np.add.at(joint, (given[counted], masked[counted].argmax(1)), 1.0)
    counts = np.bincount(given, minlength=c).astype(float)
    rows = joint.sum(1, keepdims=True)
    calibrated = np.where(rows > 0, joint / np.maximum(rows, 1e-12), 0.0) * counts[:, None]
    return float(1.0 - np.trace(calibrated) / max(calibrated.sum(), 1e-12))


def embeddings(texts: list[str], cache: str) -> torch.Tensor:
    from safetensors.torch import load_file, save_file

    key = hashlib.sha1("\n".join(texts).encode()).hexdigest()[:16]
    path = os.path.join(cache, f"{key}.safetensors")
    if os.path.exists(path):
        return load_file(path)["embeddings"]
    cfg = CalibrationConfig()
    encoder = resolve_backbone(cfg.encoder or cfg.backbone)
    rows = embed_texts(encoder, load_tokenizer(encoder), texts, cfg.max_length, torch.device("cpu"))
    save_file({"embeddings": rows.contiguous()}, path)
    return rows


def row(data: str, cache: str, seed: int = 0) -> dict:
    splits = [read_split(os.path.join(data, f"{s}.csv")) for s in ("train", "valid")]
    texts = [t for s in splits for t in s["texts"]]
    noisy = [n for s in splits for n in s["noisy"]]
    gold = [g for s in splits for g in s["gold"]]
    classes = sorted({n for n in noisy if n is not None})
    x = embeddings(texts, cache)
    keep = np.array([n is not None for n in noisy])
    given = np.array([classes.index(n) if n is not None else -1 for n in noisy])[keep]
    true = float(np.mean([n != g for n, g, k in zip(noisy, gold, keep, strict=True) if k]))
    probs = probe.out_of_fold_probs(x[keep], torch.from_numpy(given), len(classes), seed).numpy()
    right = probs[np.arange(len(given)), given]
    return {
        "set": os.path.basename(os.path.normpath(data)),
        "classes": len(classes),
        "true": round(true, 4),
        "disagree": round(float((probs.argmax(1) != given).mean()), 4),
        "expected": round(float(1 - right.mean()), 4),
        "confident": round(confident_share(probs, given), 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="+")
    parser.add_argument("--cache", required=True)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    rows = []
    print(f"{'set':<40}{'true':>7}{'disagree':>10}{'expected':>10}{'confident':>10}")
    for data in args.data:
        r = row(data, args.cache)
        rows.append(r)
        print(
            f"{r['set']:<40}{r['true']:>7.3f}{r['disagree']:>10.3f}{r['expected']:>10.3f}{r['confident']:>10.3f}"
        )
    for key in ("disagree", "expected", "confident"):
        print(f"mean absolute error, {key}: {np.mean([abs(r[key] - r['true']) for r in rows]):.3f}")
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
