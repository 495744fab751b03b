"""The API in-process (TestClient, real SQLite store, no worker running): auth, every kind of bad upload,
limits, job validation, queue limit, queued cancel, paging, problem+json everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from sidyp_core.config import Settings

KEYS = {"t1": "secret-one-aaaaaaaaaaaaaaaa", "t2": "secret-two-bbbbbbbbbbbbbbbb"}
GOOD_CSV = b"text,noisy_label\nthe goal match,sports\npizza dinner,food\ncode server,tech\nbake cheese,food\n"


@pytest.fixture
def settings(tmp_path, tiny_backbone) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        api_keys=",".join(f"{t}:{k}" for t, k in KEYS.items()),
        allowed_backbone_dirs=str(Path(tiny_backbone).parent),
        max_rows=50,
        max_classes=5,
        max_text_chars=300,
        max_upload_bytes=20_000,
        max_json_body_bytes=64_000,
        max_queued_jobs=3,
        max_predict_texts=10,
    )


@pytest.fixture
def client(settings):
    with TestClient(create_app(settings)) as c:
        c.headers["Authorization"] = f"Bearer {KEYS['t1']}"
        yield c


def upload(client, content: bytes, filename: str = "d.csv", **form):
    return client.post("/v1/datasets", files={"file": (filename, content, "text/csv")}, data=form)


def assert_problem(r, status: int, slug: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert (
        body["status"] == status
        and body["title"]
        and body["detail"]
        and body["type"].startswith("/problems/")
    )
    if slug:
        assert body["type"] == f"/problems/{slug}", body
    return body


def assert_nothing_stored(client, settings):
    assert client.get("/v1/datasets").json()["data"] == []
    folder = settings.data_dir / "t1" / "datasets"
    assert not folder.exists() or [p for p in folder.iterdir() if not p.name.startswith(".del-")] == []


# ------------------------------------------------------------------ auth
def test_missing_or_wrong_key_is_401_problem(client):
    for headers in (
        {"Authorization": ""},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Basic " + KEYS["t1"]},
    ):
        r = client.get("/v1/datasets", headers=headers)
        body = assert_problem(r, 401, "unauthorized")
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert KEYS["t1"] not in json.dumps(body)
    # A prefix of a valid key is not a valid key.
    assert (
        client.get("/v1/datasets", headers={"Authorization": "Bearer " + KEYS["t1"][:-1]}).status_code == 401
    )


def test_health_needs_no_key_and_readyz_wants_a_worker(client):
    assert client.get("/healthz", headers={"Authorization": ""}).json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["checks"]["workers"] == 0 and r.json()["checks"]["store"] is True


# ------------------------------------------------------------------ uploads
def test_good_csv_upload_and_dataset_endpoints(client, settings):
    r = upload(client, GOOD_CSV, name="first")
    assert r.status_code == 201, r.text
    ds = r.json()
    assert ds["object"] == "dataset" and ds["name"] == "first" and ds["n_rows"] == 4
    assert ds["labels"] == ["food", "sports", "tech"] and ds["label_counts"] == {
        "food": 2,
        "sports": 1,
        "tech": 1,
    }
    assert ds["n_missing_labels"] == 0 and ds["has_gold"] is False
    assert r.headers["location"] == f"/v1/datasets/{ds['id']}"
    assert client.get(f"/v1/datasets/{ds['id']}").json() == ds
    assert (settings.data_dir / "t1" / "datasets" / ds["id"] / "data.json").is_file()
    assert client.delete(f"/v1/datasets/{ds['id']}").status_code == 204
    assert_problem(client.get(f"/v1/datasets/{ds['id']}"), 404, "dataset-not-found")
    assert not (settings.data_dir / "t1" / "datasets" / ds["id"]).exists()


def test_jsonl_upload_with_declared_labels_missing_labels_and_gold(client):
    lines = [
        {"body": "goal", "y": "sports", "gold_label": "sports"},
        {"body": "pizza", "y": None, "gold_label": "food"},
        {"body": "chip", "y": "tech", "gold_label": "tech"},
    ]
    content = "\n".join(json.dumps(x) for x in lines).encode()
    r = upload(
        client, content, "d.jsonl", text_column="body", label_column="y", labels='["sports","food","tech"]'
    )
    assert r.status_code == 201, r.text
    ds = r.json()
    assert ds["format"] == "jsonl" and ds["labels"] == ["sports", "food", "tech"]
    assert ds["n_missing_labels"] == 1 and ds["has_gold"] is True and ds["label_counts"]["food"] == 0


def test_formula_looking_text_is_stored_verbatim(client):
    r = upload(client, b'text,noisy_label\n"=HYPERLINK(""x"")",a\n+1,b\n')
    assert r.status_code == 201 and r.json()["n_rows"] == 2


BAD_UPLOADS = [
    # (name, content, filename, form, status, slug, expected (row, column) in errors or None)
    (
        "latin-1",
        "text,noisy_label\ncafé,a\nx,b\n".encode("latin-1"),
        "d.csv",
        {},
        422,
        "invalid-encoding",
        (0, None),
    ),
    ("utf-16", "text,noisy_label\nhi,a\nyo,b\n".encode("utf-16"), "d.csv", {}, 422, "invalid-encoding", None),
    ("nul byte", b"text,noisy_label\nhi,a\nhe\x00llo,b\n", "d.csv", {}, 422, "invalid-encoding", (1, None)),
    (
        "missing text column",
        b"txt,noisy_label\nhi,a\nyo,b\n",
        "d.csv",
        {},
        422,
        "invalid-upload",
        (None, "text"),
    ),
    (
        "missing label column",
        b"text,label\nhi,a\nyo,b\n",
        "d.csv",
        {},
        422,
        "invalid-upload",
        (None, "noisy_label"),
    ),
    (
        "duplicated column",
        b"text,noisy_label,text\nhi,a,x\nyo,b,y\n",
        "d.csv",
        {},
        422,
        "invalid-upload",
        (None, "text"),
    ),
    ("empty file", b"", "d.csv", {}, 422, "empty-upload", None),
    ("whitespace only", b"  \n\n", "d.csv", {}, 422, "empty-upload", None),
    ("header only", b"text,noisy_label\n", "d.csv", {}, 422, "empty-upload", None),
    (
        "one class",
        b"text,noisy_label\nhi,a\nyo,a\n",
        "d.csv",
        {},
        422,
        "too-few-classes",
        (None, "noisy_label"),
    ),
    (
        "label outside declared",
        b"text,noisy_label\nhi,a\nyo,c\n",
        "d.csv",
        {"labels": '["a","b"]'},
        422,
        "invalid-upload",
        (1, "noisy_label"),
    ),
    (
        "text too long",
        b"text,noisy_label\nhi,a\n" + b"x" * 301 + b",b\n",
        "d.csv",
        {},
        422,
        "invalid-upload",
        (1, "text"),
    ),
    ("empty text", b"text,noisy_label\nhi,a\n ,b\n", "d.csv", {}, 422, "invalid-upload", (1, "text")),
    ("ragged row", b"text,noisy_label\nhi,a\nyo,b,extra\n", "d.csv", {}, 422, "invalid-upload", (1, None)),
    (
        "too many rows",
        b"text,noisy_label\n" + b"".join(b"t%d,%s\n" % (i, b"ab"[i % 2 : i % 2 + 1]) for i in range(51)),
        "d.csv",
        {},
        413,
        "too-many-rows",
        None,
    ),
    (
        "too many classes",
        b"text,noisy_label\n" + b"".join(b"t%d,c%d\n" % (i, i) for i in range(6)),
        "d.csv",
        {},
        422,
        "too-many-classes",
        None,
    ),
    ("upload too large", b"text,noisy_label\n" + b"y" * 30_000 + b",a\n", "d.csv", {}, 413, None, None),
    ("labels not json", GOOD_CSV, "d.csv", {"labels": "[sports"}, 422, "invalid-upload", (None, "labels")),
    (
        "labels repeated",
        GOOD_CSV,
        "d.csv",
        {"labels": '["a","a","b"]'},
        422,
        "invalid-upload",
        (None, "labels"),
    ),
    (
        "jsonl bad line",
        b'{"text":"a","noisy_label":"x"}\n{"text": \n',
        "d.jsonl",
        {},
        422,
        "invalid-upload",
        (1, None),
    ),
    (
        "jsonl not object",
        b'{"text":"a","noisy_label":"x"}\n[1,2]\n',
        "d.jsonl",
        {},
        422,
        "invalid-upload",
        (1, None),
    ),
    (
        "jsonl label not string",
        b'{"text":"a","noisy_label":"x"}\n{"text":"b","noisy_label":3}\n',
        "d.jsonl",
        {},
        422,
        "invalid-upload",
        (1, "noisy_label"),
    ),
    (
        "jsonl deeply nested",
        b'{"text":"a","noisy_label":"x"}\n' + b'{"text":' + b"[" * 5000 + b"]" * 5000 + b"}\n",
        "d.jsonl",
        {},
        422,
        "invalid-upload",
        (1, None),
    ),
    (
        "gold outside labels",
        b"text,noisy_label,gold_label\nhi,a,a\nyo,b,zzz\n",
        "d.csv",
        {},
        422,
        "invalid-upload",
        (1, "gold_label"),
    ),
]


@pytest.mark.parametrize(
    "content,filename,form,status,slug,where",
    [case[1:] for case in BAD_UPLOADS],
    ids=[c[0] for c in BAD_UPLOADS],
)
def test_bad_upload_is_refused_with_a_located_problem_and_nothing_stored(
    client, settings, content, filename, form, status, slug, where
):
    body = assert_problem(upload(client, content, filename, **form), status, slug)
    if where is not None:
        row, column = where
        assert any(e["row"] == row and e["column"] == column for e in body["errors"]), body
    assert_nothing_stored(client, settings)
    assert client.get("/healthz").status_code == 200


# ------------------------------------------------------------------ jobs
def _dataset(client) -> dict:
    r = upload(client, GOOD_CSV)
    assert r.status_code == 201
    return r.json()


def test_job_params_are_validated(client, tiny_backbone):
    ds = _dataset(client)
    bad = [
        {"dataset_id": ds["id"], "params": {"epochs": 0}},
        {"dataset_id": ds["id"], "params": {"noise_fraction": 1.5}},
        {"dataset_id": ds["id"], "params": {"noise_fraction": "sometimes"}},
        {"dataset_id": ds["id"], "params": {"learning_rate_typo": 1}},
        {"dataset_id": ds["id"], "unknown": 1},
        {"params": {}},
    ]
    for payload in bad:
        body = assert_problem(client.post("/v1/jobs", json=payload), 422, "validation-error")
        assert body["errors"] and all("field" in e for e in body["errors"])
    for backbone in ("/etc", "/", str(Path(tiny_backbone).parent.parent), "../../etc", "/nonexistent/model"):
        r = client.post("/v1/jobs", json={"dataset_id": ds["id"], "params": {"backbone": backbone}})
        assert_problem(r, 422, "backbone-not-allowed")
    r = client.post("/v1/jobs", json={"dataset_id": ds["id"], "params": {"backbone": tiny_backbone}})
    assert r.status_code == 202, r.text
    assert r.json()["params"]["backbone"] == tiny_backbone
    assert_problem(client.post("/v1/jobs", json={"dataset_id": "ds_" + "x" * 22}), 404, "dataset-not-found")
    assert_problem(client.post("/v1/jobs", json={"dataset_id": "../../etc/passwd"}), 404, "dataset-not-found")


def test_queue_limit_answers_429_and_queued_cancel_is_immediate(client):
    ds = _dataset(client)
    ids = []
    for _ in range(3):
        r = client.post("/v1/jobs", json={"dataset_id": ds["id"]})
        assert r.status_code == 202
        ids.append(r.json()["id"])
    r = client.post("/v1/jobs", json={"dataset_id": ds["id"]})
    assert_problem(r, 429, "queue-full")
    assert int(r.headers["retry-after"]) > 0
    assert (
        len(client.get("/v1/jobs", params={"limit": 100}).json()["data"]) == 3
    )  # the refused one left nothing

    r = client.post(f"/v1/jobs/{ids[0]}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "cancelled" and r.json()["finished_at"]
    assert_problem(client.post(f"/v1/jobs/{ids[0]}/cancel"), 409, "job-finished")
    store = client.app.state.store
    assert not store.queue_contains(ids[0]) and store.queue_contains(ids[1])
    assert client.post("/v1/jobs", json={"dataset_id": ds["id"]}).status_code == 202  # room again
    events = client.get(f"/v1/jobs/{ids[0]}/events").json()["data"]
    assert [e["stage"] for e in events] == ["queued", "cancelled"]


def test_outputs_of_an_unfinished_job_are_409(client):
    ds = _dataset(client)
    job = client.post("/v1/jobs", json={"dataset_id": ds["id"]}).json()
    assert job["status"] == "queued" and job["progress"]["stage"] == "queued"
    assert_problem(client.get(f"/v1/jobs/{job['id']}/labels"), 409, "job-not-finished")
    assert_problem(client.get(f"/v1/jobs/{job['id']}/report"), 409, "job-not-finished")


def test_lists_page_newest_first_with_after_cursor(client):
    made = [_dataset(client)["id"] for _ in range(5)]
    seen, after = [], None
    while True:
        params = {"limit": 2} | ({"after": after} if after else {})
        page = client.get("/v1/datasets", params=params).json()
        assert page["object"] == "list" and len(page["data"]) <= 2
        seen += [d["id"] for d in page["data"]]
        if not page["has_more"]:
            break
        after = page["data"][-1]["id"]
    assert seen == made[::-1]
    assert_problem(client.get("/v1/datasets", params={"limit": 0}), 422)
    assert_problem(client.get("/v1/datasets", params={"limit": 100_000}), 422)
    assert_problem(client.get("/v1/datasets", params={"after": "../x"}), 422)


def test_ids_that_try_path_traversal_are_plain_404(client):
    for path in (
        "/v1/datasets/..%2F..%2Fetc%2Fpasswd",
        "/v1/datasets/ds_..",
        "/v1/jobs/job_%2e%2e%2f%2e%2e%2fx/labels",
        "/v1/models/mdl_..%2F..%2F..%2Ft1/predict",
    ):
        r = client.post(path, json={"texts": ["a"]}) if path.endswith("predict") else client.get(path)
        assert r.status_code == 404, (path, r.status_code)
        assert r.headers["content-type"] == "application/problem+json"


def test_oversized_json_body_is_413_and_predict_limits(client):
    r = client.post(
        "/v1/jobs",
        content=b'{"dataset_id": "' + b"x" * 70_000 + b'"}',
        headers={"content-type": "application/json"},
    )
    assert_problem(r, 413)
    assert_problem(
        client.post("/v1/models/mdl_" + "a" * 22 + "/predict", json={"texts": ["a"]}), 404, "model-not-found"
    )
    assert_problem(
        client.post("/v1/jobs", content=b"{not json", headers={"content-type": "application/json"}), 422
    )
    assert_problem(client.get("/v1/nothing-here"), 404)
