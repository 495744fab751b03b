"""The benchmark with the served model distilled onto other targets than the refined posteriors as they are
(design runs for `stages.serve.distill_served`).

    python -m benchmarks.research.served_targets_run RULE <benchmarks.quality arguments>

RULE: `soft` (the engine's: the delivered refined posteriors of the training rows), `hard` (their argmax,
the delivered refined labels, one-hot) or `sharpN` (the posteriors raised to the power N, renormalised).
The served model's temperature is fitted as before. Stage 1, the plain fine-tune and the embeddings come
from --cache-dir when there; everything after is recomputed. Read validation figures for a decision; test
is scored once.
"""

from __future__ import annotations

import sys

import torch

from benchmarks import quality
from benchmarks.research.script_io import record_variant
from sidyp_engine.served import ServedClassifier
from sidyp_engine.stages import serve


def targets_rule(rule: str):
    def transform(p: torch.Tensor) -> torch.Tensor:
        p = torch.as_tensor(p, dtype=torch.float32)
        if rule == "soft":
            return p
        if rule == "hard":
            return torch.nn.functional.one_hot(p.argmax(1), p.shape[1]).float()
        if rule.startswith("sharp"):
            q = p.clamp_min(1e-12) ** float(rule[len("sharp") :])
            return q / q.sum(1, keepdim=True)
        raise SystemExit(f"unknown rule {rule!r}")

    return transform


class _Distil:
    """ServedClassifier with `distill` reading the training targets through the rule."""

    def __init__(self, transform):
        self.transform = transform

    def distill(self, init_model, backbone, classes, texts, soft_targets, *args, **kwargs):
        return ServedClassifier.distill(
            init_model, backbone, classes, texts, self.transform(soft_targets), *args, **kwargs
        )


def main(argv: list[str]) -> int:
    rule, args = argv[0], argv[1:]
    serve.ServedClassifier = _Distil(targets_rule(rule))
    code = quality.main(args)
    record_variant(
        args, {"served_targets": rule, "runner": "python -m benchmarks.research.served_targets_run"}
    )
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
