"""`sidyp calibrate` / `sidyp predict` end to end on a toy CSV with the tiny backbone, and bad inputs."""

from __future__ import annotations

import csv
import json
import os

import pytest

from sidyp_engine.cli import main, summary_text
from tests.conftest import toy_dataset, write_csv

FAST = [
    "--epochs",
    "1",
    "--branches",
    "2",
    "--diffusion-epochs",
    "1",
    "--batch-size",
    "16",
    "--device",
    "cpu",
]


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory, tiny_backbone):
    root = tmp_path_factory.mktemp("cli")
    texts, noisy, gold, classes = toy_dataset(n_per_class=12, noise=0.3, seed=0)
    noisy[5] = None  # a missing label must be kept unknown, not dropped or guessed
    train = write_csv(root / "train.csv", texts, noisy)
    etexts, enoisy, egold, _ = toy_dataset(n_per_class=4, noise=0.3, seed=9)
    evalf = write_csv(root / "test.csv", etexts, enoisy, egold)
    out = root / "out"
    code = main(
        [
            "calibrate",
            "--train",
            str(train),
            "--eval",
            str(evalf),
            "--out",
            str(out),
            "--backbone",
            tiny_backbone,
        ]
        + FAST
        + ["--quiet"]
    )
    assert code == 0
    return out, texts, noisy, classes, etexts


@pytest.mark.slow  # a whole `sidyp calibrate` run: in `make test`, not `make test-fast`
def test_calibrate_writes_model_labels_and_report(calibrated, capsys):
    out, texts, noisy, classes, etexts = calibrated
    assert os.path.isfile(out / "model" / "model.safetensors")
    with open(out / "labels.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(texts)
    assert list(rows[0])[:7] == [
        "index",
        "text",
        "given_label",
        "suggested_label",
        "label_quality",
        "is_label_issue",
        "is_validation",
    ]
    assert [r["text"] for r in rows] == texts
    assert rows[5]["given_label"] == "" and float(rows[5]["label_quality"]) == 0.0
    for r in rows:
        probs = [float(r[f"p_{c}"]) for c in sorted(classes)]
        assert abs(sum(probs) - 1) < 1e-3
        assert r["suggested_label"] == sorted(classes)[probs.index(max(probs))]
        assert 0.0 <= float(r["label_quality"]) <= 1.0
    # the holdout (10% of train, no --valid given) is marked
    assert any(r["is_validation"] == "True" for r in rows)
    report = json.loads((out / "report.json").read_text())
    assert report["version"] == 2 and report["labels"] == sorted(classes)
    assert report["n_rows"] == len(texts) and report["n_labelled"] == len(texts) - 1
    assert report["inputs"]["train"] == "train.csv"  # a file name, not a path
    assert report["n_flagged"] == sum(r["is_label_issue"] == "True" for r in rows)
    assert 0.0 <= report["noise_share"] <= 1.0
    ev = report["eval"]
    assert ev["n_scored"] == len(etexts)
    for key in ("noisy_classifier", "refined_posterior", "served"):
        assert 0.0 <= ev[key]["accuracy"] <= 1.0 and 0.0 <= ev[key]["ece"] <= 1.0
        assert sum(map(sum, ev[key]["confusion_matrix"])) == len(etexts)
        assert sum(b["count"] for b in report["reliability"][key]) == len(etexts)
    assert set(report["timings"]) >= {"classifier", "prior", "refiner", "served", "total"}
    for name in ("reliability", "noise_matrix", "class_distribution", "confusion", "label_quality"):
        assert (out / "plots" / f"{name}.svg").read_bytes().lstrip().startswith(b"<?xml")
        assert (out / "plots" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.count("data:image/svg+xml;base64,") == 5 and "<script" not in page
    assert os.path.isfile(out / "eval_predictions.csv")


@pytest.mark.slow  # predicts from the `calibrated` fixture's whole CLI run
def test_predict_prints_labels_from_saved_model(calibrated, capsys, tmp_path):
    out, _, _, classes, etexts = calibrated
    capsys.readouterr()
    # the --out dir of calibrate is accepted as well as its model/ subdir
    assert main(["predict", "--model", str(out), etexts[0], etexts[1]]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    for line, text in zip(lines, etexts[:2], strict=True):
        label, conf, shown = line.split("\t")
        assert label in classes and 0 < float(conf) <= 1 and shown == text
    inp = tmp_path / "texts.txt"
    inp.write_text("\n".join(etexts[:3]) + "\n", encoding="utf-8")
    assert main(["predict", "--model", str(out / "model"), "--input", str(inp), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["text"] for d in data] == etexts[:3]
    assert all(abs(sum(d["probabilities"].values()) - 1) < 1e-4 for d in data)
    assert all(d["probabilities"][d["label"]] == d["confidence"] for d in data)


def test_invalid_inputs_exit_2_naming_the_row(tmp_path, tiny_backbone, capsys):
    texts, noisy, _, _ = toy_dataset(n_per_class=5, noise=0.0)
    texts[3] = "   "
    bad = write_csv(tmp_path / "bad.csv", texts, noisy)
    code = main(["calibrate", "--train", str(bad), "--out", str(tmp_path / "o"), "--backbone", tiny_backbone])
    err = capsys.readouterr().err
    assert code == 2
    assert "empty text" in err and "rows: 3" in err and "bad.csv" in err
    assert not (tmp_path / "o").exists()  # nothing trained, nothing written

    texts, noisy, _, _ = toy_dataset(n_per_class=5, noise=0.0)
    ok = write_csv(tmp_path / "ok.csv", texts, noisy)
    code = main(["calibrate", "--train", str(ok), "--out", str(tmp_path / "o"), "--labels", "sports,food"])
    err = capsys.readouterr().err
    assert code == 2 and "not in the class list" in err and "tech" in err

    code = main(["calibrate", "--train", str(ok), "--out", str(tmp_path / "o"), "--label-column", "llm"])
    assert code == 2 and "missing column 'llm'" in capsys.readouterr().err

    code = main(["calibrate", "--train", str(ok), "--out", str(tmp_path / "o"), "--epochs", "0"])
    assert code == 2 and "--epochs" in capsys.readouterr().err

    assert main(["predict", "--model", str(tmp_path), "hello"]) == 2
    assert "model.safetensors" in capsys.readouterr().err


@pytest.mark.slow  # a whole `sidyp calibrate` run: in `make test`, not `make test-fast`
def test_calibrate_reads_jsonl(tmp_path, tiny_backbone):
    texts, noisy, _, _ = toy_dataset(n_per_class=8, noise=0.2, seed=4)
    path = tmp_path / "train.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for t, y in zip(texts, noisy, strict=True):
            f.write(json.dumps({"sentence": t, "llm": y}) + "\n")
    out = tmp_path / "out"
    args = ["calibrate", "--train", str(path), "--out", str(out), "--text-column", "sentence"]
    args += ["--label-column", "llm", "--backbone", tiny_backbone, "--quiet", "--noise-model", "off"] + FAST
    assert main(args) == 0
    with open(out / "labels.csv", newline="", encoding="utf-8") as f:
        assert len(list(csv.DictReader(f))) == len(texts)
    report = json.loads((out / "report.json").read_text())
    assert report["config"]["noise_model"] == "off"
    assert report["diagnostics"]["noise_model"] == 0.0


def test_the_summary_says_what_was_delivered_and_why_with_the_estimates():
    from sidyp_engine.report import build_report
    from tests.engine.report_fixtures import fake_result
    from tests.engine.test_report_html import _estimate

    selection = {
        "kept": "refined",
        "kept_model": "served",
        "reason": "the run estimates 50% of the labels wrong, at least the 40% where refinement has helped",
        "estimates": {"plain": _estimate(0.47, 0.43, 0.61), "refined": _estimate(0.59, 0.51, 0.62)},
        "llm_label_accuracy": _estimate(0.50, 0.49, 0.74, rows=1927),
        "noise_share": _estimate(0.50, 0.26, 0.51, rows=1927),
    }
    text = summary_text(build_report(fake_result(diagnostics={"selection": selection})), "out", 1.0)
    assert "delivered labels: the refined labels (SiDyP)" in text
    assert "delivered model:  the distilled served model" in text
    assert "why: the run estimates 50% of the labels wrong" in text
    assert "plain classifier             0.470 [0.430, 0.610]  refined posteriors" in text
    assert "delivered labels             0.590 [0.510, 0.620]" in text
    assert "not their shared bias" in text
    # no selection in the report (an older run): no such lines
    assert "delivered" not in summary_text(build_report(fake_result()), "out", 1.0)
