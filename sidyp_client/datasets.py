"""`client.datasets`: upload (a path, a file object, bytes or a pandas DataFrame), list, get, delete."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from sidyp_client._http import HTTP
from sidyp_client.types import Dataset

_CONTENT_TYPES = {
    ".csv": "text/csv",
    ".tsv": "text/tab-separated-values",
    ".jsonl": "application/x-ndjson",
    ".ndjson": "application/x-ndjson",
}

DatasetSource = str | os.PathLike | BinaryIO | bytes | Any  # Any: a pandas DataFrame (pandas is optional)


def _is_dataframe(value: Any) -> bool:
    # Duck-typed so pandas is never imported here: a DataFrame is the only source with both of these.
    return hasattr(value, "to_csv") and hasattr(value, "columns")


def read_source(source: DatasetSource, filename: str | None) -> tuple[str, bytes]:
    """(filename, content). Read whole into memory: the server caps uploads (50 MB by default) and a retry
    must be able to send the same bytes again, which a half-read stream cannot."""
    if _is_dataframe(source):
        return filename or "dataframe.csv", source.to_csv(index=False).encode("utf-8")
    if isinstance(source, bytes):
        return filename or "upload.csv", source
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        return filename or path.name, path.read_bytes()
    if hasattr(source, "read"):
        content = source.read()
        if isinstance(content, str):
            content = content.encode("utf-8")
        name = filename or os.path.basename(str(getattr(source, "name", "") or "")) or "upload.csv"
        return name, content
    raise TypeError(f"cannot upload a {type(source).__name__}: give a path, a file, bytes or a DataFrame")


class Datasets:
    def __init__(self, http: HTTP):
        self._http = http

    def create(
        self,
        source: DatasetSource,
        *,
        name: str | None = None,
        text_column: str = "text",
        label_column: str = "noisy_label",
        labels: Sequence[str] | None = None,
        filename: str | None = None,
        idempotency_key: str | None = None,
    ) -> Dataset:
        """Upload CSV / TSV / JSON Lines (or a DataFrame, sent as CSV). `labels` declares the class names
        (classes no row uses included). Bad rows raise ValidationError with `.errors` = [{row, column,
        message}]; a retried upload carries the same Idempotency-Key, so it is stored once."""
        fname, content = read_source(source, filename)
        form: dict[str, str] = {"text_column": text_column, "label_column": label_column}
        if name is not None:
            form["name"] = name
        if labels is not None:
            form["labels"] = json.dumps(list(labels))
        content_type = _CONTENT_TYPES.get(Path(fname).suffix.lower(), "application/octet-stream")
        response = self._http.request(
            "POST",
            "/v1/datasets",
            files={"file": (fname, content, content_type)},
            data=form,
            idempotency_key=idempotency_key or True,
        )
        return Dataset.from_api(response.json())

    def list(self, *, page_size: int | None = None) -> Iterator[Dataset]:
        """Every dataset of this key's tenant, newest first; pages are fetched as you iterate."""
        for item in self._http.paginate("/v1/datasets", {"limit": page_size}, lambda d: d["id"]):
            yield Dataset.from_api(item)

    def get(self, dataset_id: str) -> Dataset:
        return Dataset.from_api(self._http.get_json(f"/v1/datasets/{dataset_id}"))

    def delete(self, dataset_id: str) -> None:
        self._http.request("DELETE", f"/v1/datasets/{dataset_id}")
