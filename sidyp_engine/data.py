"""Input checks and the stratified validation holdout.

Every problem with user data is reported as one `InvalidInputError` whose message names the problem and
the offending 0-based rows, so the CLI and the API can point the user at the exact lines to fix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from sidyp_engine.types import InvalidInputError

MISSING = -1  # label id of a row whose labeller gave no usable answer
# Training needs MIN_TRAINABLE_CLASSES classes with MIN_ROWS_PER_CLASS labelled rows each (validate_inputs);
# the service checks an upload's class counts against these before it accepts a job.
MIN_ROWS_PER_CLASS = 2
MIN_TRAINABLE_CLASSES = 2


def trainable_classes(label_counts: dict[str, int]) -> list[str]:
    """The classes with enough labelled rows to be trained on."""
    return [c for c, n in label_counts.items() if n >= MIN_ROWS_PER_CLASS]


def is_missing_label(label: object) -> bool:
    """None, an empty/blank string or a float NaN (pandas' empty cell) all mean 'no usable label'."""
    if label is None:
        return True
    if isinstance(label, float) and math.isnan(label):
        return True
    return isinstance(label, str) and label.strip() == ""


def validate_classes(classes: Sequence[str]) -> list[str]:
    """At least two distinct, non-empty class names."""
    names = [str(c) for c in classes]
    blank = [i for i, c in enumerate(names) if c.strip() == ""]
    if blank:
        raise InvalidInputError("class names must not be empty", rows=blank, column="classes")
    seen: dict[str, int] = {}
    duplicates = []
    for i, c in enumerate(names):
        if c in seen:
            duplicates.append(i)
        seen.setdefault(c, i)
    if duplicates:
        raise InvalidInputError(
            f"class list has duplicates: {sorted({names[i] for i in duplicates})}",
            rows=duplicates,
            column="classes",
        )
    if len(names) < 2:
        raise InvalidInputError(f"need at least two classes, got {len(names)}: {names}", column="classes")
    return names


def validate_texts(texts: Sequence[str], what: str = "train") -> list[str]:
    """Every text must be a non-blank string."""
    if isinstance(texts, str):
        raise InvalidInputError(f"{what} texts must be a list of strings, not one string", column="text")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str) or t.strip() == ""]
    if bad:
        raise InvalidInputError(
            f"{what} set has empty or non-text entries in 'text'", rows=bad, column="text"
        )
    return list(texts)


def encode_labels(labels: Sequence[object], classes: list[str], what: str = "train") -> np.ndarray:
    """Class names -> int64 ids, MISSING (-1) for missing labels; unknown names are an error."""
    index = {c: i for i, c in enumerate(classes)}
    ids = np.full(len(labels), MISSING, dtype=np.int64)
    unknown: list[int] = []
    for i, label in enumerate(labels):
        if is_missing_label(label):
            continue
        key = str(label)
        if key not in index and key.strip() in index:
            key = key.strip()  # stray whitespace from CSV editing is not a different class
        if key not in index:
            unknown.append(i)
        else:
            ids[i] = index[key]
    if unknown:
        names = sorted({str(labels[i]) for i in unknown})[:10]
        raise InvalidInputError(
            f"{what} set has labels not in the class list {classes}: {names}",
            rows=unknown,
            column="noisy_label",
        )
    return ids


def validate_inputs(
    texts: Sequence[str],
    labels: Sequence[object],
    classes: Sequence[str],
    what: str = "train",
    min_per_class: int = MIN_ROWS_PER_CLASS,
    min_trainable_classes: int = MIN_TRAINABLE_CLASSES,
) -> tuple[list[str], np.ndarray, list[str]]:
    """Check one labelled set and return (texts, label ids with -1 = missing, class names).

    Training needs at least `min_trainable_classes` classes with `min_per_class` labelled examples each;
    classes the labeller never used are allowed (they may still be the true class of some rows). A
    class used on fewer than `min_per_class` rows is not an error as long as enough other classes are
    trainable: one stray LLM answer should not block a run.
    """
    names = validate_classes(classes)
    if len(texts) != len(labels):
        raise InvalidInputError(
            f"{what} set: {len(texts)} texts but {len(labels)} labels (lengths must match)",
            rows=list(range(min(len(texts), len(labels)), max(len(texts), len(labels)))),
        )
    if len(texts) == 0:
        raise InvalidInputError(f"{what} set is empty")
    text_list = validate_texts(texts, what)
    ids = encode_labels(labels, names, what)
    if min_trainable_classes > 0:
        counts = np.bincount(ids[ids >= 0], minlength=len(names))
        trainable = np.flatnonzero(counts >= min_per_class)
        if len(trainable) < min_trainable_classes:
            rare = [c for c in range(len(names)) if 0 < counts[c] < min_per_class]
            rows = [int(i) for i in np.flatnonzero(np.isin(ids, rare))] if rare else []
            used = {names[c]: int(counts[c]) for c in range(len(names)) if counts[c] > 0}
            raise InvalidInputError(
                f"too few examples per class to train: need at least {min_trainable_classes} classes with "
                f">= {min_per_class} labelled {what} examples each, got counts {used}",
                rows=rows,
                column="noisy_label",
            )
    return text_list, ids, names


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of held-out rows: `fraction` of every label stratum (missing labels are one stratum).

    The total is round(N * fraction) (at least 1), allocated to strata by largest remainder so small
    classes are not rounded away; a stratum never gives up its last row, so every trainable class keeps
    at least one training example.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if not 0.0 < fraction < 1.0:
        raise InvalidInputError(f"holdout fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    strata = np.unique(labels)
    sizes = np.array([(labels == s).sum() for s in strata])
    target = max(1, int(round(n * fraction)))
    quotas = sizes * fraction
    take = np.floor(quotas).astype(int)
    capacity = sizes - 1  # keep one row of every stratum for training
    take = np.minimum(take, capacity)
    remaining = target - take.sum()
    order = np.argsort(-(quotas - np.floor(quotas)), kind="stable")
    while remaining > 0:
        progressed = False
        for s in order:
            if remaining <= 0:
                break
            if take[s] < capacity[s]:
                take[s] += 1
                remaining -= 1
                progressed = True
        if not progressed:
            break
    mask = np.zeros(n, dtype=bool)
    for s, k in zip(strata, take, strict=True):
        if k <= 0:
            continue
        rows = np.flatnonzero(labels == s)
        mask[rng.choice(rows, size=int(k), replace=False)] = True
    if not mask.any():
        raise InvalidInputError("too few examples to hold out a validation set; pass one explicitly")
    return mask
