"""The noise gate's reading beside what validation gold says of its choice (design data for the close band).

    python -m benchmarks.research.gate_readings benchmarks/results/issue13*/**/*.json

Per benchmark run without trusted rows: the wrong-label share the gate read (the reason's "the run
estimates N% ..."), the measured validation share, and the measured *validation* accuracy of the refined
labels minus the plain classifier's and of the distilled model minus the plain model's (validation gold,
read by the benchmark for the estimates table). Beside each measured difference, the run's own gold-free
estimate of it (the estimates table's points: the refined posteriors' expected accuracy of each
candidate). Test columns are not read. Sorted by the reading.

Then a second way through the gate (research in the twenty-fifth round, adopted at 0.10 in the
thirty-ninth: `selection.METHOD_MIN_EXPECTED_GAIN`): a run the share gate closes also delivers the method's
output where its estimated gain over plain is at least a threshold. Per threshold, the runs it would open
and what validation gold says of them (runs of code with the rule read as opened already at 0.10). And
the floor on training rows per class (thirty-fifth round, `selection.METHOD_MIN_ROWS_PER_CLASS`): per
floor, the runs the gate opened that it would close, and what validation gold says of the method there
(runs made with `--limit-train N` are named `<set>-trainN-seedS.json`; the rows per class are the run's
training rows over its classes).

    python -m benchmarks.research.gate_readings <run JSON ...> --dumps <dump .npz ...>

With dumps (`benchmarks.quality --dump-arrays`; each named <set>/seed<N>.npz), also each dumped run's
validation accuracy and macro-F1 of the refined labels minus the plain classifier's and of the distilled
model minus the plain model's: the JSON carries validation accuracy only, and the issue's bar is on both.
"""

from __future__ import annotations

import json
import os
import sys

from benchmarks.acceptance import run_rows
from benchmarks.research.script_io import validation_scores


def rows(paths: list[str]) -> list[dict]:
    out = []
    for path in paths:
        if path.endswith("summary.json"):
            continue
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        per_class = doc["n"]["train"] / len(doc["classes"])
        for run in run_rows(path):  # the acceptance summary's reading of each run, gate share included
            pairs = run["estimated_vs_measured_valid"]
            valid = {name: pair[1] for name, pair in pairs.items()}
            estimated = {name: pair[0] for name, pair in pairs.items()}
            if run["trusted"] or not valid:
                continue
            out.append(
                {
                    "run": run["set"],
                    "rows_per_class": round(per_class, 1),
                    "reading": run["wrong_share"]["run_estimate"],
                    "true_valid": round(run["wrong_share"]["measured_valid"], 3),
                    "kept": run["kept"].split("/")[0],
                    "refined_minus_plain_valid": round(valid["refined"] - valid["plain"], 3),
                    "served_minus_plain_model_valid": round(valid["served"] - valid["plain_model"], 3),
                    "refined_minus_plain_estimated": round(estimated["refined"] - estimated["plain"], 3),
                    "served_minus_plain_model_estimated": round(
                        estimated["served"] - estimated["plain_model"], 3
                    ),
                }
            )
    return sorted(out, key=lambda r: r["reading"])


THRESHOLDS = (0.06, 0.08, 0.09, 0.10, 0.12, 0.15)
HARM = -0.01  # a validation difference below this counts as a harm (the one point)


def second_path(found: list[dict]) -> list[str]:
    """Per threshold: the closed runs whose estimated gain (labels) reaches it, with their validation gains."""
    closed = [r for r in found if r["kept"] == "plain"]
    lines = []
    for threshold in THRESHOLDS:
        opened = [r for r in closed if r["refined_minus_plain_estimated"] >= threshold]
        gains = [r["refined_minus_plain_valid"] for r in opened] + [
            r["served_minus_plain_model_valid"] for r in opened
        ]
        harms = sum(g < HARM for g in gains)
        mean = sum(gains) / len(gains) if gains else 0.0
        names = ", ".join(f"{r['run']} ({r['refined_minus_plain_valid']:+.3f})" for r in opened) or "-"
        lines.append(
            f">= {threshold:.2f}: opens {len(opened)} of {len(closed)} closed runs, mean validation gain "
            f"(labels and model) {mean:+.3f}, {harms} of {len(gains)} below {HARM:+.2f}: {names}"
        )
    return lines


FLOORS = (75, 100, 125, 150, 175)


def size_floor(found: list[dict]) -> list[str]:
    """Per floor on training rows per class: the runs the gate opened below it, which the floor would
    close, with their validation differences (labels; model)."""
    opened = [r for r in found if r["kept"] != "plain"]
    lines = []
    for floor in FLOORS:
        closed = [r for r in opened if r["rows_per_class"] < floor]
        gains = [r["refined_minus_plain_valid"] for r in closed] + [
            r["served_minus_plain_model_valid"] for r in closed
        ]
        names = (
            ", ".join(
                f"{r['run']} ({r['refined_minus_plain_valid']:+.3f}; {r['served_minus_plain_model_valid']:+.3f})"
                for r in closed
            )
            or "-"
        )
        lines.append(
            f"< {floor}: closes {len(closed)} of {len(opened)} opened runs, {sum(g < HARM for g in gains)} of "
            f"{len(gains)} differences below {HARM:+.2f}, {sum(g > -HARM for g in gains)} above {-HARM:+.2f}: {names}"
        )
    return lines


def dump_gains(path: str) -> str:
    """One dump's validation differences, accuracy and macro-F1 (labelled rows with a gold label)."""
    scores = validation_scores(path, ("refined", "plain", "served", "plain_model"))
    run = f"{os.path.basename(os.path.dirname(path))}-{os.path.basename(path)[:-4]}"
    parts = []
    for method, plain in (("refined", "plain"), ("served", "plain_model")):
        (acc, f1), (acc0, f10) = scores[method], scores[plain]
        parts.append(f"{method}-{plain} accuracy {acc - acc0:+.3f} macro-F1 {f1 - f10:+.3f}")
    return f"{run:<48}" + "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    argv = list(argv if argv is not None else sys.argv[1:])
    cut = argv.index("--dumps") if "--dumps" in argv else len(argv)
    found, dumps = rows(argv[:cut]), argv[cut + 1 :]
    print(
        f"{'reading':>8} {'true':>6}  {'run':<48}{'rows/class':>10} {'kept':<9}{'refined-plain':>14}"
        f"{'(estimated)':>12}{'served-plain':>13}{'(estimated)':>12}"
    )
    for r in found:
        print(
            f"{r['reading']:>8.2f} {r['true_valid']:>6.3f}  {r['run']:<48}{r['rows_per_class']:>10.0f} {r['kept']:<9}"
            f"{r['refined_minus_plain_valid']:>+14.3f}{r['refined_minus_plain_estimated']:>+12.3f}"
            f"{r['served_minus_plain_model_valid']:>+13.3f}{r['served_minus_plain_model_estimated']:>+12.3f}"
        )
    print("\nthe gate closed; opened also where the estimated gain of the refined labels reaches:")
    for line in second_path(found):
        print(line)
    print("\nthe gate opened; closed by a floor on training rows per class:")
    for line in size_floor(found):
        print(line)
    if dumps:
        print("\nvalidation differences from the dumps (gold of the validation rows):")
        for path in dumps:
            print(dump_gains(path))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
