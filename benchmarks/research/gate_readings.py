"""The noise gate's reading beside what validation gold says of its choice (design data for the close band).

    python -m benchmarks.research.gate_readings benchmarks/results/issue13*/**/*.json

Per benchmark run without trusted rows: the wrong-label share the gate read (the reason's "the run
estimates N% ..."), the measured validation share, and the measured *validation* accuracy of the refined
labels minus the plain classifier's and of the distilled model minus the plain model's (validation gold,
read by the benchmark for the estimates table). Test columns are not read. Sorted by the reading.
"""

from __future__ import annotations

import sys

from benchmarks.acceptance import run_rows


def rows(paths: list[str]) -> list[dict]:
    out = []
    for path in paths:
        if path.endswith("summary.json"):
            continue
        for run in run_rows(path):  # the acceptance summary's reading of each run, gate share included
            valid = {name: pair[1] for name, pair in run["estimated_vs_measured_valid"].items()}
            if run["trusted"] or not valid:
                continue
            out.append(
                {
                    "run": run["set"],
                    "reading": run["wrong_share"]["run_estimate"],
                    "true_valid": round(run["wrong_share"]["measured_valid"], 3),
                    "kept": run["kept"].split("/")[0],
                    "refined_minus_plain_valid": round(valid["refined"] - valid["plain"], 3),
                    "served_minus_plain_model_valid": round(valid["served"] - valid["plain_model"], 3),
                }
            )
    return sorted(out, key=lambda r: r["reading"])


def main(argv: list[str] | None = None) -> int:
    found = rows(argv if argv is not None else sys.argv[1:])
    print(f"{'reading':>8} {'true':>6}  {'run':<48}{'kept':<9}{'refined-plain':>14}{'served-plain':>13}")
    for r in found:
        print(
            f"{r['reading']:>8.2f} {r['true_valid']:>6.3f}  {r['run']:<48}{r['kept']:<9}"
            f"{r['refined_minus_plain_valid']:>+14.3f}{r['served_minus_plain_model_valid']:>+13.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
