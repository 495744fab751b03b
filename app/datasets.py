"""Uploads: the engine's table reader (`sidyp_engine.tables`) under the service's limits and problem types.

This module only maps: Settings -> the reader's limits, the `labels` form field -> a class list, and a
`TableError` -> a ProblemError with the same rows, columns and messages. Uploaded text is only ever data.
"""

from __future__ import annotations

import json
from pathlib import Path

from app.errors import ProblemError
from sidyp_core.artifacts import DATASET_FILE, write_json
from sidyp_core.config import Settings
from sidyp_engine.tables import Table, TableError, check_declared_labels, read_table

# the reader's kinds of error -> (HTTP status, problem type)
_PROBLEMS = {
    "invalid": (422, "invalid-upload"),
    "encoding": (422, "invalid-encoding"),
    "empty": (422, "empty-upload"),
    "too-many-rows": (413, "too-many-rows"),
    "too-many-classes": (422, "too-many-classes"),
    "too-few-classes": (422, "too-few-classes"),
}


def _problem(err: TableError) -> ProblemError:
    status, slug = _PROBLEMS.get(err.kind, (422, "invalid-upload"))
    return ProblemError(status, err.detail, slug=slug, errors=err.errors)


def parse_declared_labels(labels_field: str | None, settings: Settings) -> list[str] | None:
    """The `labels` form field (a JSON array of class names), or None when it is absent or blank."""
    if labels_field is None or labels_field.strip() == "":
        return None
    try:
        value = json.loads(labels_field)
    except (ValueError, RecursionError):
        _fail_labels("`labels` must be a JSON array of class names")
    if not isinstance(value, list):
        _fail_labels("`labels` must be a JSON array of strings")
    try:
        return check_declared_labels(value, settings.max_classes)
    except TableError as err:
        raise _problem(err) from None


def _fail_labels(detail: str):
    errors = [{"row": None, "column": "labels", "message": detail}]
    raise ProblemError(422, detail, slug="invalid-upload", errors=errors)


def parse_upload(
    raw: bytes,
    filename: str | None,
    text_column: str,
    label_column: str,
    labels_field: str | None,
    settings: Settings,
) -> Table:
    if len(raw) > settings.max_upload_bytes:
        raise ProblemError(
            413, f"upload larger than {settings.max_upload_bytes} bytes", slug="upload-too-large"
        )
    if text_column == label_column:
        detail = "text_column and label_column must differ"
        errors = [{"row": None, "column": label_column, "message": detail}]
        raise ProblemError(422, detail, slug="invalid-upload", errors=errors)
    declared = parse_declared_labels(labels_field, settings)
    try:
        return read_table(
            raw,
            filename=filename,
            text_column=text_column,
            label_column=label_column,
            declared_labels=declared,
            max_rows=settings.max_rows,
            max_text_chars=settings.max_text_chars,
            max_classes=settings.max_classes,
        )
    except TableError as err:
        raise _problem(err) from None


def save_dataset_files(folder: Path, parsed: Table) -> None:
    columns = {"text": parsed.texts, "noisy_label": parsed.noisy, "gold_label": parsed.gold}
    write_json(folder / DATASET_FILE, columns | {"trusted_label": parsed.trusted})
