"""Development sets at chosen noise levels: the shared texts with the labeller's real errors partly corrected.

    python -m benchmarks.dev_sets --source ../shared/data/semeval-mixtral-fewshot --out /tmp/sidyp-dev \
        --noise 0.40 0.20 0.05

For each level, in train and valid, a random subset of the wrong (or missing) noisy labels is replaced by
the gold label until the share of rows whose noisy label differs from gold is the level (a level above the
source's own noise leaves the split unchanged). The errors that remain are the labeller's own, so the noise
keeps its shape (which classes it confuses, which texts it gets wrong); only its amount changes. test.csv is
copied as it is: test gold only scores. Written outside the repository (the data must not be copied in).

`--binary` writes one more set, `<name>-binary`: the training split's most frequent gold class against the
rest (`other`), in every split, noisy and gold alike. The labeller's errors stay its own (a row it gave
another class, or the class wrongly, is wrong here too, and a confusion between two other classes
disappears): a two-class task with an accurate labeller, the case the held-out sets have and these do not.

`--grouped` writes `<name>-grouped`: the classes merged into the few groups `GROUPINGS` names for the
source's class set, noisy and gold alike, in every split. A row's label is wrong there when the labeller's
class and the gold class fall in different groups, so the errors stay the labeller's own and a confusion
within a group disappears: fewer classes, another noise level and another shape of class imbalance, made
after every default was chosen (a check on data no default was read on, docs/method.md).
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys

import numpy as np


def corrected(rows: list[dict[str, str]], level: float, seed: int) -> tuple[list[dict[str, str]], float]:
    """Rows with wrong labels corrected from gold until the wrong share is `level`; (rows, new share)."""
    wrong = [i for i, r in enumerate(rows) if r["noisy_label"] != r["gold_label"]]
    keep_wrong = int(round(level * len(rows)))
    rng = np.random.default_rng(seed)
    fix = rng.permutation(wrong)[: max(0, len(wrong) - keep_wrong)]
    out = [dict(r) for r in rows]
    for i in fix:
        out[int(i)]["noisy_label"] = out[int(i)]["gold_label"]
    share = sum(r["noisy_label"] != r["gold_label"] for r in out) / max(1, len(out))
    return out, share


def relabelled(rows: list[dict[str, str]], mapped) -> list[dict[str, str]]:
    """Noisy and gold labels passed through `mapped`; a missing noisy label stays missing."""
    return [
        r
        | {
            "noisy_label": mapped(r["noisy_label"]) if r["noisy_label"] else "",
            "gold_label": mapped(r["gold_label"]),
        }
        for r in rows
    ]


def one_vs_rest(rows: list[dict[str, str]], positive: str) -> list[dict[str, str]]:
    """Labels mapped to `positive` / "other"; a missing noisy label stays missing."""
    return relabelled(rows, lambda label: label if label == positive else "other")


# Semantic groups of the SemEval-2010 task 8 relations, fixed by what the relations mean before any run read
# a grouped set: cause and agency (who or what brings something about), parts and membership (what is inside
# or part of what), and movement and topic (where something goes or comes from, what a message is about).
GROUPINGS = {
    "semeval-relations": {
        "Cause-Effect": "cause-agency",
        "Instrument-Agency": "cause-agency",
        "Product-Producer": "cause-agency",
        "Component-Whole": "part-member",
        "Member-Collection": "part-member",
        "Content-Container": "part-member",
        "Entity-Destination": "movement-topic",
        "Entity-Origin": "movement-topic",
        "Message-Topic": "movement-topic",
    },
}


def grouping_for(rows: list[dict[str, str]]) -> dict[str, str] | None:
    """The grouping that covers every gold class of `rows`, or None."""
    golds = {r["gold_label"] for r in rows}
    return next((g for g in GROUPINGS.values() if golds <= set(g)), None)


def grouped(rows: list[dict[str, str]], groups: dict[str, str]) -> list[dict[str, str]]:
    """Labels mapped to their group; a missing noisy label stays missing, one outside the grouping too."""
    return relabelled(rows, lambda label: groups.get(label, ""))


def noise_name(name: str, level: float) -> str:
    """The folder name of `name`'s set at noise `level` (0.05 -> `<name>-noise05`)."""
    return f"{name}-noise{round(level * 100):02d}"


def read_rows(path: str) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write_rows(path: str, rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "noisy_label", "gold_label"])
        writer.writeheader()
        writer.writerows({k: r[k] for k in ("text", "noisy_label", "gold_label")} for r in rows)


def _write_variant(out: str, name: str, splits: dict[str, list[dict[str, str]]], relabel) -> float:
    """Every split relabelled into `out/name`; the training split's wrong share after relabelling."""
    target = os.path.join(out, name)
    os.makedirs(target, exist_ok=True)
    written = {split: relabel(rows) for split, rows in splits.items()}
    for split, rows in written.items():
        write_rows(os.path.join(target, f"{split}.csv"), rows)
    train = written["train"]
    return sum(r["noisy_label"] != r["gold_label"] for r in train) / max(1, len(train))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="dir with train.csv, valid.csv, test.csv")
    parser.add_argument("--out", required=True, help="parent dir of the sets written (outside the repo)")
    parser.add_argument("--noise", type=float, nargs="*", default=[0.40, 0.20, 0.05])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--binary", action="store_true", help="also the most frequent class against the rest")
    parser.add_argument("--grouped", action="store_true", help="also the classes merged by GROUPINGS")
    args = parser.parse_args(argv)
    name = os.path.basename(os.path.normpath(args.source))
    splits = {s: read_rows(os.path.join(args.source, f"{s}.csv")) for s in ("train", "valid", "test")}
    if args.grouped:
        groups = grouping_for(splits["train"])
        if groups is None:
            parser.error(f"--grouped: no grouping in GROUPINGS covers the classes of {name}")
        wrong = _write_variant(args.out, f"{name}-grouped", splits, lambda rows: grouped(rows, groups))
        print(f"{args.out}/{name}-grouped: {len(set(groups.values()))} groups, wrong share train {wrong:.3f}")
    if args.binary:
        golds = [r["gold_label"] for r in splits["train"]]
        positive = max(sorted(set(golds)), key=golds.count)
        wrong = _write_variant(args.out, f"{name}-binary", splits, lambda rows: one_vs_rest(rows, positive))
        print(f"{args.out}/{name}-binary: {positive} against the rest, wrong share train {wrong:.3f}")
    for level in args.noise:
        target = os.path.join(args.out, noise_name(name, level))
        os.makedirs(target, exist_ok=True)
        shares = {}
        for offset, split in enumerate(("train", "valid")):
            rows, shares[split] = corrected(
                read_rows(os.path.join(args.source, f"{split}.csv")), level, args.seed + offset
            )
            write_rows(os.path.join(target, f"{split}.csv"), rows)
        shutil.copyfile(os.path.join(args.source, "test.csv"), os.path.join(target, "test.csv"))
        print(f"{target}: wrong share train {shares['train']:.3f}, valid {shares['valid']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
