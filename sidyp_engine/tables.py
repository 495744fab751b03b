"""The one table reader: CSV, TSV, semicolon-CSV or JSON Lines in, one checked `Table` out.

Strict: every problem is collected with its row and column (up to MAX_REPORTED_ERRORS) and raised as one
`TableError`, so one answer tells the caller what to fix. The CSV delimiter is sniffed from the header
line. Columns: the text and noisy-label columns (names are arguments), optional `gold_label` and
`trusted_label`; an empty label cell is a missing label (for `trusted_label`: not trusted). Text is only
ever data: never evaluated, never used in a path. Limits are plain arguments (None: no limit).
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sidyp_engine.types import InvalidInputError

MAX_REPORTED_ERRORS = 100
MAX_LABEL_CHARS = 200
GOLD_COLUMN = "gold_label"
TRUSTED_COLUMN = "trusted_label"
DELIMITERS = {",": "csv", "\t": "tsv", ";": "csv-semicolon"}  # preference order on ties


class TableError(InvalidInputError):
    """A table that cannot be used. `errors` lists {"row", "column", "message"} (row: 0-based data row or
    None; some carry "line" too); `kind` is what went wrong, for callers that map it to a status:
    invalid, encoding, empty, too-many-rows, too-many-classes, too-few-classes."""

    def __init__(self, detail: str, errors: list[dict[str, Any]], kind: str = "invalid"):
        rows = sorted({e["row"] for e in errors if e.get("row") is not None})
        columns = [e["column"] for e in errors if e.get("column")]
        # the message lists the first problems too, for callers that only show str(error) (the CLI)
        shown = "; ".join(_describe(e) for e in errors[:5] if e["message"] != detail)
        more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
        message = f"{detail}: {shown}{more}" if shown else detail
        super().__init__(message, rows=rows, column=columns[0] if columns else None)
        self.detail = detail
        self.errors = errors
        self.kind = kind


def _describe(error: dict[str, Any]) -> str:
    where = [f"row {error['row']}"] if error.get("row") is not None else []
    where += [f"column {error['column']!r}"] if error.get("column") else []
    return f"{', '.join(where)}: {error['message']}" if where else error["message"]


@dataclass
class Table:
    texts: list[str]
    noisy: list[str | None] | None  # None: no label column (allowed with require_labels=False)
    gold: list[str | None] | None  # None: no gold column
    trusted: list[str | None] | None  # None: no trusted-label column; None cell: not trusted
    labels: list[str]  # the declared labels, else the distinct noisy labels, sorted
    format: str  # "csv", "tsv", "csv-semicolon" or "jsonl"
    label_counts: dict[str, int] = field(default_factory=dict)

    @property
    def n_missing(self) -> int:
        return sum(1 for x in self.noisy or [] if x is None)

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

    def raise_if_any(self, detail: str, kind: str = "invalid") -> None:
        if self.total:
            more = (
                f" ({self.total} problems, first {len(self.items)} listed)"
                if self.total > len(self.items)
                else ""
            )
            raise TableError(detail + more, self.items, kind)


def fail(detail: str, *, column: str | None = None, row: int | None = None, kind: str = "invalid"):
    raise TableError(detail, [{"row": row, "column": column, "message": detail}], kind)


def check_declared_labels(labels: list[Any], max_classes: int | None = None) -> list[str]:
    """A caller's class list, stripped; refused when not strings, empty, too long, repeated or < 2."""
    if not all(isinstance(x, str) for x in labels):
        fail("`labels` must be a JSON array of strings", column="labels")
    cleaned = [x.strip() for x in labels]
    if any(not x for x in cleaned):
        fail("`labels` contains an empty class name", column="labels")
    if any(len(x) > MAX_LABEL_CHARS for x in cleaned):
        fail(f"class names are limited to {MAX_LABEL_CHARS} characters", column="labels")
    dupes = sorted(x for x, n in Counter(cleaned).items() if n > 1)
    if dupes:
        fail(f"`labels` repeats {dupes[:5]}", column="labels")
    if len(cleaned) < 2:
        fail("at least 2 classes are needed", column="labels")
    if max_classes is not None and len(cleaned) > max_classes:
        fail(f"{len(cleaned)} classes; the limit is {max_classes}", column="labels", kind="too-many-classes")
    return cleaned


def read_table_file(path: str | Path, **options: Any) -> Table:
    """`read_table` on a local file; messages name the file (for the CLI and benchmarks, not tenants)."""
    path = Path(path)
    if not path.is_file():
        fail(f"{path}: file not found")
    try:
        return read_table(path.read_bytes(), filename=path.name, **options)
    except TableError as err:
        raise TableError(f"{path}: {err.detail}", err.errors, err.kind) from None


def read_table(
    raw: bytes,
    *,
    filename: str | None = None,
    text_column: str = "text",
    label_column: str = "noisy_label",
    gold_column: str = GOLD_COLUMN,
    declared_labels: list[str] | None = None,
    require_labels: bool = True,
    gold_in_labels: bool = True,
    min_classes: int = 2,
    max_rows: int | None = None,
    max_text_chars: int | None = None,
    max_classes: int | None = None,
) -> Table:
    """Parse and check one table; raise TableError naming every bad row and column.

    `declared_labels` (checked by `check_declared_labels`) fixes the class list; otherwise it is the
    distinct noisy labels. `gold_in_labels` refuses gold labels outside the class list (benchmarks turn it
    off: a test row's gold class may be one the labeller never used). `min_classes` distinct noisy labels
    must appear (0: no check).
    """
    if text_column == label_column:
        fail("text_column and label_column must differ", column=label_column)
    declared = check_declared_labels(declared_labels, max_classes) if declared_labels is not None else None
    is_jsonl = _looks_like_jsonl(raw, filename)
    text = _decode(raw, is_jsonl)
    columns = _Columns(text_column, label_column, gold_column, require_labels)
    reader = _rows_from_jsonl if is_jsonl else _rows_from_csv
    rows, present, fmt = reader(text, columns, max_rows)
    if not rows:
        fail("the file has no data rows", kind="empty")
    table = _check_cells(rows, present, fmt, columns, max_text_chars)
    _check_labels(table, declared, columns, gold_in_labels, min_classes, max_classes)
    return table


def _line_of(raw: bytes, offset: int) -> int:
    """1-based physical line of a byte offset."""
    return raw.count(b"\n", 0, offset) + 1


def _decode(raw: bytes, is_jsonl: bool) -> str:
    if not raw.strip():
        fail("the file is empty", kind="empty")
    nul = raw.find(b"\x00")
    if nul >= 0:
        _fail_at_line(_line_of(raw, nul), is_jsonl, "NUL byte in the file (is it UTF-16 or binary?)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        message = f"not valid UTF-8 at byte {exc.start}; re-save the file as UTF-8"
        _fail_at_line(_line_of(raw, exc.start), is_jsonl, message)
    return text.removeprefix("\ufeff")


def _fail_at_line(line: int, is_jsonl: bool, message: str) -> None:
    # CSV: line 1 is the header, so data row = line - 2 (exact unless quoted cells span lines).
    row = line - 1 if is_jsonl else line - 2
    error = {"row": row if row >= 0 else None, "column": None, "line": line, "message": message}
    raise TableError(f"{message} (line {line})", [error], "encoding")


def _looks_like_jsonl(raw: bytes, filename: str | None) -> bool:
    name = (filename or "").lower()
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return True
    if name.endswith((".csv", ".tsv", ".txt")):
        return False
    return raw.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{"


def sniff_delimiter(header_line: str) -> str:
    """The delimiter that splits the header line into the most fields (comma, then tab, then semicolon on
    ties), so a TSV or semicolon file is read as such instead of failing with 'missing column'."""
    counts = {d: len(next(csv.reader([header_line], delimiter=d), [])) for d in DELIMITERS}
    return max(DELIMITERS, key=lambda d: counts[d])  # max keeps the first of equal counts


_Row = tuple[Any, Any, Any, Any]  # text, noisy label, gold label, trusted label


@dataclass(frozen=True)
class _Columns:
    text: str
    label: str
    gold: str
    require_labels: bool
    trusted: str = TRUSTED_COLUMN

    @property
    def labels(self) -> tuple[str, str, str]:
        return (self.label, self.gold, self.trusted)

    @property
    def required(self) -> tuple[str, ...]:
        return (self.text, self.label) if self.require_labels else (self.text,)


def _rows_from_csv(
    text: str, columns: _Columns, max_rows: int | None
) -> tuple[list[_Row], dict[str, bool], str]:
    delimiter = sniff_delimiter(text.split("\n", 1)[0])
    csv.field_size_limit(max(len(text) + 1, 131072))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header = _csv_header(reader, columns)
    index = {name: header.index(name) if name in header else None for name in columns.labels}
    ti = header.index(columns.text)
    rows: list[_Row] = []
    errors = _Errors()
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.add(len(rows), None, f"unreadable CSV: {exc}")
            break
        if not cells or (len(cells) == 1 and cells[0] == ""):
            continue  # blank line
        _check_row_count(len(rows), max_rows)
        if len(cells) != len(header):
            errors.add(len(rows), None, f"expected {len(header)} fields, found {len(cells)}")
            rows.append(("", None, None, None))
            continue
        rows.append((cells[ti], *(None if i is None else cells[i] for i in index.values())))
    errors.raise_if_any("malformed CSV rows")
    present = {name: i is not None for name, i in index.items()}
    return rows, present, DELIMITERS[delimiter]


def _csv_header(reader, columns: _Columns) -> list[str]:
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        fail("the file is empty", kind="empty")
    except csv.Error as exc:
        fail(f"unreadable CSV header: {exc}")
    errors = _Errors()
    for name, n in Counter(header).items():
        if n > 1:
            errors.add(None, name, f"column {name!r} appears {n} times in the header")
    for required in columns.required:
        if required not in header:
            errors.add(None, required, f"missing column {required!r} (header: {header[:20]})")
    errors.raise_if_any("bad CSV header")
    return header


def _check_row_count(n_rows: int, max_rows: int | None) -> None:
    if max_rows is not None and n_rows >= max_rows:
        fail(f"more than {max_rows} rows", kind="too-many-rows")


def _rows_from_jsonl(
    text: str, columns: _Columns, max_rows: int | None
) -> tuple[list[_Row], dict[str, bool], str]:
    rows: list[_Row] = []
    errors = _Errors()
    label_names = columns.labels
    present = dict.fromkeys(label_names, False)  # a field counts as present when any line has it
    for line in text.splitlines():
        if not line.strip():
            continue
        _check_row_count(len(rows), max_rows)
        row = len(rows)
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError) as exc:
            errors.add(row, None, f"not a JSON object: {str(exc)[:120]}")
            obj = None
        if obj is not None and not isinstance(obj, dict):
            errors.add(row, None, "each line must be a JSON object")
        if not isinstance(obj, dict):
            rows.append(("", None, None, None))
            continue
        for name in columns.required:
            if name not in obj:
                hint = " (use null for a missing label)" if name == columns.label else ""
                errors.add(row, name, f"missing field {name!r}{hint}")
        present |= {name: True for name in label_names if name in obj}
        rows.append((obj.get(columns.text, ""), *(obj.get(name) for name in label_names)))
    errors.raise_if_any("malformed JSON Lines")
    return rows, present, "jsonl"


def _check_cells(
    rows: list[_Row],
    present: dict[str, bool],
    fmt: str,
    columns: _Columns,
    max_text_chars: int | None,
) -> Table:
    """Texts and label cells, row by row; `present` says which label columns the table has."""
    errors = _Errors()
    names = columns.labels
    texts: list[str] = []
    cells: dict[str, list[str | None]] = {name: [] for name in names}
    for i, (text, *labels) in enumerate(rows):
        texts.append(_text_cell(text, i, columns.text, max_text_chars, errors))
        for name, value in zip(names, labels, strict=True):
            cells[name].append(_label_cell(value, i, name, errors))
    errors.raise_if_any("invalid rows")
    kept = [cells[name] if present[name] else None for name in names]
    return Table(texts, *kept, [], fmt)


def _check_labels(
    table: Table,
    declared: list[str] | None,
    columns: _Columns,
    gold_in_labels: bool,
    min_classes: int,
    max_classes: int | None,
) -> None:
    noisy = table.noisy or []
    observed = sorted({y for y in noisy if y is not None})
    labels = declared if declared is not None else observed
    allowed = set(labels)
    errors = _Errors()
    if declared is not None:
        for i, y in enumerate(noisy):
            if y is not None and y not in allowed:
                errors.add(i, columns.label, f"label {y[:50]!r} is not one of the declared labels")
    checked = ((columns.gold, table.gold, "gold label"),) if gold_in_labels else ()
    for column, cells, what in (*checked, (columns.trusted, table.trusted, "trusted label")):
        for i, g in enumerate(cells or []):
            if g is not None and g not in allowed:
                errors.add(i, column, f"{what} {g[:50]!r} is not one of the labels")
    errors.raise_if_any("labels outside the declared set")
    if max_classes is not None and len(labels) > max_classes:
        fail(
            f"{len(labels)} classes; the limit is {max_classes}",
            column=columns.label,
            kind="too-many-classes",
        )
    if table.noisy is not None and len(observed) < min_classes:
        message = f"at least {min_classes} classes must appear among the labels; found {observed}"
        fail(message, column=columns.label, kind="too-few-classes")
    counts = Counter(y for y in noisy if y is not None)
    table.labels = list(labels)
    table.label_counts = {c: counts.get(c, 0) for c in labels}


def _text_cell(value: Any, row: int, column: str, max_chars: int | None, errors: _Errors) -> str:
    if not isinstance(value, str):
        errors.add(row, column, "text must be a string")
        return ""
    if not value.strip():
        errors.add(row, column, "empty text")
    elif max_chars is not None and len(value) > max_chars:
        errors.add(row, column, f"text has {len(value)} characters; the limit is {max_chars}")
    return value


def _label_cell(value: Any, row: int, column: str, errors: _Errors) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        errors.add(row, column, "labels must be strings (or null / empty for missing)")
        return None
    value = value.strip()
    if not value:
        return None
    if len(value) > MAX_LABEL_CHARS:
        errors.add(row, column, f"label longer than {MAX_LABEL_CHARS} characters")
        return None
    return value
