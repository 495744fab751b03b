"""The refined posterior of unseen texts pooled with the plain fine-tune's (design data; not adopted).

    python -m benchmarks.research.pooled_readout /work/dumps/*/seed*.npz

At 40 % noise the refined posterior of the validation texts (read as unseen, the way test texts are) loses
macro-F1 that plain fine-tuning keeps. Each rule here reads argmax(a log p_refined + (1 - a) log p_other)
for the validation texts, p_other being the plain fine-tune's, the stage-1 ensemble's held-out P(ỹ | x)
or the linear probe's; then the served (distilled) model pooled with the plain one the same way.
Accuracy / macro-F1 against the validation gold (design data; test is not read).
"""

from __future__ import annotations

import sys

import numpy as np

from benchmarks.research.script_io import softmax
from sidyp_engine.metrics import accuracy, macro_f1

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def pooled(first: np.ndarray, second: np.ndarray, gold: np.ndarray) -> str:
    c = first.shape[1]
    out = []
    for a in WEIGHTS:
        pred = (a * np.log(np.clip(first, 1e-9, 1)) + (1 - a) * np.log(np.clip(second, 1e-9, 1))).argmax(1)
        out.append(f"a={a}: {accuracy(gold, pred):.3f}/{macro_f1(gold, pred, c):.3f}")
    return " | ".join(out)


def main(paths: list[str]) -> int:
    print("a = weight of the first model; a=1 the first alone, a=0 the second alone")
    for path in paths:
        d = np.load(path)
        gold, refined = d["valid_gold"], d["valid_refined_unlabelled"]
        print(f"\n{path}")
        others = {
            "plain fine-tune": softmax(d["valid_logits_plain_model"]),
            "stage-1 ensemble": d["valid_noisy_posteriors"],
            "linear probe": softmax(d["valid_logits_probe"]),
        }
        for name, probs in others.items():
            print(f"  refined x {name:<17} {pooled(refined, probs, gold)}")
        served = softmax(d["valid_logits_served"])
        print(f"  served x plain fine-tune    {pooled(served, others['plain fine-tune'], gold)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
