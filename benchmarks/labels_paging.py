"""How fast the review table pages for a large job: GET /v1/jobs/{id}/labels over real HTTP.

A finished 20,000-row job is written directly (a job record in the SQLite store and a labels.json of
`sidyp_engine.labels.label_table`'s shape in its folder; no training), then uvicorn serves the real app on
loopback and one client walks the table as the console does: pages of 50, worst label quality first, with
filters; one walk saves a review decision before each page, the last walks a table whose every row has one. Each request is timed end to end (client side).

    python -m benchmarks.labels_paging [--rows 20000] [--pages 60] [--out benchmarks/results/labels-paging.json]
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import uvicorn

from app.main import create_app
from benchmarks.load import _machine
from sidyp_core.artifacts import LABELS_FILE, artifact_dir, write_artifact, write_json
from sidyp_core.config import Settings
from sidyp_core.ids import new_id
from sidyp_core.store import utc_now_iso
from sidyp_core.store.sqlite_store import SqliteJobStore

KEY = "bench-key-" + "x" * 24
CLASSES = ["billing", "bug", "feature", "praise", "question", "spam"]
WORDS = (
    "invoice refund crash error slow login button export chart love great please how why when free".split()
)
TARGET_MS = 300.0


def labels_table(n: int, seed: int = 0) -> dict:
    rng = random.Random(seed)
    rows: dict[str, list] = {
        k: []
        for k in (
            "text",
            "given_label",
            "suggested_label",
            "label_quality",
            "is_label_issue",
            "probabilities",
            "is_validation",
            "is_trusted",
        )
    }
    for i in range(n):
        probs = [rng.random() ** 3 for _ in CLASSES]
        total = sum(probs)
        probs = [round(p / total, 6) for p in probs]
        suggested = CLASSES[max(range(len(CLASSES)), key=probs.__getitem__)]
        given = suggested if rng.random() < 0.7 else rng.choice(CLASSES)
        rows["text"].append(f"ticket {i}: " + " ".join(rng.choices(WORDS, k=rng.randint(8, 40))))
        rows["given_label"].append(given)
        rows["suggested_label"].append(suggested)
        rows["label_quality"].append(probs[CLASSES.index(given)])
        rows["is_label_issue"].append(given != suggested)
        rows["probabilities"].append(probs)
        rows["is_validation"].append(i % 10 == 0)
        rows["is_trusted"].append(False)
    return {"classes": CLASSES, "rows": rows}


def finished_job(store, data_dir: Path, table: dict) -> str:
    job_id = new_id("job")
    store.put(
        "job",
        {
            "id": job_id,
            "object": "job",
            "tenant": "bench",
            "status": "succeeded",
            "dataset_id": new_id("dataset"),
            "params": {},
            "created_at": utc_now_iso(),
            "progress": {"stage": "succeeded", "fraction": 1.0, "message": ""},
        },
    )
    folder = artifact_dir(data_dir, "bench", "jobs", job_id)
    write_artifact(folder, lambda tmp: write_json(tmp / LABELS_FILE, table))
    return job_id


def serve(app) -> tuple[uvicorn.Server, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning", lifespan="off"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def walk(client: httpx.Client, job_id: str, params: dict, pages: int, review: bool = False) -> list[float]:
    """Times `pages` consecutive pages (fewer when the filter runs out); with `review`, the first row of
    every page is decided before the next page is asked for (as a reviewer does)."""
    times, after = [], -1
    for _ in range(pages):
        start = time.perf_counter()
        r = client.get(f"/v1/jobs/{job_id}/labels", params={**params, "after": after, "limit": 50})
        times.append((time.perf_counter() - start) * 1000)
        r.raise_for_status()
        page = r.json()
        if review and page["data"]:
            body = {"reviews": [{"index": page["data"][0]["index"], "action": "accept"}]}
            client.post(f"/v1/jobs/{job_id}/reviews", json=body).raise_for_status()
        if not page["has_more"]:
            break
        after = page["next_cursor"]
    return times


def summary(times: list[float]) -> dict:
    ordered = sorted(times)
    return {
        "pages": len(times),
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2),
        "max_ms": round(ordered[-1], 2),
    }


def run(rows: int, pages: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(api_keys=f"bench:{KEY}", data_dir=Path(tmp) / "data")
        store = SqliteJobStore(Path(tmp) / "store.sqlite3")
        job_id = finished_job(store, settings.data_dir, labels_table(rows))
        server, base = serve(create_app(settings, store))
        try:
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as c:
                worst_first = {"order": "label_quality", "is_label_issue": True}
                start = time.perf_counter()
                c.get(f"/v1/jobs/{job_id}/labels", params={**worst_first, "limit": 50}).raise_for_status()
                cold = (time.perf_counter() - start) * 1000
                scenarios = {
                    "flagged, worst first": walk(c, job_id, worst_first, pages),
                    "flagged, worst first, given_label=bug": walk(
                        c, job_id, {**worst_first, "given_label": "bug"}, pages
                    ),
                    "worst first, text search q=refund": walk(
                        c, job_id, {"order": "label_quality", "q": "refund"}, pages
                    ),
                    "flagged, worst first, reviewed=false, a decision saved per page": walk(
                        c, job_id, {**worst_first, "reviewed": False}, pages, review=True
                    ),
                }
                for start in range(
                    0, rows, 10_000
                ):  # then every row decided, as a bulk "accept all" leaves it
                    body = {
                        "reviews": [
                            {"index": i, "action": "accept"} for i in range(start, min(rows, start + 10_000))
                        ]
                    }
                    c.post(f"/v1/jobs/{job_id}/reviews", json=body).raise_for_status()
                scenarios["worst first, reviewed=true, every row decided"] = walk(
                    c, job_id, {"order": "label_quality", "reviewed": True}, pages
                )
        finally:
            server.should_exit = True
    every = [t for times in scenarios.values() for t in times]
    return {
        "benchmark": "labels_paging",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "setup": f"{rows}-row finished job, SQLite store, uvicorn on loopback (1 process), httpx client in the "
        "same process; pages of 50 rows; times are client-side, end to end",
        "machine": _machine(),
        "rows": rows,
        "page_size": 50,
        "first_page_cold_ms": round(cold, 2),
        "scenarios": {name: summary(times) for name, times in scenarios.items()},
        "all_pages": summary(every),
        "target_ms": TARGET_MS,
        "meets_target": max(every) < TARGET_MS,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--pages", type=int, default=60)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/labels-paging.json"))
    args = parser.parse_args()
    result = run(args.rows, args.pages)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        json.dumps(
            {k: result[k] for k in ("first_page_cold_ms", "scenarios", "all_pages", "meets_target")}, indent=2
        )
    )


if __name__ == "__main__":
    main()
