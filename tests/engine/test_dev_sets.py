"""benchmarks.dev_sets: the noise-level variants and the two-class variant of a shared set."""

from __future__ import annotations

import csv

import pytest

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


def test_grouped_merges_the_classes_by_their_grouping_and_keeps_the_labellers_errors(tmp_path):
    src, out = tmp_path / "rel", tmp_path / "out"
    src.mkdir()
    # a: same group, now right; b: across groups, still wrong; c: missing stays missing; d: right as it was
    rows = [
        {"text": "a", "noisy_label": "Cause-Effect", "gold_label": "Product-Producer"},
        {"text": "b", "noisy_label": "Member-Collection", "gold_label": "Entity-Origin"},
        {"text": "c", "noisy_label": "", "gold_label": "Component-Whole"},
        {"text": "d", "noisy_label": "Message-Topic", "gold_label": "Message-Topic"},
    ]
    for split in ("train", "valid", "test"):
        _write(src / f"{split}.csv", rows)
    assert dev_sets.main(["--source", str(src), "--out", str(out), "--grouped", "--noise"]) == 0
    for split in ("train", "valid", "test"):
        got = dev_sets.read_rows(str(out / "rel-grouped" / f"{split}.csv"))
        assert [r["gold_label"] for r in got] == [
            "cause-agency",
            "movement-topic",
            "part-member",
            "movement-topic",
        ]
        assert [r["noisy_label"] for r in got] == ["cause-agency", "part-member", "", "movement-topic"]
    assert not (out / "rel-binary").exists() and not (out / "rel-noise40").exists()


def test_grouped_refuses_a_set_no_grouping_covers(tmp_path, capsys):
    src, out = _source(tmp_path), tmp_path / "out"
    with pytest.raises(SystemExit) as stop:
        dev_sets.main(["--source", str(src), "--out", str(out), "--grouped", "--noise"])
    assert (
        stop.value.code == 2
        and "no grouping in GROUPINGS covers the classes of toy" in capsys.readouterr().err
    )
    assert not (out / "toy-grouped").exists()
