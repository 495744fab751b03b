"""The benchmark with the training rows read by refiners fitted without them (design runs for
`stages.refine.REFINER_FOLDS`).

    python -m benchmarks.research.crossfit_refiner_run FOLDS <benchmarks.quality arguments>

Stage 1, the plain fine-tune and the embeddings come from --cache-dir when there; everything after is
recomputed with FOLDS in place. Compare with `benchmarks.research.crossfit_refiner` on the dumps (train
and validation gold); test is scored once.
"""

from __future__ import annotations

import json
import sys

from benchmarks import quality
from sidyp_engine.stages import refine


def main(argv: list[str]) -> int:
    folds, args = int(argv[0]), argv[1:]
    refine.REFINER_FOLDS = folds
    code = quality.main(args)
    if "--out" in args:  # the JSON's `command` is the benchmark's own: say which variant was in place
        path = args[args.index("--out") + 1]
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        doc["variant"] = {
            "refiner_folds": folds,
            "runner": "python -m benchmarks.research.crossfit_refiner_run",
        }
        with open(path, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
