"""The one labels table and its CSV: same columns for the CLI and the API, formulas neutralised."""

import csv
import io
from types import SimpleNamespace

import numpy as np

from sidyp_engine.labels import LABEL_COLUMNS, csv_safe, iter_labels_csv, label_item, label_table


def _result():
    return SimpleNamespace(
        classes=["a", "b"],
        given_labels=["a", None, "=cmd"],
        suggested_labels=["a", "b", "b"],
        label_quality=np.array([0.9, 0.0, 0.2]),
        is_label_issue=np.array([False, False, True]),
        posteriors=np.array([[0.9, 0.1], [0.3, 0.7], [0.2, 0.8]]),
        is_validation=np.array([False, True, False]),
    )


def test_formula_cells_are_quoted_and_plain_cells_are_not():
    assert csv_safe("=SUM(A1)") == "'=SUM(A1)"
    assert csv_safe("@x") == "'@x" and csv_safe("-1") == "'-1"
    assert csv_safe("plain") == "plain" and csv_safe(None) == ""


def test_csv_has_the_shared_columns_and_quotes_formulas():
    table = label_table(_result(), ["one", "+two", "three"], trusted=[True, False, False])
    rows = list(csv.reader(io.StringIO("".join(iter_labels_csv(table)))))
    assert rows[0] == [*LABEL_COLUMNS, "p_a", "p_b"]
    assert rows[2][1] == "'+two" and rows[2][2] == ""  # missing given label is an empty cell
    assert rows[3][2] == "'=cmd"
    assert label_item(table, 0)["is_trusted"] is True
    assert label_item(table, 1)["probabilities"] == {"a": 0.3, "b": 0.7}


def test_corrected_export_applies_decisions_to_chosen_rows_only():
    table = label_table(_result(), ["one", "two", "three"])
    text = "".join(iter_labels_csv(table, indices=[2, 0], corrected={2: "b"}))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["index"] for r in rows] == ["2", "0"]
    assert rows[0]["corrected_label"] == "b" and rows[0]["is_reviewed"] == "True"
    assert rows[1]["corrected_label"] == "a" and rows[1]["is_reviewed"] == "False"


def test_large_tables_stream_in_several_chunks():
    n = 2000
    result = SimpleNamespace(
        classes=["a", "b"],
        given_labels=["a"] * n,
        suggested_labels=["a"] * n,
        label_quality=np.full(n, 0.5),
        is_label_issue=np.zeros(n, bool),
        posteriors=np.full((n, 2), 0.5),
        is_validation=np.zeros(n, bool),
    )
    chunks = list(iter_labels_csv(label_table(result, ["x" * 50] * n), chunk_chars=4096))
    assert len(chunks) > 10
    assert "".join(chunks).count("\n") == n + 1
