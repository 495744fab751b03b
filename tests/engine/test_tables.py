"""The one table reader: formats, optional columns, limits, and errors that name row and column."""

from __future__ import annotations

import json

import pytest

from sidyp_engine.tables import TableError, read_table, read_table_file, sniff_delimiter
from sidyp_engine.types import InvalidInputError


def test_csv_tsv_and_semicolon_files_read_the_same():
    rows = [("the match, tonight", "sports"), ("pizza; dinner", "food"), ("code", "")]
    comma = "text,noisy_label\n" + "".join(f'"{t}",{y}\n' for t, y in rows)
    tab = "text\tnoisy_label\n" + "".join(f"{t}\t{y}\n" for t, y in rows)
    semi = "text;noisy_label\n" + "".join(f'"{t}";{y}\n' for t, y in rows)
    tables = [read_table(raw.encode(), filename="x.csv", min_classes=0) for raw in (comma, tab, semi)]
    assert [t.format for t in tables] == ["csv", "tsv", "csv-semicolon"]
    for t in tables:
        assert t.texts == [r[0] for r in rows]
        assert t.noisy == ["sports", "food", None]  # an empty cell is a missing label
        assert t.gold is None and t.trusted is None
        assert t.labels == ["food", "sports"] and t.n_missing == 1


def test_sniffing_prefers_the_comma_on_ties():
    assert sniff_delimiter("text") == ","
    assert sniff_delimiter("text;label,x;y") == ";"


def test_jsonl_with_gold_and_trusted_labels():
    lines = [
        {"text": "goal", "noisy_label": "sports", "gold_label": "sports", "trusted_label": "sports"},
        {"text": "pizza", "noisy_label": "food", "trusted_label": ""},
        {"text": "code", "noisy_label": None},
    ]
    raw = "\n".join(json.dumps(x) for x in lines).encode()
    t = read_table(raw, filename="x.jsonl")
    assert t.format == "jsonl"
    assert t.noisy == ["sports", "food", None]
    assert t.gold == ["sports", None, None]
    assert t.trusted == ["sports", None, None]  # empty = not trusted


def test_every_bad_row_is_named_with_its_column():
    raw = b"text,noisy_label,trusted_label\n  ,a\n" + b"ok,b,\n" + b"fine,a,zzz\n"
    with pytest.raises(TableError) as err:
        read_table(raw.replace(b"  ,a\n", b"  ,a,\n"), filename="x.csv")
    assert err.value.errors == [{"row": 0, "column": "text", "message": "empty text"}]
    assert err.value.rows == [0] and err.value.column == "text" and err.value.kind == "invalid"
    assert isinstance(err.value, InvalidInputError)
    with pytest.raises(TableError, match="trusted label 'zzz' is not one of the labels") as err:
        read_table(b"text,noisy_label,trusted_label\nx,a,\ny,b,\nz,a,zzz\n", filename="x.csv")
    assert err.value.errors[0]["row"] == 2 and err.value.errors[0]["column"] == "trusted_label"


def test_limits_are_plain_arguments():
    raw = b"text,noisy_label\n" + b"".join(b"t%d,c%d\n" % (i, i % 3) for i in range(6))
    with pytest.raises(TableError) as err:
        read_table(raw, max_rows=5)
    assert err.value.kind == "too-many-rows"
    with pytest.raises(TableError, match="the limit is 2") as err:
        read_table(raw, max_classes=2)
    assert err.value.kind == "too-many-classes"
    with pytest.raises(TableError, match="the limit is 1"):
        read_table(raw, max_text_chars=1)
    assert len(read_table(raw, max_rows=6, max_classes=3, max_text_chars=2).texts) == 6


def test_gold_outside_the_labels_is_refused_unless_allowed():
    raw = b"text,noisy_label,gold_label\na,x,x\nb,y,z\n"
    with pytest.raises(TableError, match="gold label 'z'"):
        read_table(raw)
    assert read_table(raw, gold_in_labels=False).gold == ["x", "z"]


def test_a_file_names_itself_in_the_message(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("text\nhello\n", encoding="utf-8")
    with pytest.raises(TableError, match="train.csv: bad CSV header") as err:
        read_table_file(path)
    assert "missing column 'noisy_label'" in str(err.value)
    assert read_table_file(path, require_labels=False).noisy is None
    with pytest.raises(TableError, match="file not found"):
        read_table_file(tmp_path / "missing.csv")
