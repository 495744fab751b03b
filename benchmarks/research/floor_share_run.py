"""The benchmark with another class-floor share (design runs for `stages.posterior.floor_share`).

    python -m benchmarks.research.floor_share_run RULE <benchmarks.quality arguments>

RULE: one of `class_floor_quota.RULES` ("lesser" is the engine's). Stage 1, the plain fine-tune and the
embeddings come from --cache-dir when there; everything after is recomputed with the rule in place. Read the validation figures (`measured_valid`) for a decision; test is scored once.
"""

from __future__ import annotations

import json
import sys

from benchmarks import quality
from benchmarks.research.class_floor_quota import RULES
from sidyp_engine.stages import posterior


def main(argv: list[str]) -> int:
    rule, args = argv[0], argv[1:]
    posterior.floor_share = RULES[rule]
    code = quality.main(args)
    if "--out" in args:  # the JSON's `command` is the benchmark's own: say which rule was in place
        path = args[args.index("--out") + 1]
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        doc["variant"] = {"floor_share": rule, "runner": "python -m benchmarks.research.floor_share_run"}
        with open(path, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
