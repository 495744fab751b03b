"""`make demo`: the service end to end, as a client sees it.

Starts `sidyp serve` in its embedded default (SQLite store + worker process) in a temporary data dir on a
free loopback port, uploads a toy dataset labelled with systematic LLM-like noise through the REST API,
creates a calibration job with small parameters on the bundled MiniLM, polls it with a one-line progress
display, prints the report, three flagged rows and three predictions, then what the run kept and why (the
report's `selection`) beside the accuracies measured on the toy gold. When the delivered output is worse than
the plain noisy-label classifier on the toy gold, the summary says so. Then it does what the report asks a
user to do: it checks a random sample of the training rows by hand (the toy gold stands in for the person),
uploads them as a `trusted_label` column, runs the same job again and prints what changed, and stops the
service.
"""

from __future__ import annotations

import csv
import io
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from sidyp_engine.selection import CANDIDATE_DESCRIPTIONS

DEMO_PARAMS = {
    "epochs": 2,
    "branches": 2,
    "diffusion_epochs": 2,
    "batch_size": 32,
    "max_length": 32,
    "seed": 0,
}


# rows the demo's "person" checks: over the 30 that let the trusted rows set the temperatures, a few minutes' work
CHECKED_ROWS = 40


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _csv_bytes(texts, noisy, gold=None, trusted=None) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf)
    extra = (["gold_label"] if gold is not None else []) + (["trusted_label"] if trusted is not None else [])
    w.writerow(["text", "noisy_label"] + extra)
    for i, t in enumerate(texts):
        row = [t, noisy[i] or ""] + ([gold[i]] if gold is not None else [])
        w.writerow(row + ([trusted[i] or ""] if trusted is not None else []))
    return buf.getvalue().encode("utf-8")


def checked_rows(gold: list[str], n: int, seed: int = 0) -> list[str | None]:
    """`trusted_label` per row: the gold label on `n` rows drawn at random (a person checking a random
    sample, as the report's warnings ask), else None. A random draw, not the worst-looking rows: every
    figure measured on trusted rows assumes one."""
    picked = set(random.Random(seed).sample(range(len(gold)), min(n, len(gold))))
    return [g if i in picked else None for i, g in enumerate(gold)]


def _start_server(data_dir: Path, key: str, port: int, log_path: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env.update(
        {
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "SIDYP_DATA_DIR": str(data_dir),
            "SIDYP_API_KEYS": f"demo:{key}",
        }
    )
    env.pop("SIDYP_REDIS_URL", None)  # the embedded default: no other process needed
    log = open(log_path, "wb")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sidyp_cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def _wait_ready(base: str, proc: subprocess.Popen, log_path: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the service exited early:\n{log_path.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit("the service did not become ready in time")


def _check(r: httpx.Response, expected: int) -> dict:
    if r.status_code != expected:
        raise SystemExit(f"{r.request.method} {r.request.url.path} -> {r.status_code}: {r.text[:500]}")
    return r.json()


def _upload(client: httpx.Client, filename: str, name: str, content: bytes) -> dict:
    files = {"file": (filename, content, "text/csv")}
    return _check(client.post("/v1/datasets", files=files, data={"name": name}), 201)


def _truth(data: dict) -> str:
    """How wrong the toy LLM labels really are, overall and by kind of text (from the toy gold)."""
    labelled = [(n, g, k) for n, g, k in zip(data["noisy"], data["gold"], data["kinds"], strict=True) if n]
    wrong = sum(n != g for n, g, _ in labelled)
    parts = []
    for kind, words in (
        ("cue", "with a cue of another topic"),
        ("ambiguous", "ambiguous"),
        ("plain", "plain"),
    ):
        rows = [n != g for n, g, k in labelled if k == kind]
        if rows:
            parts.append(f"{sum(rows) / len(rows):.0%} of {len(rows)} {words}")
    return f"truly wrong: {wrong}/{len(labelled)} = {wrong / len(labelled):.0%}; " + ", ".join(parts)


def _upload_datasets(client: httpx.Client, train: dict, held_out: dict) -> tuple[dict, dict]:
    """The LLM-labelled training set and a held-out set with gold labels, as the service records them."""
    ds = _upload(client, "toy-train.csv", "toy (LLM-labelled)", _csv_bytes(train["texts"], train["noisy"]))
    ev_csv = _csv_bytes(held_out["texts"], held_out["noisy"], held_out["gold"])
    ev = _upload(client, "toy-eval.csv", "toy eval (with gold)", ev_csv)
    print(
        f"uploaded {ds['id']}: {ds['n_rows']} rows, classes {ds['labels']}, {ds['n_missing_labels']} missing labels"
        f"\n  ({_truth(train)}; the service does not see this)"
    )
    return ds, ev


def _follow(client: httpx.Client, job_id: str) -> dict:
    """Poll the job with a one-line progress display until it ends; returns its final record."""
    job_started = time.time()
    while True:
        job = _check(client.get(f"/v1/jobs/{job_id}"), 200)
        p = job["progress"]
        line = (
            f"\r[{time.time() - job_started:6.1f}s] {job['status']:<9} {p['stage']:<10} "
            f"{p['fraction'] * 100:5.1f}%  {p['message'][:60]:<60}"
        )
        sys.stdout.write(line)
        sys.stdout.flush()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            print()
            return job
        time.sleep(0.5)


def _print_report(report: dict) -> None:
    print("\n=== report ===")
    print(f"estimated noise share: {report['noise_share']:.1%} of {report['n_labelled']} labelled rows")
    print(f"rows flagged as label issues: {report['n_flagged']}  per class: {report['flagged_per_class']}")
    print("noise matrix P(noisy | true), rows = true class:")
    width = max(len(c) for c in report["labels"])
    for c, row in zip(report["labels"], report["noise_matrix"], strict=True):
        print(f"  {c:>{width}}  " + "  ".join(f"{x:5.2f}" for x in row))
    timings = ", ".join(f"{k} {v:.0f}s" for k, v in report["timings"].items())
    print(f"timings: {timings}")


_SHORT = {
    "refined": "refined (method's labels)",
    "plain": "plain (noisy-label clf)",
    "served": "served (distilled model)",
    "plain_model": "plain_model (plain fine-tune)",
    "probe": "probe (logistic regression)",
}


def _interval(e: dict | None) -> str:
    if not e or e.get("accuracy") is None:
        return "not estimated"
    return f"{e['accuracy']:.3f}  [{e['low']:.3f}, {e['high']:.3f}]  ({e['method']}, {e['rows']} rows)"


def _score(s: dict | None) -> str:
    if not s:
        return "not scored"
    return f"accuracy {s['accuracy']:.3f}  macro-F1 {s['macro_f1']:.3f}  ECE {s['ece']:.3f}"


def _comparison(name: str, delivered: float, plain: float, method_kept: bool = True) -> str:
    """One verdict line: `name` ("the delivered labels") against the plain noisy-label classifier."""
    if delivered < plain and not method_kept:
        return (
            f"{name}: the plain classifier's single best branch, not the method: {delivered:.3f} vs the "
            f"three-branch ensemble's {plain:.3f} on the toy gold (the ensemble is not a servable model)."
        )
    if delivered < plain:
        return (
            f"{name}: WORSE than the plain noisy-label classifier on the toy gold "
            f"({delivered:.3f} vs {plain:.3f}); on this set the method did harm."
        )
    if delivered > plain:
        return f"{name}: better than the plain noisy-label classifier on the toy gold ({delivered:.3f} vs {plain:.3f})."
    return f"{name}: the same accuracy as the plain noisy-label classifier on the toy gold ({delivered:.3f})."


def _why_not_caught(sel: dict, measured: dict[str, float | None]) -> list[str]:
    """When the kept method output is worse on the gold than the plain one: what the selection saw instead."""
    found = sel.get("estimates") or {}
    lines = []
    for method, plain in (("refined", "plain"), ("served", "plain_model")):
        est_m, est_p = (found.get(method) or {}).get("accuracy"), (found.get(plain) or {}).get("accuracy")
        if measured.get(method) is None or measured.get(plain) is None or measured[method] >= measured[plain]:
            continue
        if method not in (sel.get("kept"), sel.get("kept_model")) or est_m is None or est_p is None:
            continue
        if est_m >= est_p:
            lines.append(
                f"  {method}: the gold-free estimates put it ahead of {plain} ({est_m:.3f} vs {est_p:.3f}), the "
                "opposite of the toy gold: they are the refined posteriors' view of every candidate, including "
                "their own, and the selection never acts on them."
            )
        else:
            lines.append(
                f"  {method}: the gold-free estimates put {plain} ahead ({est_p:.3f} vs {est_m:.3f}) but not "
                "clearly enough to switch, or the selection was not allowed to act on them (see why)."
            )
    return ["why the selection kept it anyway:"] + lines if lines else []


def format_summary(report: dict) -> list[str]:
    """What the run kept and why (the report's `selection`), beside the figures measured on the toy gold."""
    # the report file's top-level `selection`; the API's Report schema carries it under `diagnostics` only
    sel = report.get("selection") or (report.get("diagnostics") or {}).get("selection") or {}
    lines = ["", "=== what the run kept, and why ==="]
    if not sel:
        return lines + ["the report holds no selection: this service did not choose between candidates"]
    kept, kept_model = sel.get("kept"), sel.get("kept_model")
    lines += [
        f"labels delivered: {kept} ({CANDIDATE_DESCRIPTIONS.get(kept, '?')})",
        f"model served:     {kept_model} ({CANDIDATE_DESCRIPTIONS.get(kept_model, '?')})",
        f"why: {sel.get('reason', '?')}",
        f"rule: {sel.get('rule', '?')}",
        "gold-free estimates (what the refined posteriors expect: the method's own view; each interval spans "
        "its 95% interval and the method of moments'):",
        f"  {'LLM labels':<28} {_interval(sel.get('llm_label_accuracy'))}",
        f"  {'share of wrong LLM labels':<28} {_interval(sel.get('noise_share'))}",
    ]
    for name, e in (sel.get("estimates") or {}).items():
        mark = " <- kept" if name in (kept, kept_model) else ""
        lines.append(f"  {_SHORT.get(name, name):<28} {_interval(e)}{mark}")
    # the report's warnings, as `sidyp calibrate` prints them (e.g. a close call of the noise gate)
    lines += [f"warning: {w.get('message', w.get('code'))}" for w in report.get("warnings") or []]
    ev = report.get("eval")
    if not ev or not ev.get("n_scored"):
        return lines + ["no evaluation rows with gold labels: nothing measured"]
    llm = ev.get("llm_label_accuracy")
    plain, labels, model = ev.get("noisy_classifier"), ev.get("refined_posterior"), ev.get("served")
    lines += [
        f"measured on the toy gold ({ev['n_scored']} evaluation rows; the service never saw these labels):",
        f"  {'LLM labels':<28} " + (f"accuracy {llm:.3f}" if llm is not None else "not scored"),
        f"  {'noisy-label classifier':<28} {_score(plain)}",
        f"  {'delivered labels (' + str(kept) + ')':<28} {_score(labels)}",
        f"  {'delivered model (' + str(kept_model) + ')':<28} {_score(model)}",
    ]
    if plain:
        verdicts = [
            ("the delivered labels", labels, kept != "plain"),
            ("the served model", model, kept_model != "plain_model"),
        ]
        lines += [
            f"verdict, {_comparison(n, s['accuracy'], plain['accuracy'], method)}"
            for n, s, method in verdicts
            if s
        ]
        # eval has no plain_model score: the served plain_model is the noisy-label classifier's best branch
        measured = {"plain": plain["accuracy"], "plain_model": plain["accuracy"]}
        measured |= {kept: (labels or {}).get("accuracy"), kept_model: (model or {}).get("accuracy")}
        lines += _why_not_caught(sel, measured)
    return lines


def _accuracy(part: dict | None) -> str:
    return "not scored" if not part else f"{part['accuracy']:.3f}"


def format_checked_summary(before: dict, after: dict, n_checked: int, labelled: int, wrong: int) -> list[str]:
    """The second run, with `n_checked` rows checked by hand (`wrong` of the `labelled` ones that had an LLM
    label were wrong), beside the first: what was kept, why, and what changed on the toy gold."""
    sel = (after.get("diagnostics") or {}).get("selection") or after.get("selection") or {}
    unlabelled = f", and {n_checked - labelled} the LLM left unlabelled" if labelled < n_checked else ""
    lines = [
        "",
        f"=== the same job with {n_checked} training rows checked by hand (a random sample) ===",
        f"the checks found {wrong} of {labelled} LLM labels wrong ({wrong / max(labelled, 1):.0%}){unlabelled}; "
        "the run measures on those rows instead of estimating",
        f"labels delivered: {sel.get('kept', '?')}; model served: {sel.get('kept_model', '?')}",
        f"why: {sel.get('reason', '?')}",
        f"temperatures fitted on: {sel.get('temperature_source', '?')}",
    ]
    lines += [f"warning: {w.get('message', w.get('code'))}" for w in after.get("warnings") or []]
    first, second = before.get("eval") or {}, after.get("eval") or {}
    if not second.get("n_scored"):
        return lines + ["no evaluation rows with gold labels: nothing measured"]
    lines.append(
        f"measured on the toy gold ({second['n_scored']} evaluation rows), without checks -> with them:"
    )
    for name, key in (("delivered labels", "refined_posterior"), ("delivered model", "served")):
        lines.append(f"  {name:<28} accuracy {_accuracy(first.get(key))} -> {_accuracy(second.get(key))}")
    return lines


def _print_flagged(client: httpx.Client, job_id: str, gold: list[str]) -> None:
    """Three flagged rows, and how many flags are right on the toy gold."""
    labels = _check(client.get(f"/v1/jobs/{job_id}/labels", params={"limit": 1000}), 200)["data"]
    issues = [it for it in labels if it["is_label_issue"]]
    if issues:
        print("\nsome rows the service flags (given -> suggested; gold from the toy set):")
        for it in issues[:3]:
            print(
                f"  #{it['index']:<4} {it['text'][:50]!r:<54} {it['given_label']} -> {it['suggested_label']}"
                f" (gold {gold[it['index']]})"
            )
    really = sum(1 for it in issues if it["given_label"] != gold[it["index"]])
    fixed = sum(1 for it in issues if it["suggested_label"] == gold[it["index"]] != it["given_label"])
    wrong = sum(
        1 for it in labels if it["given_label"] is not None and it["given_label"] != gold[it["index"]]
    )
    print(
        f"of {len(issues)} flagged rows {really} really have a wrong LLM label and {fixed} get the right one"
        f" suggested; {wrong} labelled rows are wrong in all"
    )


def _print_predictions(client: httpx.Client, model_id: str, held_out: dict) -> None:
    texts = held_out["texts"][:3]
    pred = _check(client.post(f"/v1/models/{model_id}/predict", json={"texts": texts}), 200)
    print(f"\n=== predictions of model {model_id} ===")
    for t, p, g in zip(texts, pred["predictions"], held_out["gold"][:3], strict=True):
        probs = ", ".join(f"{c} {v:.2f}" for c, v in p["probabilities"].items())
        print(f"  {t[:60]!r}\n    -> {p['label']} ({p['confidence']:.2f}; gold {g})  [{probs}]")


def _run_job(client: httpx.Client, dataset_id: str, eval_id: str, what: str) -> tuple[dict, dict] | None:
    """Start a demo job on the dataset, follow it; (its record, its report), or None (said why) if it failed."""
    body = {"dataset_id": dataset_id, "eval_dataset_id": eval_id, "params": DEMO_PARAMS}
    job = _check(client.post("/v1/jobs", json=body), 202)
    print(f"job {job['id']} queued: {what}")
    job = _follow(client, job["id"])
    if job["status"] != "succeeded":
        print(f"job ended {job['status']}: {job['error']}")
        return None
    return job, _check(client.get(f"/v1/jobs/{job['id']}/report"), 200)


def _walk_through(client: httpx.Client, n_per_class: int) -> int:
    """Upload, calibrate, report and predict, as a client of the running service; the exit status."""
    from sidyp_engine.synthetic import make_toy_dataset

    train = make_toy_dataset(n_per_class=n_per_class, seed=0)
    held_out = make_toy_dataset(n_per_class=max(n_per_class // 2, 10), seed=1)
    ds, ev = _upload_datasets(client, train, held_out)
    finished = _run_job(client, ds["id"], ev["id"], f"with params {DEMO_PARAMS}")
    if finished is None:
        return 1
    job, report = finished
    _print_report(report)
    _print_flagged(client, job["id"], train["gold"])
    _print_predictions(client, job["model_id"], held_out)
    print("\n".join(format_summary(report)))
    return _with_checked_rows(client, train, ev, report)


def _with_checked_rows(client: httpx.Client, train: dict, ev: dict, before: dict) -> int:
    """The report's advice taken: a random sample checked by hand, uploaded as trusted labels, run again."""
    trusted = checked_rows(train["gold"], CHECKED_ROWS)
    content = _csv_bytes(train["texts"], train["noisy"], trusted=trusted)
    ds = _upload(client, "toy-train-checked.csv", f"toy ({CHECKED_ROWS} rows checked)", content)
    print()
    finished = _run_job(client, ds["id"], ev["id"], f"the same data with {CHECKED_ROWS} rows checked by hand")
    if finished is None:
        return 1
    after = finished[1]
    checked = [(t, n) for t, n in zip(trusted, train["noisy"], strict=True) if t is not None and n]
    wrong = sum(t != n for t, n in checked)
    print("\n".join(format_checked_summary(before, after, CHECKED_ROWS, len(checked), wrong)))
    return 0


def run_demo(n_per_class: int = 50) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="sidyp-demo-"))
    port, key = _free_port(), "sk-demo-" + secrets.token_urlsafe(16)
    base = f"http://127.0.0.1:{port}"
    log_path = tmp / "server.log"
    print(f"starting `sidyp serve` (embedded mode) on {base}, data in {tmp / 'data'}")
    proc = _start_server(tmp / "data", key, port, log_path)
    started = time.time()
    try:
        _wait_ready(base, proc, log_path)
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
            if status := _walk_through(client, n_per_class):
                return status
        print(f"\ndemo finished in {time.time() - started:.0f}s; stopping the service")
        return 0
    finally:
        _stop(proc)


def main() -> int:
    return run_demo()


if __name__ == "__main__":
    sys.exit(main())
