"""Wall-clock checks that do not belong in the test suite (they fail on a loaded CI box, not on a bug).

    python -m benchmarks.timing_checks [--repeats 3]

1. ServedClassifier.load of a saved model (tiny random backbone, as the tests use): target < 2 s, the
   figure an API answering its first predict after a restart must meet. Best of `--repeats` loads.
Prints each measurement with its target and exits 1 if one misses it.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TOPICS = {
    "sport": ["goal", "match", "team", "score", "coach", "league"],
    "tech": ["laptop", "software", "chip", "server", "code", "cloud"],
    "food": ["pasta", "recipe", "bake", "spice", "dinner", "sauce"],
}


def _texts(n_per_class: int, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    texts, labels = [], []
    for label, words in TOPICS.items():
        for _ in range(n_per_class):
            texts.append(" ".join(rng.choice(words) for _ in range(8)))
            labels.append(label)
    return texts, labels


def _soft(labels: list[str], classes: list[str], sharp: float = 0.8) -> np.ndarray:
    out = np.full((len(labels), len(classes)), (1 - sharp) / (len(classes) - 1), dtype=np.float32)
    for i, label in enumerate(labels):
        out[i, classes.index(label)] = sharp
    return out


def served_load_seconds(work: Path, repeats: int) -> float:
    import torch

    from sidyp_engine.model import TextClassifier
    from sidyp_engine.served import ServedClassifier
    from sidyp_engine.synthetic import make_tiny_backbone
    from sidyp_engine.types import CalibrationConfig

    backbone = make_tiny_backbone(work / "tiny-bert")
    classes = list(TOPICS)
    texts, labels = _texts(16, seed=1)
    vtexts, vlabels = _texts(5, seed=2)
    torch.manual_seed(0)
    cfg = CalibrationConfig(backbone=backbone, batch_size=8, learning_rate=1e-3, device="cpu", seed=3)
    init = TextClassifier(backbone, len(classes))
    model = ServedClassifier.distill(
        init, backbone, classes, texts, _soft(labels, classes), vtexts, _soft(vlabels, classes), cfg
    )
    model.save(work / "model")
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        ServedClassifier.load(work / "model")
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        checks = [("ServedClassifier.load", served_load_seconds(Path(tmp), args.repeats), 2.0)]
    failed = 0
    for name, seconds, target in checks:
        ok = seconds < target
        failed += not ok
        print(f"{name:28s} {seconds:7.3f} s  (target < {target:.1f} s)  {'ok' if ok else 'MISSED'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
