"""The console in a real browser against a real `sidyp serve`: the whole path a user walks (sign in, upload,
a bad upload's row errors, a tiny job, its report and plots, keyboard review, corrected export, a model's
probabilities) with hostile texts and names that must stay text; and a second tenant who sees none of it."""

from __future__ import annotations

import csv
import re

import httpx

from tests.conftest import toy_dataset, write_csv
from tests.service.conftest import KEY_1, KEY_2, tiny_params

XSS_TEXTS = [
    "<script>window.__xss = 1</script> football match goal team",
    '<img src=x onerror="window.__xss = 2"> pizza pasta recipe cheese',
]
XSS_NAME = "<img src=x onerror=window.__xss=3> train"


def sign_in(page, key: str) -> None:
    page.fill("#api-key", key)
    page.click("button[type=submit]")


def assert_nothing_ran(w) -> None:
    assert w.page.evaluate("() => window.__xss") is None
    assert w.dialogs == [] and w.errors == []


def upload(page, path, name: str | None = None) -> None:
    page.set_input_files("#file", str(path))
    if name is not None:
        page.fill("#ds-name", name)
    page.click("#upload")


def test_console_walk_through(watched, embedded_service, tmp_path, screenshot_dir):
    w, page = watched, watched.page
    page.goto(w.base_url + "/")
    sign_in(page, KEY_1)
    page.wait_for_selector("#drop")

    # A good upload whose texts and name try to run script.
    texts, noisy, gold, classes = toy_dataset(n_per_class=20)
    n_classes = len(classes)
    good = write_csv(
        tmp_path / "train.csv", texts + XSS_TEXTS, noisy + ["sports", "food"], gold + ["sports", "food"]
    )
    upload(page, good, XSS_NAME)
    page.wait_for_selector("#upload-outcome .ok")
    assert XSS_NAME in page.inner_text("#datasets")
    assert_nothing_ran(w)
    texts, noisy, gold, _ = toy_dataset(n_per_class=5, seed=7)
    upload(page, write_csv(tmp_path / "eval.csv", texts, noisy, gold), "gold eval")
    page.wait_for_selector("#upload-outcome .ok:has-text('gold eval')")

    # A bad upload: its row errors are shown next to those rows.
    bad = tmp_path / "bad.csv"
    bad.write_text(
        'text,noisy_label\ngood text,food\n"",tech\nfine text,sports\n"   ",food\n', encoding="utf-8"
    )
    upload(page, bad)
    page.wait_for_selector("#upload-errors")
    for row in (1, 3):
        assert "empty text" in page.inner_text(f'#upload-errors tr.bad[data-row="{row}"]')
    assert page.locator("#upload-errors tr.bad").count() == 2
    page.screenshot(path=str(screenshot_dir / "console-datasets.png"), full_page=True)

    # Start a tiny job from the form the API's params schema built.
    page.click(f'#datasets tr:has-text("{XSS_NAME}") >> text=Start a job')
    page.wait_for_selector("#start-job")
    page.select_option("#job-eval", label="gold eval (15 rows)")
    # The bundled MiniLM rather than the random tiny backbone: it learns the toy topics in one epoch, so the
    # flipped labels are reliably flagged (and the screenshots show a model that works).
    for name, value in tiny_params(None, epochs=4, diffusion_epochs=4).items():
        page.fill(f"#param-{name}", "" if value is None else str(value))
    page.click("#start-job")
    page.wait_for_url(re.compile(r"#/jobs/job_"))
    job_id = page.url.rsplit("/", 1)[-1]
    page.goto(w.base_url + "/#/jobs")
    page.wait_for_selector(f'#jobs tr[data-id="{job_id}"]')
    page.wait_for_selector(f'#jobs tr[data-id="{job_id}"] .badge.st-succeeded', timeout=240_000)
    page.screenshot(path=str(screenshot_dir / "console-jobs.png"), full_page=True)

    # The job's page: progress by stage, the report, the review table.
    page.click(f'#jobs a:has-text("{job_id}")')
    page.wait_for_selector("#review-rows tr[data-index]")
    assert page.locator(".stages li.done").count() >= 6
    # a stage only trusted rows bring (what is kept, refitted with them) has no pill on this job
    assert "refit" not in page.locator(".stages li").all_inner_texts()
    page.wait_for_selector("#report .figures")
    assert "gold-labelled rows" in page.inner_text("#report")
    # what the select stage delivered, and its reason, from the report
    assert page.locator("#report .kept[data-kept]").count() == 1
    assert "Labels: the " in page.inner_text("#report .kept")
    # the estimates with their intervals: the given labels, the plain classifier and what was delivered
    shown = page.locator("#report .kept table.estimates tr[data-estimate]")
    keys = [shown.nth(i).get_attribute("data-estimate") for i in range(shown.count())]
    assert {"llm_labels", "noisy_classifier", "delivered_labels", "delivered_model"} <= set(keys)
    assert re.search(r"0\.\d{3} – [01]\.\d{3}", page.inner_text("#report .kept table.estimates"))
    page.wait_for_selector("#plots > *")
    # gold rows: reliability and confusion too
    assert page.locator("#plots img[src^='blob:']").count() == 5
    assert_hostile_texts_stay_text(w)

    target = review_one_with_keyboard(w, job_id)
    page.select_option("#review-flag", "")
    page.wait_for_function("() => document.querySelectorAll('#review-rows tr[data-index]').length > 2")
    page.screenshot(path=str(screenshot_dir / "console-job.png"), full_page=True)

    with page.expect_download() as download:
        page.click("#export-corrected")
    with open(download.value.path(), encoding="utf-8", newline="") as f:
        rows = {int(r["index"]): r for r in csv.DictReader(f)}
    assert rows[target["index"]]["corrected_label"] == target["suggested_label"] != target["given_label"]
    assert rows[target["index"]]["is_reviewed"] == "True"
    assert sum(r["is_reviewed"] == "True" for r in rows.values()) == 1

    # The model's page: class probabilities as bars.
    page.click("text=Open the model")
    page.fill("#predict-texts", "the pizza bake cheese dinner today\nthe laptop code server cloud today")
    page.click("#predict")
    page.wait_for_selector(".prediction >> nth=1")
    assert page.locator(".prediction .prob").count() == 2 * n_classes
    page.screenshot(path=str(screenshot_dir / "console-model.png"), full_page=True)

    # Another job, cancelled from its page while it waits or runs.
    page.goto(w.base_url + "/#/jobs")
    page.click("#start-job")
    page.wait_for_url(re.compile(r"#/jobs/job_"))
    page.click("#job-status button:has-text('Cancel')")
    page.wait_for_selector("#job-status .badge.st-cancelled", timeout=60_000)

    assert_nothing_ran(w)
    assert not any(KEY_1 in url for url in w.urls)


def assert_hostile_texts_stay_text(w) -> None:
    page = w.page
    page.fill("#review-search", "<script>")
    page.wait_for_function("() => document.querySelectorAll('#review-rows tr[data-index]').length === 1")
    assert XSS_TEXTS[0] in page.inner_text("#review-rows")
    assert page.inner_text("#review-detail .ptext") == XSS_TEXTS[0]  # the selected row, in full
    page.fill("#review-search", "onerror")
    page.wait_for_function(
        "t => document.querySelector('#review-rows td.text')?.textContent === t", arg=XSS_TEXTS[1]
    )
    assert page.locator("#review-rows img, #review-rows script, #review-detail img").count() == 0
    page.fill("#review-search", "")
    page.wait_for_function("() => document.querySelectorAll('#review-rows tr[data-index]').length > 2")
    assert_nothing_ran(w)


def review_one_with_keyboard(w, job_id: str) -> dict:
    """Filter to flagged rows (worst first), walk down with j to one whose suggestion differs, accept it with a."""
    page = w.page
    page.select_option("#review-flag", "true")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#review-rows tr[data-index]')].every(r => r.classList.contains('issue'))"
    )
    with httpx.Client(base_url=w.base_url, headers={"Authorization": f"Bearer {KEY_1}"}) as api:
        shown = api.get(
            f"/v1/jobs/{job_id}/labels",
            params={"is_label_issue": True, "order": "label_quality", "limit": 50},
        ).json()["data"]
    assert [
        int(i)
        for i in page.locator("#review-rows tr[data-index]").evaluate_all(
            "rows => rows.map(r => r.dataset.index)"
        )
    ] == [it["index"] for it in shown]
    position = next(i for i, it in enumerate(shown) if it["given_label"] != it["suggested_label"])
    page.locator("table.review").focus()
    for _ in range(position):
        page.keyboard.press("j")
    target = shown[position]
    assert page.get_attribute("#review-rows tr.sel", "data-index") == str(target["index"])
    page.keyboard.press("a")
    page.wait_for_selector(f"#review-status:has-text('Row {target['index']}: accepted')")
    decided = page.locator(f'#review-rows tr[data-index="{target["index"]}"] td.decision')
    assert decided.inner_text() == f"accepted {target['suggested_label']}"
    return target


def test_second_tenant_sees_none_of_it(watched, embedded_service, tmp_path):
    w, page = watched, watched.page
    with httpx.Client(base_url=w.base_url, headers={"Authorization": f"Bearer {KEY_1}"}) as owner:
        texts, noisy, _gold, _ = toy_dataset(n_per_class=3)
        path = write_csv(tmp_path / "mine.csv", texts, noisy)
        mine = owner.post("/v1/datasets", files={"file": ("mine.csv", path.read_bytes(), "text/csv")}).json()
        jobs = owner.get("/v1/jobs").json()["data"]
    page.goto(w.base_url + "/")
    sign_in(page, "not-a-key")
    page.wait_for_selector("#problem:has-text('Invalid API key.')")
    sign_in(page, KEY_2)
    page.wait_for_selector("#no-datasets")
    assert mine["name"] not in page.inner_text("main")
    page.goto(w.base_url + "/#/jobs")
    page.wait_for_selector("#no-jobs")
    page.goto(w.base_url + "/#/models")
    page.wait_for_selector("text=No models yet")
    for job in jobs[:1]:
        page.goto(w.base_url + f"/#/jobs/{job['id']}")
        page.wait_for_selector("#problem:has-text('No such job.')")
    assert w.errors == [] and not any(KEY_2 in url for url in w.urls)
