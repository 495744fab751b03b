"""The benchmark with another class-floor share (design runs for `stages.posterior.floor_share`).

    python -m benchmarks.research.floor_share_run RULE <benchmarks.quality arguments>

RULE: one of `class_floor_quota.RULES` ("lesser" is the engine's). Stage 1, the plain fine-tune and the
embeddings come from --cache-dir when there; everything after is recomputed with the rule in place. Read the validation figures (`measured_valid`) for a decision; test is scored once.
"""

from __future__ import annotations

import sys

from benchmarks import quality
from benchmarks.research.class_floor_quota import RULES
from benchmarks.research.script_io import record_variant
from sidyp_engine.stages import posterior


def main(argv: list[str]) -> int:
    rule, args = argv[0], argv[1:]
    posterior.floor_share = RULES[rule]
    code = quality.main(args)
    record_variant(args, {"floor_share": rule, "runner": "python -m benchmarks.research.floor_share_run"})
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
