"""Input validation names the problem and the rows; the holdout is stratified and reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from sidyp_engine.data import MISSING, stratified_holdout, validate_inputs
from sidyp_engine.types import InvalidInputError

CLASSES = ["a", "b", "c"]


def test_valid_input_encodes_labels_and_keeps_missing_as_unknown():
    texts = ["x one", "x two", "y one", "y two", "z"]
    labels = ["a", "a", "b", "b", None]
    out_texts, ids, classes = validate_inputs(texts, labels, CLASSES)
    assert out_texts == texts
    assert classes == CLASSES
    assert ids.tolist() == [0, 0, 1, 1, MISSING]


@pytest.mark.parametrize("missing", [None, "", "   ", float("nan")])
def test_every_spelling_of_a_missing_label_is_unknown(missing):
    _, ids, _ = validate_inputs(["p", "q", "r", "s", "t"], ["a", "a", "b", "b", missing], CLASSES)
    assert ids[4] == MISSING


def test_empty_text_names_the_rows():
    with pytest.raises(InvalidInputError) as err:
        validate_inputs(["ok", "", "fine", "  ", "also"], ["a", "a", "b", "b", "a"], CLASSES)
    assert err.value.rows == [1, 3]
    assert "empty" in str(err.value) and "1, 3" in str(err.value)


def test_fewer_than_two_classes_is_rejected():
    with pytest.raises(InvalidInputError, match="at least two classes"):
        validate_inputs(["p", "q"], ["a", "a"], ["a"])


def test_duplicate_class_names_are_rejected():
    with pytest.raises(InvalidInputError, match="duplicates") as err:
        validate_inputs(["p", "q"], ["a", "b"], ["a", "b", "a"])
    assert err.value.rows == [2]


def test_label_not_in_class_list_names_rows_and_label():
    with pytest.raises(InvalidInputError) as err:
        validate_inputs(["p", "q", "r", "s", "t"], ["a", "zebra", "b", "b", "zebra"], CLASSES + ["d"])
    assert err.value.rows == [1, 4]
    assert "zebra" in str(err.value)


def test_mismatched_lengths_are_rejected_with_the_extra_rows():
    with pytest.raises(InvalidInputError, match="3 texts but 5 labels") as err:
        validate_inputs(["p", "q", "r"], ["a", "a", "b", "b", "b"], CLASSES)
    assert err.value.rows == [3, 4]


def test_too_few_examples_per_class_names_the_rare_rows():
    # only class a has two labelled rows; b and c have one each -> nothing to contrast a with
    with pytest.raises(InvalidInputError, match="too few examples per class") as err:
        validate_inputs(["p", "q", "r", "s", "t"], ["a", "a", "b", "c", None], CLASSES)
    assert err.value.rows == [2, 3]


def test_unused_classes_and_one_stray_label_are_allowed():
    # class c is never used, d once: two trainable classes remain, so the run can go ahead
    _, ids, _ = validate_inputs(["p", "q", "r", "s", "t"], ["a", "a", "b", "b", "d"], CLASSES + ["d"])
    assert np.bincount(ids, minlength=4).tolist() == [2, 2, 0, 1]


def test_stratified_holdout_takes_the_fraction_of_every_class():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20 + [MISSING] * 10)
    mask = stratified_holdout(labels, 0.1, seed=3)
    assert mask.sum() == 11
    per_stratum = {int(s): int(mask[labels == s].sum()) for s in np.unique(labels)}
    assert per_stratum == {0: 5, 1: 3, 2: 2, MISSING: 1}
    assert np.array_equal(mask, stratified_holdout(labels, 0.1, seed=3))
    assert not np.array_equal(mask, stratified_holdout(labels, 0.1, seed=4))


def test_stratified_holdout_keeps_a_training_row_of_every_class():
    labels = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 2])
    mask = stratified_holdout(labels, 0.3, seed=0)
    for c in (0, 1, 2):
        assert (~mask[labels == c]).any()
    assert mask.sum() == 3  # the two singleton classes cannot give a row, class 0 gives all three
