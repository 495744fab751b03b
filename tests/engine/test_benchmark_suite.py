"""benchmarks.suite: the acceptance suite's plan, which JSON count as current, and its runs."""

from __future__ import annotations

import csv
import json
import os
import subprocess

import pytest

from benchmarks import suite
from tests.conftest import QUICK_BENCHMARK_ARGS, write_toy_benchmark_set


def _shared(tmp_path, names=tuple(s.name for s in suite.SUITE)):
    root = tmp_path / "shared"
    for name in names:
        (root / name).mkdir(parents=True)
        # the semeval sets' grouped variant needs classes its grouping knows
        x, y = ("Cause-Effect", "Entity-Origin") if name.startswith("semeval") else ("x", "y")
        for split in ("train", "valid", "test"):
            with open(root / name / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f)
                writer.writerow(["text", "noisy_label", "gold_label"])
                writer.writerows([["a", x, x], ["b", x, y], ["c", y, y], ["d", y, x]])
    return root


def test_the_plan_is_every_development_and_shared_set_three_seeds(tmp_path):
    runs = suite.plan(str(tmp_path / "shared"), str(tmp_path / "dev"))
    files = [r.file for r in runs]
    assert len(files) == len(set(files)) == 66
    # both shared sets, the LLM's two-class set at 17 % noise and its 20 % level with trusted rows, three
    # seeds each
    assert sum(r.trusted == 100 for r in runs) == 12
    assert "semeval-mixtral-fewshot-trusted100-seed2.json" in files
    assert "semeval-mixtral-fewshot-binary-noise17-trusted100-seed0.json" in files
    assert "semeval-mixtral-fewshot-noise20-trusted100-seed1.json" in files
    assert "trec-weak-vote-noise20-trusted100-seed1.json" not in files
    assert "trec-weak-vote-noise30-seed1.json" in files and "trec-weak-vote-binary-seed0.json" in files
    assert not any(f.startswith("semeval-weak-vote-noise") for f in files)  # no development sets of its own
    dev = [r for r in runs if "-noise" in r.name or r.name.endswith(("-binary", "-grouped"))]
    assert len(dev) == 51 and all(r.data.startswith(str(tmp_path / "dev")) for r in dev)
    # the two-class set at 17 % noise: of the LLM-labelled set only
    binary_noise = {os.path.basename(r.data) for r in runs if "-binary-noise" in r.name}
    assert binary_noise == {"semeval-mixtral-fewshot-binary-noise17"}
    # the grouped sets: the LLM-labelled semeval set and its rule-vote twin, not trec (no grouping of its classes)
    grouped = {r.name for r in runs if r.name.endswith("-grouped")}
    assert grouped == {"semeval-mixtral-fewshot-grouped", "semeval-weak-vote-grouped"}
    # the LLM-labelled grouped set also at 20 % and 5 % noise (an accurate labeller on three classes)
    grouped_noise = {r.name for r in runs if "-grouped-noise" in r.name}
    assert grouped_noise == {
        "semeval-mixtral-fewshot-grouped-noise20",
        "semeval-mixtral-fewshot-grouped-noise05",
    }


def test_a_run_command_names_its_seed_trusted_rows_cache_and_arrays():
    run = suite.Run("/data/trec-weak-vote", 2, 100)
    cmd = suite.command(run, "/out", "/cache", "/dumps", ["--epochs", "1"])
    joined = " ".join(cmd)
    assert "-m benchmarks.quality --data /data/trec-weak-vote --seeds 1 --seed-start 2 --threads 1" in joined
    assert "--out /out/trec-weak-vote-trusted100-seed2.json" in joined
    assert "--trusted 100" in joined and "--cache-dir /cache" in joined
    assert "--dump-arrays /dumps/trec-weak-vote-trusted100" in joined and cmd[-2:] == ["--epochs", "1"]
    assert "--trusted" not in suite.command(suite.Run("/d/x", 0, 0), "/o", None, None, [])


def _git(repo, *args):
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args]
    return subprocess.run(git, cwd=repo, capture_output=True, text=True, check=True).stdout.strip()


def test_a_json_is_current_only_while_the_code_that_made_it_is_unchanged(tmp_path):
    repo = tmp_path / "repo"
    (repo / "sidyp_engine").mkdir(parents=True)
    (repo / "sidyp_engine" / "stage.py").write_text("A = 1\n")
    (repo / "README.md").write_text("x\n")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "one")
    commit = _git(repo, "rev-parse", "--short=12", "HEAD")

    def written(code) -> str:
        path = tmp_path / "run.json"
        path.write_text(json.dumps({"code": code}))
        return str(path)

    assert suite.is_current(written({"commit": commit, "edited": False}), str(repo))
    assert not suite.is_current(written({"commit": commit, "edited": True}), str(repo))  # uncommitted edits
    assert not suite.is_current(written(None), str(repo))  # older JSON that did not record its code
    assert not suite.is_current(written({"commit": "0" * 12, "edited": False}), str(repo))  # unknown commit
    assert not suite.is_current(str(tmp_path / "missing.json"), str(repo))
    # a later commit that leaves the run code alone keeps the JSON current; one that changes it does not
    (repo / "README.md").write_text("y\n")
    _git(repo, "commit", "-qam", "docs")
    assert suite.is_current(written({"commit": commit, "edited": False}), str(repo))
    (repo / "sidyp_engine" / "stage.py").write_text("A = 2\n")
    assert not suite.is_current(written({"commit": commit, "edited": False}), str(repo))


def test_list_writes_the_development_sets_and_runs_nothing(tmp_path, capsys, monkeypatch):
    shared, dev, out = _shared(tmp_path), tmp_path / "dev", tmp_path / "out"
    monkeypatch.chdir(tmp_path)  # relative paths: the runs start in the repository root, so they are resolved
    args = ["--out", "out", "--shared", "shared", "--dev-dir", "dev", "--list", "--only", "trec"]
    assert suite.main(args) == 0
    printed = capsys.readouterr().out
    assert f"trec-weak-vote-noise05-seed2.json  ({dev / 'trec-weak-vote-noise05'})" in printed
    assert f"trec-weak-vote-seed0.json  ({shared / 'trec-weak-vote'})" in printed
    assert "21 runs in the plan, 0 current in" in printed and ", 21 to run" in printed
    assert (
        "run   trec-weak-vote-noise05-seed2.json" in printed and "semeval" not in printed.split("to run")[1]
    )
    assert sorted(p.name for p in dev.iterdir()) == sorted(
        n for s in suite.SUITE for n in suite.development_names(s)
    )
    assert not out.exists()


def test_a_missing_shared_set_is_named(tmp_path, capsys):
    shared = _shared(tmp_path, names=("semeval-mixtral-fewshot",))
    with pytest.raises(SystemExit) as stop:
        suite.main(["--out", str(tmp_path / "o"), "--shared", str(shared), "--list"])
    assert stop.value.code == 2 and "no trec-weak-vote/train.csv" in capsys.readouterr().err


@pytest.mark.slow  # one small benchmark run and one that fails at once (~20 s)
def test_the_runs_write_their_json_and_the_summary_and_a_failure_is_reported(
    tmp_path, tiny_backbone, monkeypatch
):
    write_toy_benchmark_set(tmp_path / "shared" / "toy")
    monkeypatch.setattr(suite, "SUITE", (suite.SharedSet("toy", False, (0,)),))
    out, logs = tmp_path / "out", tmp_path / "logs"
    common = ["--out", str(out), "--shared", str(tmp_path / "shared"), "--log-dir", str(logs), "--seeds", "0"]
    extra = [*QUICK_BENCHMARK_ARGS, "--k", "3", "--backbone", tiny_backbone]
    assert suite.main([*common, "--", *extra]) == 0
    written = json.loads((out / "toy-seed0.json").read_text())
    assert written["seeds"] == [0] and "sidyp" in written["results"]
    # the run's asks for trusted rows are recorded beside its choice
    recorded = written["runs"][0]["estimates"]
    assert isinstance(recorded["gate_close"], bool) and "expected_gain" in recorded
    assert recorded["refit"] is None  # no trusted rows: nothing fitted again
    # the summary covers every JSON of the plan in --out, not only the runs this call made
    (out / "summary.json").unlink()
    assert suite.main([*common, "--only", "no-such-run"]) == 0
    assert [r["set"] for r in json.loads((out / "summary.json").read_text())["runs"]] == ["toy-seed0"]
    broken = suite.Run(str(tmp_path / "shared" / "absent"), 0, 0)
    assert suite.execute([broken], str(out), str(logs), 1, cache_dir=None, dump_dir=None, extra=[]) == [
        broken
    ]
    assert (logs / "absent-seed0.log").read_text()  # the failure's own output is kept for the reader
