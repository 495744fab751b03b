"""Shared fixtures: a tiny random BERT backbone, a real redis-server on a free port, toy datasets."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> str:
    """A randomly initialised 2-layer BERT with the bundled MiniLM tokenizer, saved as a local HF dir.

    Keeps every engine test fast while exercising the same loading path as a real model directory.
    """
    from sidyp_engine.synthetic import make_tiny_backbone

    return make_tiny_backbone(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def redis_url():
    """A real redis-server for the session: the one named by SIDYP_TEST_REDIS_URL, else our own."""
    configured = os.environ.get("SIDYP_TEST_REDIS_URL")
    if configured:
        yield configured
        return
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail(
            "redis-server is not installed: run 'make test' (it installs it) or 'apt-get install redis-server'"
        )
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(port=port)
    deadline = time.time() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("redis-server did not start")
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()


def toy_dataset(n_per_class: int = 20, noise: float = 0.3, seed: int = 0):
    """Three separable topics with a share of flipped labels; returns texts, noisy, gold, classes."""
    import random

    rng = random.Random(seed)
    vocab = {
        "sports": ["football", "match", "goal", "team", "coach", "league", "score", "player"],
        "food": ["pizza", "pasta", "recipe", "cheese", "bake", "kitchen", "flavor", "dinner"],
        "tech": ["laptop", "software", "chip", "server", "code", "network", "robot", "cloud"],
    }
    classes = list(vocab)
    texts, noisy, gold = [], [], []
    for c in classes:
        for _ in range(n_per_class):
            words = rng.sample(vocab[c], 4)
            texts.append("the " + " ".join(words) + " today")
            gold.append(c)
            if rng.random() < noise:
                noisy.append(rng.choice([o for o in classes if o != c]))
            else:
                noisy.append(c)
    return texts, noisy, gold, classes


@pytest.fixture
def toy():
    return toy_dataset()


# benchmarks.quality settings for a run that only has to go through every stage
QUICK_BENCHMARK_ARGS = ["--epochs", "1", "--branches", "2", "--diffusion-epochs", "1"]


def write_toy_benchmark_set(directory: Path) -> Path:
    """The toy dataset as a benchmark folder: 24 training rows, the other 6 as validation, every text as test."""
    texts, noisy, gold, _ = toy_dataset(n_per_class=10, noise=0.3, seed=2)
    directory.mkdir(parents=True)
    write_csv(directory / "train.csv", texts[:24], noisy[:24], gold[:24])
    write_csv(directory / "valid.csv", texts[24:], noisy[24:], gold[24:])
    write_csv(directory / "test.csv", texts, gold, gold)
    return directory


def write_csv(path: Path, texts, noisy, gold=None) -> Path:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "noisy_label"] + (["gold_label"] if gold is not None else []))
        for i, t in enumerate(texts):
            w.writerow([t, noisy[i] or ""] + ([gold[i]] if gold is not None else []))
    return path
