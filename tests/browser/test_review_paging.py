"""The review table over a large job, in a real browser: it pages through the API (a few requests, never the
whole table), the keyboard crosses page boundaries both ways, and a class picked with a digit is saved.
The job's outputs are written directly (no training) and the real app is served by uvicorn in a thread."""

from __future__ import annotations

import httpx
import pytest

from sidyp_core.config import Settings
from sidyp_core.store.sqlite_store import SqliteJobStore
from tests.browser.conftest import app_in_thread
from tests.service.test_labels_review import CLASSES, KEY_1, KEY_2, finished_job, labels_table

N_ROWS = 3000


@pytest.fixture
def big_job(tmp_path):
    settings = Settings(api_keys=f"t1:{KEY_1},t2:{KEY_2}", data_dir=tmp_path / "data")
    store = SqliteJobStore(tmp_path / "store.sqlite3")
    table = labels_table(N_ROWS)
    job_id = finished_job(store, settings.data_dir, "t1", table)
    with app_in_thread(settings, store) as base:
        yield base, job_id, table


def test_keyboard_pages_through_a_large_table(open_page, big_job, screenshot_dir):
    base, job_id, table = big_job
    watched = open_page(base)
    page = watched.page
    quality = table["rows"]["label_quality"]
    worst_first = sorted(range(N_ROWS), key=lambda i: (quality[i], i))
    page.goto(base + "/")
    page.fill("#api-key", KEY_1)
    page.click("button[type=submit]")
    page.wait_for_selector("#drop")
    page.goto(base + f"/#/jobs/{job_id}")
    page.wait_for_selector("#review-rows tr[data-index]")
    assert page.inner_text("#review-count") == f"rows 1–50 of {N_ROWS}"
    shown = page.locator("#review-rows tr[data-index]").evaluate_all(
        "rows => rows.map(r => +r.dataset.index)"
    )
    assert shown == worst_first[:50]

    page.locator("table.review").focus()
    for _ in range(50):
        page.keyboard.press("j")
    page.wait_for_selector(f"#review-count:has-text('rows 51–100 of {N_ROWS}')")
    assert page.get_attribute("#review-rows tr.sel", "data-index") == str(worst_first[50])
    page.keyboard.press("k")
    page.wait_for_selector(f"#review-count:has-text('rows 1–50 of {N_ROWS}')")
    assert page.get_attribute("#review-rows tr.sel", "data-index") == str(worst_first[49])

    page.keyboard.press("2")
    page.wait_for_selector(f"#review-status:has-text('Row {worst_first[49]}: set to {CLASSES[1]}')")
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY_1}"}) as api:
        reviews = api.get(f"/v1/jobs/{job_id}/reviews").json()["data"]
    assert [(r["index"], r["action"], r["label"]) for r in reviews] == [(worst_first[49], "set", CLASSES[1])]

    label_calls = [u for u in watched.urls if f"/v1/jobs/{job_id}/labels" in u]
    assert len(label_calls) <= 5 and all("limit=50" in u or "limit=1" in u for u in label_calls)

    # the random sample to hand-check as trusted rows: the API's fixed shuffle, page by page
    page.select_option("#review-order", "random")
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY_1}"}) as api:
        shuffled = [
            it["index"] for it in api.get(f"/v1/jobs/{job_id}/labels?order=random&limit=50").json()["data"]
        ]
    page.wait_for_function(
        "first => document.querySelector('#review-rows tr[data-index]')?.dataset.index === String(first)",
        arg=shuffled[0],
    )
    shown = page.locator("#review-rows tr[data-index]").evaluate_all(
        "rows => rows.map(r => +r.dataset.index)"
    )
    assert shown == shuffled and shown != worst_first[:50]
    page.screenshot(path=str(screenshot_dir / "console-review-random.png"), full_page=False)
    assert watched.errors == [] and watched.dialogs == []
