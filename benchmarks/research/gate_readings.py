"""The noise gate's reading beside what validation gold says of its choice (design data for the close band).

    python -m benchmarks.research.gate_readings benchmarks/results/issue13*/**/*.json

Per benchmark run without trusted rows: the wrong-label share the gate read (the reason's "the run
estimates N% ..."), the measured validation share, and the measured *validation* accuracy of the refined
labels minus the plain classifier's and of the distilled model minus the plain model's (validation gold,
read by the benchmark for the estimates table). Test columns are not read. Sorted by the reading.
"""

from __future__ import annotations

import json
import os
import re
import sys


def rows(paths: list[str]) -> list[dict]:
    out = []
    for path in paths:
        if path.endswith("summary.json"):
            continue
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        for run in doc.get("runs", []):
            est = run.get("estimates") or {}
            if run.get("trusted_rows") or "rows" not in est:
                continue
            reading = re.search(r"the run estimates (\d+)% of the labels wrong", est.get("reason", ""))
            valid = {name: r.get("measured_valid") for name, r in est["rows"].items()}
            out.append(
                {
                    "run": f"{os.path.basename(path)[:-5]}",
                    "reading": int(reading.group(1)) / 100 if reading else run["noise_share_estimate"],
                    "true_valid": round(est["wrong_label_share"]["measured_valid"], 3),
                    "kept": est["kept"],
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
