"""The hostile-input corpus (tests/bad_inputs/, described by its manifest.json) against a real `sidyp serve`.

Each case must be answered with its 4xx as application/problem+json whose detail (or one of its errors)
names the problem; afterwards nothing new is stored (every list of both tenants and the data dir's files are
as before) and the server still answers. Small limits come from the manifest, through the environment.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import KEY_1, KEY_2, Service, service_env, start_api

CORPUS = Path(__file__).resolve().parents[1] / "bad_inputs"
MANIFEST = json.loads((CORPUS / "manifest.json").read_text())
CASES = MANIFEST["cases"]
GOOD_CSV = b"text,noisy_label\nthe goal match,sports\npizza dinner,food\ncode server,tech\nlate goal,sports\nbake,food\n"


def _case_id(case: dict) -> str:
    return case.get("file") or case["generate"]


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_backbone):
    root = tmp_path_factory.mktemp("bad-inputs")
    env = service_env(root / "data", tiny_backbone, **MANIFEST["limits"])
    api, base = start_api(env, root, extra_args=("--no-worker",))
    service = Service(base, root / "data", [api])
    try:
        with service.client() as c, service.client(KEY_2) as c2:
            ds = c.post("/v1/datasets", files={"file": ("good.csv", GOOD_CSV, "text/csv")}).json()["id"]
            other = c2.post("/v1/datasets", files={"file": ("good.csv", GOOD_CSV, "text/csv")}).json()["id"]
            job = c.post("/v1/jobs", json={"dataset_id": ds}).json()["id"]  # stays queued: no worker
        service.placeholders = {
            "dataset_id": ds,
            "other_dataset_id": other,
            "job_id": job,
            "allowed_dir": str(Path(tiny_backbone).parent),
        }
        yield service
    finally:
        api.stop()


def _fill(text: str, values: dict) -> str:
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def _generated(name: str, limits: dict) -> bytes:
    if name == "ten_mb_cell":
        return b"text,noisy_label\nshort,a\n" + b"A" * (10 * 1024 * 1024) + b",b\n"
    if name == "upload_over_limit":
        return b"text,noisy_label\n" + b"x,a\n" * (int(limits["SIDYP_MAX_UPLOAD_BYTES"]) // 4 + 50_000)
    if name == "json_over_limit":
        return json.dumps({"dataset_id": "x" * (int(limits["SIDYP_MAX_JSON_BODY_BYTES"]) + 10)}).encode()
    raise KeyError(name)


def _state(service: Service) -> dict:
    """Everything a request could have stored: both tenants' lists, the queued job's events, the files."""
    out: dict = {}
    for name, key in (("t1", KEY_1), ("t2", KEY_2)):
        with service.client(key) as c:
            for kind in ("datasets", "jobs", "models"):
                r = c.get(f"/v1/{kind}", params={"limit": 1000})
                assert r.status_code == 200, r.text
                out[f"{name}/{kind}"] = r.json()["data"]
    with service.client() as c:
        out["events"] = c.get(f"/v1/jobs/{service.placeholders['job_id']}/events").json()["data"]
    # The SQLite files change on every write anyway; what they hold is compared through the lists above.
    out["files"] = sorted(
        str(p.relative_to(service.data_dir))
        for p in service.data_dir.rglob("*")
        if p.is_file() and ".sqlite3" not in p.name
    )
    return out


def _send(client: httpx.Client, case: dict, placeholders: dict) -> httpx.Response:
    if "generate" in case:
        raw = _generated(case["generate"], MANIFEST["limits"])
    else:
        raw = (CORPUS / case["file"]).read_bytes()
    if case["kind"] == "upload":
        form = {k: _fill(v, placeholders) for k, v in case["form"].items()}
        return client.post("/v1/datasets", files={"file": (case["filename"], raw, "text/csv")}, data=form)
    if case["kind"] == "json":
        body = _fill(raw.decode("utf-8"), placeholders).encode("utf-8")
        return client.request(
            case["method"], case["path"], content=body, headers={"content-type": "application/json"}
        )
    line = _fill(raw.decode("utf-8").splitlines()[0], placeholders)
    return client.request(case["method"], line)


def test_the_corpus_has_at_least_40_files_each_in_the_manifest():
    files = {p.name for p in CORPUS.iterdir() if p.name != "manifest.json"}
    described = {c["file"] for c in CASES if "file" in c}
    assert files == described and len(files) >= 40


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_hostile_input_is_refused_with_a_problem_naming_it_and_nothing_is_stored(server, case):
    before = _state(server)
    with server.client() as c:
        r = _send(c, case, server.placeholders)
        if case["status"] == 201:
            # Accepted on purpose (formula-looking text is data); removing it must restore the state.
            assert r.status_code == 201, r.text
            assert c.delete(f"/v1/datasets/{r.json()['id']}").status_code == 204
        else:
            assert r.status_code == case["status"], (r.status_code, r.text[:500])
            assert r.headers["content-type"] == "application/problem+json"
            body = r.json()
            assert body["status"] == case["status"] and body["title"]
            if case["type"]:
                assert body["type"] == f"/problems/{case['type']}", body
            said = " | ".join([body["detail"]] + [e.get("message", "") for e in body.get("errors") or []])
            assert case["detail"].lower() in said.lower(), said
        assert c.get("/healthz").status_code == 200
    assert _state(server) == before
