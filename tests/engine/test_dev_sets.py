"""benchmarks.dev_sets: the noise-level variants and the two-class variant of a shared set."""

from __future__ import annotations

import csv

from benchmarks import dev_sets


def _write(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "noisy_label", "gold_label"])
        writer.writeheader()
        writer.writerows(rows)


def _source(tmp_path):
    src = tmp_path / "toy"
    src.mkdir()
    train = [
        {"text": "a", "noisy_label": "x", "gold_label": "x"},
        {"text": "b", "noisy_label": "y", "gold_label": "x"},
        {"text": "c", "noisy_label": "", "gold_label": "x"},
        {"text": "d", "noisy_label": "z", "gold_label": "y"},
        {"text": "e", "noisy_label": "y", "gold_label": "z"},
    ]
    for split in ("train", "valid", "test"):
        _write(src / f"{split}.csv", train)
    return src


def test_binary_is_the_most_frequent_gold_class_against_the_rest(tmp_path):
    src, out = _source(tmp_path), tmp_path / "out"
    assert dev_sets.main(["--source", str(src), "--out", str(out), "--binary", "--noise"]) == 0
    rows = dev_sets.read_rows(str(out / "toy-binary" / "train.csv"))
    assert [r["gold_label"] for r in rows] == ["x", "x", "x", "other", "other"]
    # the labeller's own errors stay; a confusion between two other classes (z given for y) is no error now
    assert [r["noisy_label"] for r in rows] == ["x", "other", "", "other", "other"]
    assert not (out / "toy-noise40").exists()  # no noise level asked for


def test_a_noise_level_corrects_wrong_labels_from_gold_down_to_the_level(tmp_path):
    src, out = _source(tmp_path), tmp_path / "out"
    dev_sets.main(["--source", str(src), "--out", str(out), "--noise", "0.2"])
    rows = dev_sets.read_rows(str(out / "toy-noise20" / "train.csv"))
    assert sum(r["noisy_label"] != r["gold_label"] for r in rows) == 1  # 4 of 5 were wrong or missing
    assert [r["text"] for r in rows] == ["a", "b", "c", "d", "e"]
