"""Plots: valid SVG and PNG for every plot the report has data for, fast, headless, names with markup."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from sidyp_engine.plots import render_plots
from sidyp_engine.report import PLOT_NAMES, build_report
from tests.engine.report_fixtures import EVAL_GOLD, SERVED_PRED, fake_result, one_hot_probs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_valid(formats: dict[str, bytes]) -> None:
    root = ET.fromstring(formats["svg"])
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert formats["png"].startswith(PNG_MAGIC) and len(formats["png"]) > 1000


def test_every_plot_renders_as_svg_and_png_with_gold():
    report = build_report(fake_result(), eval_gold=EVAL_GOLD, served_eval_probs=one_hot_probs(SERVED_PRED))
    plots = render_plots(report)
    assert set(plots) == set(PLOT_NAMES)
    for formats in plots.values():
        _assert_valid(formats)


def test_without_gold_there_is_no_reliability_or_confusion_plot():
    plots = render_plots(build_report(fake_result()))
    assert set(plots) == {"noise_matrix", "class_distribution", "label_quality"}


def test_class_names_with_markup_and_dollars_and_many_classes_render():
    names = ["<script>alert(1)</script>", "$x$ & $y", "a" * 80] + [f"class {i}" for i in range(27)]
    given = [names[i % len(names)] for i in range(120)]
    plots = render_plots(build_report(fake_result(classes=names, given=given)))
    for formats in plots.values():
        _assert_valid(formats)
        # text is drawn as paths: the name never appears as markup (or text) in the SVG
        assert b"<script" not in formats["svg"]
