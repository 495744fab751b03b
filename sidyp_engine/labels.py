"""The one labels table: what a run says about each training row, under cleanlab's column names.

`label_table` builds the JSON the worker stores and the CLI writes; `iter_labels_csv` streams it (or a
filtered, ordered subset of its rows) as CSV for the CLI's `labels.csv` and the API's export alike, so both
carry the same columns and both neutralise spreadsheet formulas.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

LABEL_COLUMNS = (
    "index",
    "text",
    "given_label",
    "suggested_label",
    "label_quality",
    "is_label_issue",
    "is_validation",
)
# A cell starting with one of these is read as a formula by spreadsheet programs (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> str:
    """The cell as text, prefixed with ' when a spreadsheet would evaluate it."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def label_table(result: Any, texts: Sequence[str], trusted: Sequence[bool] | None = None) -> dict[str, Any]:
    """Per-row outputs of a `CalibrationResult`, in the order of the training inputs."""
    probs = np.asarray(result.posteriors, dtype=np.float64)
    n = len(texts)
    return {
        "classes": list(result.classes),
        "rows": {
            "text": list(texts),
            "given_label": list(result.given_labels),
            "suggested_label": list(result.suggested_labels),
            "label_quality": [round(float(x), 6) for x in np.asarray(result.label_quality)],
            "is_label_issue": [bool(x) for x in np.asarray(result.is_label_issue)],
            "probabilities": [[round(float(p), 6) for p in row] for row in probs],
            "is_validation": [bool(x) for x in np.asarray(result.is_validation)],
            "is_trusted": [bool(x) for x in trusted] if trusted is not None else [False] * n,
        },
    }


def label_item(table: dict[str, Any], i: int) -> dict[str, Any]:
    """Row `i` as one JSON object (the API's label item)."""
    rows = table["rows"]
    return {
        "index": i,
        "text": rows["text"][i],
        "given_label": rows["given_label"][i],
        "suggested_label": rows["suggested_label"][i],
        "label_quality": rows["label_quality"][i],
        "is_label_issue": rows["is_label_issue"][i],
        "probabilities": dict(zip(table["classes"], rows["probabilities"][i], strict=True)),
        "is_validation": rows["is_validation"][i],
        "is_trusted": rows.get("is_trusted", [False] * len(rows["text"]))[i],
    }


def iter_labels_csv(
    table: dict[str, Any],
    indices: Iterable[int] | None = None,
    corrected: Mapping[int, str] | None = None,
    chunk_chars: int = 65536,
) -> Iterator[str]:
    """CSV text in chunks: a header, then one line per row of `indices` (all rows by default).

    With `corrected` (row index -> the label a reviewer decided), two columns are added: `corrected_label`
    (the decision, else the given label) and `is_reviewed`.
    """
    rows, classes = table["rows"], table["classes"]
    buf = io.StringIO()
    writer = csv.writer(buf)
    header = list(LABEL_COLUMNS) + [csv_safe(f"p_{c}") for c in classes]
    if corrected is not None:
        header += ["corrected_label", "is_reviewed"]
    writer.writerow(header)
    for i in range(len(rows["text"])) if indices is None else indices:
        line = [
            i,
            csv_safe(rows["text"][i]),
            csv_safe(rows["given_label"][i]),
            csv_safe(rows["suggested_label"][i]),
            f"{rows['label_quality'][i]:.6f}",
            rows["is_label_issue"][i],
            rows["is_validation"][i],
            *(f"{p:.6f}" for p in rows["probabilities"][i]),
        ]
        if corrected is not None:
            decided = corrected.get(i)
            line += [csv_safe(rows["given_label"][i] if decided is None else decided), decided is not None]
        writer.writerow(line)
        if buf.tell() > chunk_chars:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


def write_labels_csv(path: str | Path, table: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        for chunk in iter_labels_csv(table):
            f.write(chunk)
