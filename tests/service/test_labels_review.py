"""Reviewing a finished job's labels: filtered, ordered, cursor-paged label pages (stable while decisions are
saved), review decisions (idempotent per row, tenant-scoped, audited), corrected exports, "save as dataset",
and the console's page and headers. The job's outputs are written directly (no training): the routes under
test only read them."""

from __future__ import annotations

import csv
import hashlib
import io
import random
import re
import tomllib

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from sidyp_core.artifacts import (
    DATASET_FILE,
    LABELS_FILE,
    artifact_dir,
    read_json,
    write_artifact,
    write_json,
)
from sidyp_core.config import Settings
from sidyp_core.ids import new_id
from sidyp_core.store import utc_now_iso
from sidyp_core.store.sqlite_store import SqliteJobStore

KEY_1, KEY_2 = "key-one-" + "a" * 24, "key-two-" + "b" * 24
CLASSES = ["ant", "bee", "cat"]


def labels_table(n: int, seed: int = 0) -> dict:
    """A labels.json of `label_table`'s shape with known qualities (some tied) and flags."""
    rng = random.Random(seed)
    rows = {k: [] for k in ("text", "given_label", "suggested_label", "label_quality", "is_label_issue")}
    rows.update(probabilities=[], is_validation=[], is_trusted=[])
    for i in range(n):
        given, suggested = rng.choice(CLASSES), rng.choice(CLASSES)
        quality = round(rng.choice([0.05, 0.5, 0.9]) if i % 7 == 0 else rng.random(), 6)
        rows["text"].append(f"row {i} {'Needle' if i % 5 == 0 else 'hay'} <b>{i}</b>")
        rows["given_label"].append(given)
        rows["suggested_label"].append(suggested)
        rows["label_quality"].append(quality)
        rows["is_label_issue"].append(quality < 0.4)
        rest = (1 - 0.6) / 2
        rows["probabilities"].append([0.6 if c == suggested else rest for c in CLASSES])
        rows["is_validation"].append(i % 10 == 9)
        rows["is_trusted"].append(False)
    return {"classes": CLASSES, "rows": rows}


def finished_job(store, data_dir, tenant: str, table: dict, dataset_gold=None) -> str:
    dataset_id, job_id = new_id("dataset"), new_id("job")
    n = len(table["rows"]["text"])
    store.put(
        "dataset",
        {
            "id": dataset_id,
            "object": "dataset",
            "tenant": tenant,
            "name": "fixture",
            "n_rows": n,
            "labels": CLASSES,
            "label_counts": {c: table["rows"]["given_label"].count(c) for c in CLASSES},
            "n_missing_labels": table["rows"]["given_label"].count(None),
            "has_gold": dataset_gold is not None,
            "created_at": utc_now_iso(),
            "format": "csv",
            "text_column": "text",
            "label_column": "noisy_label",
        },
    )
    data = {"text": table["rows"]["text"], "noisy_label": table["rows"]["given_label"], "gold_label": None}
    if dataset_gold is not None:
        data["gold_label"] = dataset_gold
    folder = artifact_dir(data_dir, tenant, "datasets", dataset_id)
    write_artifact(folder, lambda tmp: write_json(tmp / DATASET_FILE, data))
    job = {
        "id": job_id,
        "object": "job",
        "tenant": tenant,
        "status": "succeeded",
        "dataset_id": dataset_id,
        "params": {},
        "created_at": utc_now_iso(),
        "progress": {"stage": "succeeded", "fraction": 1.0, "message": ""},
    }
    store.put("job", job)
    write_artifact(
        artifact_dir(data_dir, tenant, "jobs", job_id), lambda tmp: write_json(tmp / LABELS_FILE, table)
    )
    assert n == len(read_json(artifact_dir(data_dir, tenant, "jobs", job_id) / LABELS_FILE)["rows"]["text"])
    return job_id


@pytest.fixture
def api(tmp_path):
    settings = Settings(api_keys=f"t1:{KEY_1},t2:{KEY_2}", data_dir=tmp_path / "data")
    store = SqliteJobStore(tmp_path / "store.sqlite3")
    app = create_app(settings, store)
    client = TestClient(app)
    client.headers["Authorization"] = f"Bearer {KEY_1}"
    client.store, client.settings = store, settings
    return client


def other_tenant(api) -> TestClient:
    other = TestClient(api.app)
    other.headers["Authorization"] = f"Bearer {KEY_2}"
    return other


def walk(client, job_id, **params) -> list[dict]:
    items, after = [], -1
    while True:
        r = client.get(f"/v1/jobs/{job_id}/labels", params={**params, "after": after})
        assert r.status_code == 200, r.text
        page = r.json()
        items += page["data"]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            return items
        after = page["next_cursor"]
        assert after == page["data"][-1]["index"]


def test_pages_are_filtered_and_worst_first(api):
    table = labels_table(95)
    job_id = finished_job(api.store, api.settings.data_dir, "t1", table)
    rows = table["rows"]
    items = walk(api, job_id, order="label_quality", is_label_issue=True, limit=7)
    flagged = [i for i in range(95) if rows["is_label_issue"][i]]
    assert [it["index"] for it in items] == sorted(flagged, key=lambda i: (rows["label_quality"][i], i))
    assert all(it["given_label"] == rows["given_label"][it["index"]] for it in items)
    first = api.get(f"/v1/jobs/{job_id}/labels", params={"order": "label_quality", "is_label_issue": True})
    assert first.json()["total"] == len(flagged)

    items = walk(api, job_id, given_label="bee", suggested_label="cat", limit=4)
    expected = [
        i for i in range(95) if rows["given_label"][i] == "bee" and rows["suggested_label"][i] == "cat"
    ]
    assert [it["index"] for it in items] == expected

    items = walk(api, job_id, q="nEEdle", order="label_quality", limit=5)
    assert sorted(it["index"] for it in items) == [i for i in range(95) if i % 5 == 0]
    assert [it["label_quality"] for it in items] == sorted(it["label_quality"] for it in items)
    assert api.get(f"/v1/jobs/{job_id}/labels", params={"q": "<B>90</b>"}).json()["total"] == 1


def test_cursor_is_stable_while_reviews_are_saved(api):
    table = labels_table(120, seed=3)
    job_id = finished_job(api.store, api.settings.data_dir, "t1", table)
    unreviewed = [it["index"] for it in walk(api, job_id, order="label_quality", limit=1000)]
    assert len(unreviewed) == 120
    ahead = unreviewed[50]  # a row further down, decided by someone else meanwhile
    seen, after = [], -1
    while True:
        params = {"order": "label_quality", "reviewed": False, "limit": 9, "after": after}
        page = api.get(f"/v1/jobs/{job_id}/labels", params=params).json()
        seen += [it["index"] for it in page["data"]]
        # Deciding every row of this page removes it from the `reviewed=false` set before the next page.
        decisions = [{"index": it["index"], "action": "accept"} for it in page["data"]]
        if len(seen) == 9:
            decisions.append({"index": ahead, "action": "keep"})
        assert api.post(f"/v1/jobs/{job_id}/reviews", json={"reviews": decisions}).status_code == 200
        if not page["has_more"]:
            break
        after = page["next_cursor"]
    assert seen == [i for i in unreviewed if i != ahead]


def test_reviews_are_idempotent_audited_and_shown_on_items(api):
    table = labels_table(30)
    job_id = finished_job(api.store, api.settings.data_dir, "t1", table)
    rows = table["rows"]
    body = {"reviews": [{"index": 3, "action": "accept"}, {"index": 4, "action": "keep"}]}
    r = api.post(f"/v1/jobs/{job_id}/reviews", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["n_reviewed"] == 2
    saved = {d["index"]: d for d in r.json()["data"]}
    assert saved[3]["label"] == rows["suggested_label"][3] and saved[4]["label"] == rows["given_label"][4]
    assert saved[3]["key_id"] == hashlib.sha256(KEY_1.encode()).hexdigest()[:12]
    assert KEY_1 not in r.text and saved[3]["reviewed_at"].endswith("Z")

    other = next(c for c in CLASSES if c not in (rows["given_label"][3], rows["suggested_label"][3]))
    again = api.post(
        f"/v1/jobs/{job_id}/reviews", json={"reviews": [{"index": 3, "action": "set", "label": other}]}
    )
    assert again.status_code == 200 and again.json()["n_reviewed"] == 2
    listed = api.get(f"/v1/jobs/{job_id}/reviews").json()["data"]
    assert [(d["index"], d["action"], d["label"]) for d in listed] == [
        (3, "set", other),
        (4, "keep", rows["given_label"][4]),
    ]
    item = api.get(f"/v1/jobs/{job_id}/labels", params={"after": 2, "limit": 1}).json()["data"][0]
    assert item["index"] == 3 and item["review"]["label"] == other
    assert [it["index"] for it in walk(api, job_id, reviewed=True)] == [3, 4]
    assert len(walk(api, job_id, reviewed=False)) == 28


def test_bad_reviews_answer_422_naming_the_row(api):
    job_id = finished_job(api.store, api.settings.data_dir, "t1", labels_table(30))
    body = {
        "reviews": [
            {"index": 1, "action": "accept"},
            {"index": 7, "action": "set", "label": "dog"},
            {"index": 30, "action": "keep"},
            {"index": 2, "action": "set"},
            {"index": 5, "action": "accept", "label": "ant"},
        ]
    }
    r = api.post(f"/v1/jobs/{job_id}/reviews", json=body)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    errors = r.json()["errors"]
    assert [(e["row"], e["field"]) for e in errors] == [
        (7, "body.reviews.1.label"),
        (30, "body.reviews.2.index"),
        (2, "body.reviews.3.label"),
        (5, "body.reviews.4.label"),
    ]
    assert "'dog' is not one of the job's classes" in errors[0]["message"]
    assert api.get(f"/v1/jobs/{job_id}/reviews").json()["data"] == []  # nothing of a bad request is kept
    bad_action = api.post(f"/v1/jobs/{job_id}/reviews", json={"reviews": [{"index": 1, "action": "drop"}]})
    assert bad_action.status_code == 422


def test_reviews_are_tenant_scoped(api):
    table = labels_table(20)
    mine = finished_job(api.store, api.settings.data_dir, "t1", table)
    theirs = finished_job(api.store, api.settings.data_dir, "t2", table)
    other = other_tenant(api)
    assert api.post(
        f"/v1/jobs/{mine}/reviews", json={"reviews": [{"index": 0, "action": "accept"}]}
    ).is_success
    for r in (
        other.get(f"/v1/jobs/{mine}/reviews"),
        other.post(f"/v1/jobs/{mine}/reviews", json={"reviews": [{"index": 0, "action": "keep"}]}),
        other.get(f"/v1/jobs/{mine}/labels"),
        other.get(f"/v1/jobs/{mine}/labels", params={"format": "csv", "corrected": True}),
        other.post(f"/v1/jobs/{mine}/reviews/dataset", json={}),
    ):
        assert r.status_code == 404, (r.request.url, r.text)
    assert other.post(
        f"/v1/jobs/{theirs}/reviews", json={"reviews": [{"index": 1, "action": "keep"}]}
    ).is_success
    assert [d["index"] for d in api.get(f"/v1/jobs/{mine}/reviews").json()["data"]] == [0]
    assert [d["index"] for d in other.get(f"/v1/jobs/{theirs}/reviews").json()["data"]] == [1]
    assert api.store.list_reviews("t2", mine) == []


def test_corrected_export_applies_decisions(api):
    table = labels_table(25)
    job_id = finished_job(api.store, api.settings.data_dir, "t1", table)
    rows = table["rows"]
    target = next(i for i in range(25) if rows["given_label"][i] != rows["suggested_label"][i])
    api.post(f"/v1/jobs/{job_id}/reviews", json={"reviews": [{"index": target, "action": "accept"}]})
    r = api.get(f"/v1/jobs/{job_id}/labels", params={"format": "csv", "corrected": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    out = list(csv.DictReader(io.StringIO(r.text)))
    assert len(out) == 25 and out[0]["given_label"] == rows["given_label"][0]
    changed = [row for row in out if row["corrected_label"] != row["given_label"]]
    assert [(int(c["index"]), c["corrected_label"], c["is_reviewed"]) for c in changed] == [
        (target, rows["suggested_label"][target], "True")
    ]
    flagged = api.get(
        f"/v1/jobs/{job_id}/labels",
        params={"format": "csv", "is_label_issue": True, "order": "label_quality"},
    )
    got = [int(row["index"]) for row in csv.DictReader(io.StringIO(flagged.text))]
    assert got == sorted(
        (i for i in range(25) if rows["is_label_issue"][i]), key=lambda i: rows["label_quality"][i]
    )


def test_save_as_dataset_stores_corrected_labels_and_trusted_rows(api):
    table = labels_table(20)
    gold = [CLASSES[i % 3] for i in range(20)]
    job_id = finished_job(api.store, api.settings.data_dir, "t1", table, dataset_gold=gold)
    rows = table["rows"]
    other = next(c for c in CLASSES if c != rows["given_label"][2])
    reviews = [{"index": 2, "action": "set", "label": other}, {"index": 5, "action": "keep"}]
    api.post(f"/v1/jobs/{job_id}/reviews", json={"reviews": reviews})
    r = api.post(f"/v1/jobs/{job_id}/reviews/dataset", json={"name": "fixed <labels>"})
    assert r.status_code == 201, r.text
    ds = r.json()
    assert (
        ds["name"] == "fixed <labels>" and ds["n_rows"] == 20 and ds["labels"] == CLASSES and ds["has_gold"]
    )
    assert api.get(f"/v1/datasets/{ds['id']}").status_code == 200
    data = read_json(artifact_dir(api.settings.data_dir, "t1", "datasets", ds["id"]) / DATASET_FILE)
    expected = list(rows["given_label"])
    expected[2] = other
    assert data["noisy_label"] == expected and data["text"] == rows["text"] and data["gold_label"] == gold
    assert [i for i, t in enumerate(data["trusted_label"]) if t is not None] == [2, 5]
    assert data["trusted_label"][2] == other
    assert sum(ds["label_counts"].values()) == 20


def test_labels_need_a_finished_job_and_a_valid_cursor(api):
    job_id = finished_job(api.store, api.settings.data_dir, "t1", labels_table(10))
    assert api.get(f"/v1/jobs/{job_id}/labels", params={"after": 10}).status_code == 422
    assert api.get(f"/v1/jobs/{job_id}/labels", params={"order": "shuffle"}).status_code == 422
    api.store.mutate_job(job_id, lambda doc: {**doc, "status": "running"})
    r = api.post(f"/v1/jobs/{job_id}/reviews", json={"reviews": [{"index": 0, "action": "accept"}]})
    assert r.status_code == 409


def test_older_outputs_with_noisy_label_still_read(api):
    table = labels_table(6)
    job_id = finished_job(api.store, api.settings.data_dir, "t1", table)
    rows = dict(table["rows"])
    rows["noisy_label"] = rows.pop("given_label")
    # Re-published as a worker from before the `given_label` column wrote it.
    folder = artifact_dir(api.settings.data_dir, "t1", "jobs", job_id)
    write_artifact(folder, lambda tmp: write_json(tmp / LABELS_FILE, {**table, "rows": rows}), replace=True)
    assert [it["given_label"] for it in walk(api, job_id)] == rows["noisy_label"]


@pytest.fixture(params=["sqlite", "redis"])
def store(request, tmp_path):
    if request.param == "sqlite":
        yield SqliteJobStore(tmp_path / "s.sqlite3")
        return
    from sidyp_core.store.redis_store import RedisJobStore

    url = request.getfixturevalue("redis_url").rsplit("/", 1)[0] + "/13"
    s = RedisJobStore(url)
    s.r.flushdb()
    yield s
    s.close()


def test_store_keeps_one_decision_per_row_per_tenant(store):
    def review(i: int, label: str) -> dict:
        return {"index": i, "action": "set", "label": label, "reviewed_at": utc_now_iso(), "key_id": "k"}

    store.put_reviews("t1", "job_a", [review(10, "ant"), review(2, "bee")])
    store.put_reviews("t1", "job_a", [review(10, "cat")])
    store.put_reviews("t2", "job_a", [review(1, "ant")])
    store.put_reviews("t1", "job_b", [review(3, "ant")])
    assert [(r["index"], r["label"]) for r in store.list_reviews("t1", "job_a")] == [(2, "bee"), (10, "cat")]
    assert [r["index"] for r in store.list_reviews("t2", "job_a")] == [1]
    assert store.list_reviews("t2", "job_b") == [] and store.reviewed_rows("t2", "job_b") == set()
    assert store.reviewed_rows("t1", "job_a") == {2, 10}
    some = store.list_reviews("t1", "job_a", [10, 7, 2])
    assert [(r["index"], r["label"], r["action"], r["key_id"]) for r in some] == [
        (2, "bee", "set", "k"),
        (10, "cat", "set", "k"),
    ]
    assert store.list_reviews("t1", "job_a", []) == [] and store.list_reviews("t2", "job_a", [10]) == []


def test_console_is_served_with_a_strict_csp(api):
    r = TestClient(api.app).get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    html = r.text
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, flags=re.S)
    assert len(scripts) == 5 and all(
        'src="/console/' in attrs and not body.strip() for attrs, body in scripts
    )
    assert not re.search(r"\son\w+\s*=", html)  # no inline event handlers either
    assets = {
        "console.js": "javascript",
        "jobs.js": "javascript",
        "review.js": "javascript",
        "console.css": "css",
    }
    for name, kind in assets.items():
        asset = TestClient(api.app).get(f"/console/{name}")
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(f"text/{kind}")
        assert asset.headers["content-security-policy"] == csp
        # User data is put into the page as text only: nothing in the console parses strings as HTML.
        assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(", asset.text)
    assert TestClient(api.app).get("/console/..%2Fmain.py").status_code == 404
    assert TestClient(api.app).get("/console/index.html").status_code == 404


def test_csv_export_neutralises_formulas(api):
    table = labels_table(4)
    table["rows"]["text"] = ["=1+1", "+cmd", "@SUM(A1)", "plain"]
    table["rows"]["given_label"][1] = None
    job_id = finished_job(api.store, api.settings.data_dir, "t1", table)
    r = api.get(f"/v1/jobs/{job_id}/labels", params={"format": "csv"})
    parsed = list(csv.reader(io.StringIO(r.text)))
    assert parsed[0][:4] == ["index", "text", "given_label", "suggested_label"]
    assert [row[1] for row in parsed[1:]] == ["'=1+1", "'+cmd", "'@SUM(A1)", "plain"]
    assert parsed[2][2] == ""


def test_console_files_ship_in_the_package():
    """A non-editable install (the Docker image) must carry every console file as package data."""
    from fnmatch import fnmatch

    from app.api.routes.console import CONSOLE_DIR

    meta = tomllib.loads((CONSOLE_DIR.parents[1] / "pyproject.toml").read_text())
    patterns = meta["tool"]["setuptools"]["package-data"]["app"]
    shipped = [f"console/{p.name}" for p in CONSOLE_DIR.iterdir()]
    assert shipped and all(any(fnmatch(f, pat) for pat in patterns) for f in shipped), (shipped, patterns)


def test_a_random_order_is_one_fixed_shuffle_that_pages_like_the_others(api):
    table = labels_table(150, seed=5)
    job_id = finished_job(api.store, api.settings.data_dir, "t1", table)
    first = [it["index"] for it in walk(api, job_id, order="random", limit=11)]
    again = [it["index"] for it in walk(api, job_id, order="random", limit=40)]
    # every row once, the same shuffle whatever the page size, and neither row order nor worst first
    assert sorted(first) == list(range(150)) and first == again
    assert first != list(range(150))
    worst_first = [it["index"] for it in walk(api, job_id, order="label_quality", limit=150)]
    assert first != worst_first
    # its first rows are a random draw: their label quality is like the table's, not the lowest
    quality = table["rows"]["label_quality"]
    head = [quality[i] for i in first[:50]]
    assert abs(sum(head) / 50 - sum(quality) / 150) < 0.12
    assert sum(head) / 50 > sum(quality[i] for i in worst_first[:50]) / 50 + 0.2
    filtered = [it["index"] for it in walk(api, job_id, order="random", is_label_issue=True, limit=5)]
    assert filtered == [i for i in first if table["rows"]["is_label_issue"][i]]


def test_the_console_names_every_estimate_source_as_the_report_does(api):
    """The console renders the report's estimates itself: each method the engine can write has the same words
    there as in report.html and `sidyp calibrate` (a method the console lacks would show as a bare code)."""
    from sidyp_engine.report import ESTIMATE_SOURCES, ESTIMATE_TITLES

    script = TestClient(api.app).get("/console/jobs.js").text

    def js_map(name: str) -> dict[str, str]:
        body = re.search(rf"const {name} = \{{(.*?)\}};", script, re.S).group(1)
        return {k: a if a else b for k, a, b in re.findall(r"(\w+): (?:'([^']*)'|\"([^\"]*)\")", body)}

    assert js_map("ESTIMATE_SOURCES") == ESTIMATE_SOURCES
    assert js_map("ESTIMATE_ROWS") == ESTIMATE_TITLES
