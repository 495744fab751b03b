"""The job page's "What was delivered" block for a job with trusted rows and an evaluation set, in a real
browser: the estimates measured on trusted rows, the delivered model's accuracy carried to the evaluation
texts, and no gold-free note. The job's outputs are written directly (no training)."""

from __future__ import annotations

import contextlib

import pytest

from sidyp_core.artifacts import REPORT_FILE, artifact_dir, write_json
from sidyp_core.config import Settings
from sidyp_core.store.sqlite_store import SqliteJobStore
from sidyp_engine.report import build_report
from tests.browser.conftest import app_in_thread
from tests.engine.report_fixtures import fake_result
from tests.service.test_labels_review import KEY_1, KEY_2, finished_job, labels_table


def _estimate(acc, low, high, method="trusted", rows=100):
    return {"accuracy": acc, "low": low, "high": high, "method": method, "rows": rows}


SELECTION = {
    "kept": "refined",
    "kept_model": "served",
    "reason": "the trusted rows show 54% of the labels wrong, at least the 40% where refinement has helped",
    "estimates": {
        "plain": _estimate(0.47, 0.375, 0.567),
        "refined": _estimate(0.57, 0.472, 0.663),
        "served": _estimate(0.64, 0.542, 0.727),
        "plain_model": _estimate(0.48, 0.385, 0.577),
    },
    "llm_label_accuracy": _estimate(0.463, 0.366, 0.563),
    "noise_share": _estimate(0.537, 0.437, 0.634),
    "temperature_source": "trusted rows (n=100: 0 validation, 100 training)",
    "evaluation_estimate": _estimate(0.784, 0.686, 0.86, method="transferred", rows=500),
}


def _job_with(tmp_path, selection):
    """A finished job whose report carries `selection`, served by the app in a thread: (base, job id)."""
    settings = Settings(api_keys=f"t1:{KEY_1},t2:{KEY_2}", data_dir=tmp_path / "data")
    store = SqliteJobStore(tmp_path / "store.sqlite3")
    job_id = finished_job(store, settings.data_dir, "t1", labels_table(40))
    report = build_report(fake_result(diagnostics={"selection": selection}))
    write_json(artifact_dir(settings.data_dir, "t1", "jobs", job_id) / REPORT_FILE, report)
    return app_in_thread(settings, store), job_id


@pytest.fixture
def job_serving(tmp_path):
    """job_serving(selection) -> (base, job id): a finished job whose report carries `selection`, served by
    the app in a thread until the test ends."""
    with contextlib.ExitStack() as stack:

        def serve(selection):
            app, job_id = _job_with(tmp_path, selection)
            return stack.enter_context(app), job_id

        yield serve


def _open_report(open_page, base, job_id):
    """Sign in and open the job page at its estimates table; returns the watched page."""
    watched = open_page(base)
    page = watched.page
    page.goto(base + "/")
    page.fill("#api-key", KEY_1)
    page.click("button[type=submit]")
    page.wait_for_selector("#drop")
    page.goto(base + f"/#/jobs/{job_id}")
    page.wait_for_selector("#report .kept table.estimates")
    return watched


def test_the_job_page_shows_the_delivered_model_on_the_evaluation_texts(
    open_page, job_serving, screenshot_dir
):
    watched = _open_report(open_page, *job_serving(SELECTION))
    page = watched.page
    row = page.inner_text('#report .kept tr[data-estimate="delivered_model_on_evaluation"]')
    assert "delivered model, on the evaluation texts" in row and "0.784" in row and "0.686 – 0.860" in row
    assert "carried to these texts by confidence (ATC" in row and "500" in row
    assert "trusted rows (Wilson 95 %)" in page.inner_text(
        '#report .kept tr[data-estimate="delivered_model"]'
    )
    # every estimate is read from trusted rows: the gold-free note is not shown
    assert "from the noisy labels alone" not in page.inner_text("#report .kept")
    page.screenshot(path=str(screenshot_dir / "console-trusted-estimates.png"), full_page=True)
    assert watched.dialogs == [] and watched.errors == []


GOLD_FREE = {
    "kept": "refined",
    "kept_model": "served",
    "reason": "the run estimates 70% of the labels wrong, at least the 40% where refinement has helped",
    "estimates": {
        "plain": _estimate(0.291, 0.006, 1.0, "posterior", 500),
        "refined": _estimate(0.403, 0.0, 1.0, "posterior", 500),
        "served": _estimate(0.557, 0.0, 1.0, "moments", 500),
        "plain_model": _estimate(0.291, 0.006, 1.0, "posterior", 500),
    },
    "llm_label_accuracy": _estimate(0.30, 0.019, 0.997, "posterior", 500),
    "noise_share": _estimate(0.70, 0.003, 0.981, "posterior", 500),
    "temperature_source": "gold-free reference; matched on the evaluation texts to its estimate carried there (ATC)",
    "evaluation_estimate": _estimate(0.646, 0.0, 1.0, method="carried", rows=500),
    "evaluation_estimates": {
        "plain": _estimate(0.512, 0.0, 1.0, method="carried", rows=500),
        "served": _estimate(0.646, 0.0, 1.0, method="carried", rows=500),
    },
}


def test_gold_free_the_carried_estimate_is_shown_as_an_estimate(open_page, job_serving, screenshot_dir):
    watched = _open_report(open_page, *job_serving(GOLD_FREE))
    page = watched.page
    row = page.inner_text('#report .kept tr[data-estimate="delivered_model_on_evaluation"]')
    assert (
        "0.646" in row and "its estimate on the validation texts, carried to these texts by confidence" in row
    )
    # the plain classifier beside it on the same texts: how much the delivered model helped there
    plain = page.inner_text('#report .kept tr[data-estimate="noisy_classifier_on_evaluation"]')
    assert "plain classifier, on the evaluation texts" in plain and "0.512" in plain
    # a carried gold-free estimate is still an estimate: the gold-free note stays
    assert "from the noisy labels alone" in page.inner_text("#report .kept")
    page.screenshot(path=str(screenshot_dir / "console-gold-free-carried.png"), full_page=True)
    assert watched.dialogs == [] and watched.errors == []


HELD = {
    "kept": "plain",
    "kept_model": "plain_model",
    "reason": "the run estimates 32% of the labels wrong, below the 40% where refinement has helped, so the "
    "plain classifier is kept",
    "estimates": {
        "plain": _estimate(0.668, 0.653, 1.0, "posterior", 466),
        "refined": _estimate(0.719, 0.709, 0.838, "posterior", 466),
        "served": _estimate(0.707, 0.696, 0.866, "posterior", 466),
        "plain_model": _estimate(0.668, 0.653, 1.0, "posterior", 466),
    },
    "llm_label_accuracy": _estimate(0.678, 0.673, 0.998, "posterior", 4791),
    "noise_share": _estimate(0.322, 0.002, 0.327, "posterior", 4791),
    "temperature_source": "gold-free reference",
    "evaluation_estimate": _estimate(0.680, 0.680, 1.0, method="held", rows=466),
    "evaluation_estimates": {
        "plain": _estimate(0.680, 0.680, 1.0, method="held", rows=466),
        "served": _estimate(0.870, 0.844, 0.954, method="carried", rows=500),
    },
}


def test_a_model_that_copies_its_labels_is_shown_with_its_held_estimate(
    open_page, job_serving, screenshot_dir
):
    """A kept plain model that reproduces a rule-made labeller: its figure on the evaluation texts is its held
    validation estimate, and the console says where it comes from in words, not as a bare method code."""
    watched = _open_report(open_page, *job_serving(HELD))
    page = watched.page
    row = page.inner_text('#report .kept tr[data-estimate="delivered_model_on_evaluation"]')
    assert (
        "0.680" in row
        and "held to the estimated share of wrong labels (the model reproduces its labels)" in row
    )
    assert "from the noisy labels alone" in page.inner_text("#report .kept")
    page.screenshot(path=str(screenshot_dir / "console-held-estimate.png"), full_page=True)
    assert watched.dialogs == [] and watched.errors == []


EXPECTED_GAIN = dict(
    HELD,
    kept="refined",
    kept_model="served",
    reason="the run estimates 31% of the labels wrong, below the 40% where refinement has helped, but the "
    "refined posteriors expect the refined labels 12 points more accurate than the plain classifier's, at "
    "least the 10 that has meant a gain on development sets, so the method is kept",
    estimates=dict(HELD["estimates"], refined=_estimate(0.788, 0.709, 0.838, "posterior", 466)),
    evaluation_estimate=HELD["evaluation_estimates"]["served"],
    method_noise_share=0.31,
    expected_gain=0.12,
)


def test_a_warning_that_trusted_rows_settle_leads_to_a_random_sample_to_review(
    open_page, job_serving, screenshot_dir
):
    """The gate opened on the method's own view of a large gain: the warning says so, and its button turns
    the review table to a random sample with every filter cleared (a filtered pick is not a random draw,
    which every figure measured on trusted rows assumes)."""
    watched = _open_report(open_page, *job_serving(EXPECTED_GAIN))
    page = watched.page
    warning = page.locator('#report .warnings li[data-warning="method_kept_on_expected_gain"]')
    assert "12 points more accurate" in warning.inner_text() and "trusted_label" in warning.inner_text()
    page.wait_for_selector("#review-count")
    page.select_option("#review-flag", "true")  # a reviewer's filter, which a random draw must not keep
    page.wait_for_selector("#review-count:not(:has-text('of 40'))")
    warning.locator("button.sample-for-trusted").click()
    page.wait_for_selector("#review-count:has-text('rows 1–40 of 40')")
    assert page.input_value("#review-order") == "random" and page.input_value("#review-flag") == ""
    page.screenshot(path=str(screenshot_dir / "console-expected-gain-warning.png"), full_page=True)
    assert watched.dialogs == [] and watched.errors == []


REFIT = dict(
    SELECTION,
    kept="plain",
    kept_model="plain_model",
    reason="the trusted rows show 20% of the labels wrong, below the 40% where refinement has helped, so the "
    "plain classifier is kept; delivered: the plain classifier's labels and model, fitted again on every "
    "row with the 100 trusted labels in place of the given ones",
    refit={"trusted_rows": 100, "labels": "plain", "model": "plain_model", "temperature": 1.06},
)
SERVED_REFIT = dict(
    SELECTION,
    kept="refined",
    kept_model="served",
    reason="the trusted rows show 55% of the labels wrong; delivered: the distilled served model, fitted again "
    "on every row with the 100 trusted labels in place of the given ones",
    refit={"trusted_rows": 100, "labels": None, "model": "served", "temperature": 1.06},
)


@pytest.mark.parametrize(
    ("selection", "words", "shot"),
    [
        (REFIT, "the plain classifier's labels and model", "console-refit.png"),
        (SERVED_REFIT, "the distilled served model", "console-refit-served.png"),
    ],
)
def test_what_the_trusted_labels_fitted_again_is_said_above_the_estimates(
    open_page, job_serving, screenshot_dir, selection, words, shot
):
    watched = _open_report(open_page, *job_serving(selection))
    page = watched.page
    refit = selection["refit"]
    fitted = " ".join(name for name in (refit["labels"], refit["model"]) if name)
    line = page.locator(f'#report .kept p.refit[data-refit="{fitted}"]')
    assert line.inner_text() == (
        f"Fitted again with the 100 trusted labels in place: {words}. "
        "The estimates are of the fits that left those rows out."
    )
    page.screenshot(path=str(screenshot_dir / shot), full_page=True)
    assert watched.dialogs == [] and watched.errors == []
    # a job that did not refit has no such line
    watched = _open_report(open_page, *job_serving(SELECTION))
    assert watched.page.locator("#report .kept p.refit").count() == 0
