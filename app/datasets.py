"""Upload parsing and validation: CSV with a header or JSON Lines in, one checked table out.

Everything is checked before anything is stored. Problems are collected per row and column (up to
MAX_REPORTED_ERRORS) so one answer tells the client what to fix. Uploaded text is only ever data: it
is never evaluated and never used in a file path.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.errors import ProblemError
from sidyp_core.artifacts import DATASET_FILE, read_json, write_json
from sidyp_core.config import Settings

MAX_REPORTED_ERRORS = 100
MAX_LABEL_CHARS = 200
GOLD_COLUMN = "gold_label"


@dataclass
class ParsedDataset:
    texts: list[str]
    noisy: list[str | None]
    gold: list[str | None] | None
    labels: list[str]
    format: str
    label_counts: dict[str, int] = field(default_factory=dict)

    @property
    def n_missing(self) -> int:
        return sum(1 for x in self.noisy if x is None)

    @property
    def has_gold(self) -> bool:
        return self.gold is not None and any(g is not None for g in self.gold)


class _Errors:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.total = 0

    def add(self, row: int | None, column: str | None, message: str, **extra: Any) -> None:
        self.total += 1
        if len(self.items) < MAX_REPORTED_ERRORS:
            self.items.append({"row": row, "column": column, "message": message, **extra})

    def raise_if_any(self, detail: str, status: int = 422, slug: str = "invalid-upload") -> None:
        if self.total:
            more = (
                f" ({self.total} problems, first {len(self.items)} listed)"
                if self.total > len(self.items)
                else ""
            )
            raise ProblemError(status, detail + more, slug=slug, errors=self.items)


def _fail(
    detail: str,
    *,
    column: str | None = None,
    row: int | None = None,
    status: int = 422,
    slug: str = "invalid-upload",
):
    raise ProblemError(status, detail, slug=slug, errors=[{"row": row, "column": column, "message": detail}])


def _line_of(raw: bytes, offset: int) -> int:
    """1-based physical line of a byte offset."""
    return raw.count(b"\n", 0, offset) + 1


def parse_declared_labels(labels_field: str | None, settings: Settings) -> list[str] | None:
    if labels_field is None or labels_field.strip() == "":
        return None
    try:
        value = json.loads(labels_field)
    except (ValueError, RecursionError):
        _fail("`labels` must be a JSON array of class names", column="labels")
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        _fail("`labels` must be a JSON array of strings", column="labels")
    cleaned = [x.strip() for x in value]
    if any(not x for x in cleaned):
        _fail("`labels` contains an empty class name", column="labels")
    if any(len(x) > MAX_LABEL_CHARS for x in cleaned):
        _fail(f"class names are limited to {MAX_LABEL_CHARS} characters", column="labels")
    dupes = sorted(x for x, n in Counter(cleaned).items() if n > 1)
    if dupes:
        _fail(f"`labels` repeats {dupes[:5]}", column="labels")
    if len(cleaned) < 2:
        _fail("at least 2 classes are needed", column="labels")
    if len(cleaned) > settings.max_classes:
        _fail(
            f"{len(cleaned)} classes; the limit is {settings.max_classes}",
            column="labels",
            slug="too-many-classes",
        )
    return cleaned


def _decode(raw: bytes, is_jsonl: bool) -> str:
    if not raw.strip():
        _fail("the file is empty", slug="empty-upload")
    nul = raw.find(b"\x00")
    if nul >= 0:
        line = _line_of(raw, nul)
        _fail_at_line(line, is_jsonl, "NUL byte in the file (is it UTF-16 or binary?)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = _line_of(raw, exc.start)
        _fail_at_line(line, is_jsonl, f"not valid UTF-8 at byte {exc.start}; re-save the file as UTF-8")
    return text.removeprefix("\ufeff")


def _fail_at_line(line: int, is_jsonl: bool, message: str) -> None:
    # CSV: line 1 is the header, so data row = line - 2 (exact unless quoted cells span lines).
    row = line - 1 if is_jsonl else line - 2
    raise ProblemError(
        422,
        f"{message} (line {line})",
        slug="invalid-encoding",
        errors=[{"row": row if row >= 0 else None, "column": None, "line": line, "message": message}],
    )


def _looks_like_jsonl(raw: bytes, filename: str | None) -> bool:
    name = (filename or "").lower()
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return True
    if name.endswith((".csv", ".tsv", ".txt")):
        return False
    return raw.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{"


def _rows_from_csv(text: str, text_column: str, label_column: str, settings: Settings):
    csv.field_size_limit(max(settings.max_upload_bytes, 131072))
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        _fail("the file is empty", slug="empty-upload")
    except csv.Error as exc:
        _fail(f"unreadable CSV header: {exc}")
    header = [h.strip() for h in header]
    errs = _Errors()
    for name, n in Counter(header).items():
        if n > 1:
            errs.add(None, name, f"column {name!r} appears {n} times in the header")
    for required in (text_column, label_column):
        if required not in header:
            errs.add(None, required, f"missing column {required!r} (header: {header[:20]})")
    errs.raise_if_any("bad CSV header")
    ti, li = header.index(text_column), header.index(label_column)
    gi = header.index(GOLD_COLUMN) if GOLD_COLUMN in header else None
    rows: list[tuple[Any, Any, Any]] = []
    row_errors = _Errors()
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            row_errors.add(len(rows), None, f"unreadable CSV: {exc}")
            break
        if not cells or (len(cells) == 1 and cells[0] == ""):
            continue  # blank line
        if len(rows) >= settings.max_rows:
            raise ProblemError(413, f"more than {settings.max_rows} rows", slug="too-many-rows")
        if len(cells) != len(header):
            row_errors.add(len(rows), None, f"expected {len(header)} fields, found {len(cells)}")
            rows.append(("", None, None))
            continue
        rows.append((cells[ti], cells[li], cells[gi] if gi is not None else None))
    row_errors.raise_if_any("malformed CSV rows")
    return rows, gi is not None


def _rows_from_jsonl(text: str, text_column: str, label_column: str, settings: Settings):
    rows: list[tuple[Any, Any, Any]] = []
    errs = _Errors()
    has_gold = False
    for line in text.splitlines():
        if not line.strip():
            continue
        if len(rows) >= settings.max_rows:
            raise ProblemError(413, f"more than {settings.max_rows} rows", slug="too-many-rows")
        row = len(rows)
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError) as exc:
            errs.add(row, None, f"not a JSON object: {str(exc)[:120]}")
            rows.append(("", None, None))
            continue
        if not isinstance(obj, dict):
            errs.add(row, None, "each line must be a JSON object")
            rows.append(("", None, None))
            continue
        if text_column not in obj:
            errs.add(row, text_column, f"missing field {text_column!r}")
        if label_column not in obj:
            errs.add(row, label_column, f"missing field {label_column!r} (use null for a missing label)")
        has_gold = has_gold or GOLD_COLUMN in obj
        rows.append((obj.get(text_column, ""), obj.get(label_column), obj.get(GOLD_COLUMN)))
    errs.raise_if_any("malformed JSON Lines")
    return rows, has_gold


def parse_upload(
    raw: bytes,
    filename: str | None,
    text_column: str,
    label_column: str,
    labels_field: str | None,
    settings: Settings,
) -> ParsedDataset:
    if len(raw) > settings.max_upload_bytes:
        raise ProblemError(
            413, f"upload larger than {settings.max_upload_bytes} bytes", slug="upload-too-large"
        )
    if text_column == label_column:
        _fail("text_column and label_column must differ", column=label_column)
    declared = parse_declared_labels(labels_field, settings)
    is_jsonl = _looks_like_jsonl(raw, filename)
    text = _decode(raw, is_jsonl)
    if is_jsonl:
        rows, gold_present = _rows_from_jsonl(text, text_column, label_column, settings)
    else:
        rows, gold_present = _rows_from_csv(text, text_column, label_column, settings)
    if not rows:
        _fail("the file has no data rows", slug="empty-upload")

    errs = _Errors()
    texts: list[str] = []
    noisy: list[str | None] = []
    gold: list[str | None] = []
    for i, (t, y, g) in enumerate(rows):
        if not isinstance(t, str):
            errs.add(i, text_column, "text must be a string")
            t = ""
        elif not t.strip():
            errs.add(i, text_column, "empty text")
        elif len(t) > settings.max_text_chars:
            errs.add(i, text_column, f"text has {len(t)} characters; the limit is {settings.max_text_chars}")
        texts.append(t)
        noisy.append(_label_cell(y, i, label_column, errs))
        gold.append(_label_cell(g, i, GOLD_COLUMN, errs))
    errs.raise_if_any("invalid rows")

    observed = sorted({y for y in noisy if y is not None})
    labels = declared if declared is not None else observed
    if declared is not None:
        allowed = set(declared)
        for i, y in enumerate(noisy):
            if y is not None and y not in allowed:
                errs.add(i, label_column, f"label {y[:50]!r} is not one of the declared labels")
    if gold_present:
        allowed = set(labels)
        for i, g in enumerate(gold):
            if g is not None and g not in allowed:
                errs.add(i, GOLD_COLUMN, f"gold label {g[:50]!r} is not one of the labels")
    errs.raise_if_any("labels outside the declared set")
    if len(labels) > settings.max_classes:
        _fail(
            f"{len(labels)} classes; the limit is {settings.max_classes}",
            column=label_column,
            slug="too-many-classes",
        )
    if len(observed) < 2:
        _fail(
            f"at least 2 classes must appear among the labels; found {observed}",
            column=label_column,
            slug="too-few-classes",
        )
    counts = Counter(y for y in noisy if y is not None)
    return ParsedDataset(
        texts=texts,
        noisy=noisy,
        gold=gold if gold_present else None,
        labels=list(labels),
        format="jsonl" if is_jsonl else "csv",
        label_counts={c: counts.get(c, 0) for c in labels},
    )


def _label_cell(value: Any, row: int, column: str, errs: _Errors) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        errs.add(row, column, "labels must be strings (or null / empty for missing)")
        return None
    value = value.strip()
    if not value:
        return None
    if len(value) > MAX_LABEL_CHARS:
        errs.add(row, column, f"label longer than {MAX_LABEL_CHARS} characters")
        return None
    return value


def save_dataset_files(folder: Path, parsed: ParsedDataset) -> None:
    write_json(
        folder / DATASET_FILE, {"text": parsed.texts, "noisy_label": parsed.noisy, "gold_label": parsed.gold}
    )


def load_dataset_files(folder: Path) -> dict[str, Any]:
    return read_json(folder / DATASET_FILE)
