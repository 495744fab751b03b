"""A finished job's labels table, read for review: filtered and ordered pages, and reviewers' decisions.

The table is parsed once per process and file version (path + mtime) and kept with its worst-first order,
so a page costs a few vectorised comparisons over the rows, never a re-read of the file. A page's cursor
is the index of the last row it returned; the next page starts after that row's place in the (fixed)
order, so decisions saved between two pages never shift or skip rows.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from app.errors import ProblemError
from app.schemas import ReviewInput
from sidyp_core.artifacts import read_json
from sidyp_core.store import utc_now_iso

Order = Literal["index", "label_quality", "random"]
# The "random" order is one fixed shuffle per table: cursors stay valid, and every reviewer pages through the
# same draw, so the reviewed rows of a prefix are a random sample (trusted rows must be one, docs/method.md).
RANDOM_ORDER_SEED = 20261204


class LabelsView:
    """One labels table (the shape of `sidyp_engine.labels.label_table`) with its per-row arrays."""

    def __init__(self, table: dict[str, Any]):
        rows = table["rows"]
        # Until every worker writes `given_label`, outputs of older jobs carry the same column as `noisy_label`.
        rows.setdefault("given_label", rows.get("noisy_label"))
        self.table = table
        self.classes: list[str] = list(table["classes"])
        self.n = len(rows["text"])
        self.given = np.array(rows["given_label"], dtype=object)
        self.suggested = np.array(rows["suggested_label"], dtype=object)
        self.is_issue = np.array(rows["is_label_issue"], dtype=bool)
        quality = np.array(rows["label_quality"], dtype=np.float64)
        # Worst first; ties keep row order, so the order (and every cursor into it) is deterministic.
        self._orders = {
            "index": np.arange(self.n),
            "label_quality": np.argsort(quality, kind="stable"),
            "random": np.random.default_rng(RANDOM_ORDER_SEED).permutation(self.n),
        }
        self._searches: dict[str, np.ndarray] = {}
        self._searches_lock = threading.Lock()  # pages are served from a thread pool
        self._places: dict[str, np.ndarray] = {}
        for name, order in self._orders.items():
            self._places[name] = np.empty(self.n, dtype=np.int64)
            self._places[name][order] = np.arange(self.n)

    def order(self, name: Order) -> np.ndarray:
        return self._orders[name]

    def place(self, name: Order, index: int) -> int:
        """Where row `index` stands in the order `name`."""
        return int(self._places[name][index])

    @functools.cached_property
    def folded_texts(self) -> list[str]:
        return [t.casefold() for t in self.table["rows"]["text"]]

    def text_matches(self, q: str) -> np.ndarray:
        """Rows whose text contains `q`, ignoring case. Paging through a search asks the same `q` again and
        again, so the last few answers are kept (the scan is the one per-row Python loop of a page)."""
        needle = q.casefold()
        found = self._searches.get(needle)
        if found is None:
            found = np.fromiter((needle in t for t in self.folded_texts), dtype=bool, count=self.n)
            with self._searches_lock:
                if len(self._searches) >= 16:
                    self._searches.pop(next(iter(self._searches)))
                self._searches[needle] = found
        return found


# A few recent tables per process: a 20,000-row table takes tens of MB once parsed.
@functools.lru_cache(maxsize=4)
def _load_view(path: str, mtime_ns: int) -> LabelsView:
    return LabelsView(read_json(Path(path)))


def load_view(path: Path) -> LabelsView:
    try:
        return _load_view(str(path), os.stat(path).st_mtime_ns)
    except FileNotFoundError:
        raise ProblemError(410, "The job's outputs are no longer on disk.", slug="outputs-missing") from None


@dataclass(frozen=True)
class LabelFilter:
    is_label_issue: bool | None = None
    given_label: str | None = None
    suggested_label: str | None = None
    q: str | None = None
    reviewed: bool | None = None

    def mask(self, view: LabelsView, reviewed_rows: set[int]) -> np.ndarray:
        keep = np.ones(view.n, dtype=bool)
        if self.is_label_issue is not None:
            keep &= view.is_issue == self.is_label_issue
        if self.given_label is not None:
            keep &= view.given == self.given_label
        if self.suggested_label is not None:
            keep &= view.suggested == self.suggested_label
        if self.reviewed is not None:
            done = np.zeros(view.n, dtype=bool)
            done[[i for i in reviewed_rows if i < view.n]] = True
            keep &= done == self.reviewed
        if self.q:
            keep &= view.text_matches(self.q)
        return keep


@dataclass
class Selection:
    indices: list[int]  # the page's rows, in order
    has_more: bool
    total: int  # rows matching over all pages


def select_page(view: LabelsView, keep: np.ndarray, order: Order, after: int, limit: int | None) -> Selection:
    """Rows of `keep` in `order` that come after row `after` (-1: from the start); all of them when
    `limit` is None."""
    if after < -1 or after >= view.n:
        raise ProblemError(
            422,
            f"after must be -1 or a row index below {view.n}",
            slug="invalid-cursor",
            errors=[{"field": "query.after", "message": "no such row"}],
        )
    ordered = view.order(order)
    kept_in_order = keep[ordered]
    start = view.place(order, after) + 1 if after >= 0 else 0
    places = np.flatnonzero(kept_in_order[start:]) + start
    page = places if limit is None else places[: limit + 1]
    has_more = limit is not None and len(page) > limit
    chosen = ordered[page[:limit] if limit is not None else page]
    return Selection(indices=[int(i) for i in chosen], has_more=has_more, total=int(kept_in_order.sum()))


def key_id(authorization: str) -> str:
    """Which key saved a decision, without storing the key: a prefix of its SHA-256."""
    key = authorization.partition(" ")[2].strip()
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:12]


def decide(view: LabelsView, inputs: list[ReviewInput], reviewed_at: str, key: str) -> list[dict[str, Any]]:
    """Each input as a stored decision (the label it gives the row), or a 422 naming every bad row."""
    errors: list[dict[str, Any]] = []
    decided: dict[int, dict[str, Any]] = {}
    classes = set(view.classes)
    for pos, item in enumerate(inputs):
        where = f"body.reviews.{pos}"

        def bad(field: str, message: str, row: int = item.index, where: str = where) -> None:
            errors.append({"row": row, "field": f"{where}.{field}", "message": message})

        if item.index >= view.n:
            bad("index", f"no such row: the job has {view.n} rows")
            continue
        if item.action != "set" and item.label is not None:
            bad("label", "label is only given with action 'set'")
            continue
        if item.action == "accept":
            label = view.suggested[item.index]
        elif item.action == "keep":
            label = view.given[item.index]
            if label is None:
                bad("action", "the row has no given label to keep; use action 'set'")
                continue
        elif item.label is None or item.label not in classes:
            bad("label", f"{item.label!r} is not one of the job's classes")
            continue
        else:
            label = item.label
        # The same row twice in one request: the later decision wins, as it would across requests.
        decided[item.index] = {
            "index": item.index,
            "action": item.action,
            "label": str(label),
            "reviewed_at": reviewed_at,
            "key_id": key,
        }
    if errors:
        raise ProblemError(
            422, f"{len(errors)} review(s) could not be applied", slug="invalid-review", errors=errors[:100]
        )
    return list(decided.values())


def corrected_labels(reviews: list[dict[str, Any]]) -> dict[int, str]:
    return {int(r["index"]): r["label"] for r in reviews}


def reviewed_dataset_columns(
    view: LabelsView, reviews: list[dict[str, Any]], gold: list[str | None] | None
) -> dict[str, Any]:
    """The dataset file of "save as dataset": the corrected labels, and `trusted_label` set on the rows a
    reviewer decided (None elsewhere), so a later job can treat them as clean."""
    decisions = corrected_labels(reviews)
    given = view.table["rows"]["given_label"]
    return {
        "text": list(view.table["rows"]["text"]),
        "noisy_label": [decisions.get(i, given[i]) for i in range(view.n)],
        "gold_label": gold if gold is not None and len(gold) == view.n else None,
        "trusted_label": [decisions.get(i) for i in range(view.n)],
    }


def reviewed_dataset_record(
    view: LabelsView,
    columns: dict[str, Any],
    dataset_id: str,
    tenant: str,
    name: str,
    job_id: str,
    n_trusted: int,
) -> dict[str, Any]:
    """The store record of a "save as dataset" dataset: the same fields as an uploaded one's."""
    labels, gold = columns["noisy_label"], columns["gold_label"]
    return {
        "id": dataset_id,
        "object": "dataset",
        "tenant": tenant,
        "name": name,
        "n_rows": view.n,
        "labels": view.classes,
        "label_counts": {c: sum(1 for y in labels if y == c) for c in view.classes},
        "n_missing_labels": sum(1 for y in labels if y is None),
        "has_gold": gold is not None and any(g is not None for g in gold),
        "n_trusted": n_trusted,
        "source_job_id": job_id,
        "created_at": utc_now_iso(),
        "format": "json",
        "text_column": "text",
        "label_column": "noisy_label",
    }
