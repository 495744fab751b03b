"""Would mixing the plain classifier into the method's outputs keep the minority classes? (research)

    python -m benchmarks.research.plain_mixture <dump.npz> [<dump.npz> ...]

Reads `--dump-arrays` files: the validation texts' refined posteriors read without their label (R, as an
unseen text's), the served and plain models' validation logits (S, P at temperature 1), and the validation
gold, which only scores. For each weight w, w * R + (1 - w) * P and w * S + (1 - w) * P: accuracy / macro-F1
on the validation gold. Test is not read.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch

from benchmarks.research.readout import scores

WEIGHTS = (1.0, 0.8, 0.7, 0.6, 0.5)


def softmax(logits: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.from_numpy(logits).double(), dim=-1).numpy()


def argmax_scores(probs: np.ndarray, gold: np.ndarray) -> str:
    return scores(probs.argmax(1), gold, probs.shape[1])


def main(paths: list[str]) -> int:
    header = ["run"] + [f"{name} w={w}" for name in ("R", "S") for w in WEIGHTS] + ["P"]
    print(" | ".join(header))
    for path in paths:
        d = np.load(path)
        gold = d["valid_gold"]
        refined = d["valid_refined_unlabelled"]
        served, plain = softmax(d["valid_logits_served"]), softmax(d["valid_logits_plain_model"])
        cells = [
            argmax_scores(w * base + (1 - w) * plain, gold) for base in (refined, served) for w in WEIGHTS
        ]
        name = f"{os.path.basename(os.path.dirname(path))}/{os.path.basename(path)}"
        print(" | ".join([name, *cells, argmax_scores(plain, gold)]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
