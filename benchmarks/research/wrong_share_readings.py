"""Tables of the thirty-fourth round (docs/method.md): the wrong-label share as each reading sees it, and the
refined labels under T's diagonal prior, from the JSON lines of `noise_model_strength` and
`conditioned_reference`.

    python -m benchmarks.research.wrong_share_readings noise_model_strength-valid.jsonl \
        conditioned_reference-valid.jsonl

Reads nothing but those files (train and validation gold were read by the scripts that wrote them).
"""

from __future__ import annotations

import json
import sys

import numpy as np


def _rows(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _name(row: dict) -> str:
    return f"{row['data'].replace('semeval-mixtral-fewshot', 'mixtral')} ({row['seed']})"


def readings_table(strength: list[dict], conditioned: list[dict]) -> str:
    """Per run: the truth and every reading of the wrong-label share, and each reading's mean error."""
    cond = {(r["data"], r["seed"]): r for r in conditioned}
    head = "| run | truth (train) | run's estimate | noise model | conditioned temperature | truth (valid) | noise model, validation rows |"
    lines = [head, "|" + "---|" * 7]
    errors: dict[str, list[float]] = {"run": [], "nm": [], "cond": [], "nm_valid": []}
    for r in strength:
        if r["variant"] != "pc20":
            continue
        w, c = r["wrong_share"], cond.get((r["data"], r["seed"]))
        cells = [w["train_gold"], w["gate_reading"], w["noise_model_prior"]]
        cells.append(c["gate_reading"]["conditioned"] if c else float("nan"))
        cells += [w["valid_gold"], w["noise_model_valid"]]
        lines.append(f"| {_name(r)} | " + " | ".join(f"{x:.3f}" for x in cells) + " |")
        errors["run"].append(abs(cells[1] - cells[0]))
        errors["nm"].append(abs(cells[2] - cells[0]))
        errors["cond"].append(abs(cells[3] - cells[0]))
        errors["nm_valid"].append(abs(cells[5] - cells[4]))
    means = {k: float(np.nanmean(v)) * 100 for k, v in errors.items()}
    lines.append(
        f"| mean error (points) | | {means['run']:.1f} | {means['nm']:.1f} | {means['cond']:.1f} | | "
        f"{means['nm_valid']:.1f} |"
    )
    return "\n".join(lines)


def diagonal_prior_table(strength: list[dict]) -> str:
    """Per run and diagonal prior: the refined labels against gold and the gate's reading."""
    head = "| run | T's diagonal prior | training labels | validation rows, with label | validation rows, unlabelled | gate reading |"
    lines = [head, "|" + "---|" * 6]
    for r in strength:
        cells = [r["refined_train"], r["refined_valid"], r["refined_valid_unlabelled"]]
        text = " | ".join(f"{a:.3f} / {f:.3f}" for a, f in cells)
        lines.append(f"| {_name(r)} | {r['variant']} | {text} | {r['wrong_share']['gate_reading']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    strength, conditioned = _rows(args[0]), _rows(args[1])
    print(readings_table(strength, conditioned))
    print()
    print(diagonal_prior_table(strength))
    return 0


if __name__ == "__main__":
    sys.exit(main())
