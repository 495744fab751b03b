"""SQLite job store for the embedded mode: one file under the data dir, shared by the API and its worker.

WAL mode lets readers proceed while a writer commits; every write takes `BEGIN IMMEDIATE`, so
read-modify-write sequences (job transitions, queue claims, locks) are serialised across processes.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from sidyp_core.store.base import RESOURCE_KINDS, JobStore, Mutation, Record

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    id TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    status TEXT,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_list ON records (kind, tenant, seq);
CREATE INDEX IF NOT EXISTS records_status ON records (kind, status);
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
);
CREATE TABLE IF NOT EXISTS cancel_flags (job_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS queue (pos INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS locks (name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS workers (id TEXT PRIMARY KEY, last_seen REAL NOT NULL, info TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS reviews (
    tenant TEXT NOT NULL,
    job_id TEXT NOT NULL,
    row_index INTEGER NOT NULL,
    action TEXT NOT NULL,
    label TEXT NOT NULL,
    reviewed_at TEXT NOT NULL,
    key_id TEXT NOT NULL,
    PRIMARY KEY (tenant, job_id, row_index)
);
"""


class SqliteJobStore(JobStore):
    def __init__(self, path: str | Path):
        self.path = str(path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._db().executescript(_SCHEMA)

    # One connection per thread: sqlite3 connections must not be shared between threads.
    def _db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    class _Tx:
        def __init__(self, conn: sqlite3.Connection):
            self.conn = conn

        def __enter__(self) -> sqlite3.Connection:
            self.conn.execute("BEGIN IMMEDIATE")
            return self.conn

        def __exit__(self, exc_type, exc, tb) -> None:
            if exc_type is None:
                self.conn.execute("COMMIT")
            else:
                self.conn.execute("ROLLBACK")

    def _write(self) -> _Tx:
        return self._Tx(self._db())

    # ---------------- records ----------------
    def put(self, kind: str, record: Record) -> None:
        assert kind in RESOURCE_KINDS
        with self._write() as db:
            db.execute(
                "INSERT INTO records (kind, id, tenant, status, doc) VALUES (?, ?, ?, ?, ?)",
                (kind, record["id"], record["tenant"], record.get("status"), json.dumps(record)),
            )

    def get(self, kind: str, resource_id: str, tenant: str | None) -> Record | None:
        row = (
            self._db()
            .execute("SELECT tenant, doc FROM records WHERE kind = ? AND id = ?", (kind, resource_id))
            .fetchone()
        )
        if row is None or (tenant is not None and row[0] != tenant):
            return None
        return json.loads(row[1])

    def list(self, kind: str, tenant: str, limit: int, after: str | None = None) -> tuple[list[Record], bool]:
        db = self._db()
        if after is not None:
            anchor = db.execute(
                "SELECT seq FROM records WHERE kind = ? AND tenant = ? AND id = ?", (kind, tenant, after)
            ).fetchone()
            if anchor is None:
                return [], False
            rows = db.execute(
                "SELECT doc FROM records WHERE kind = ? AND tenant = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
                (kind, tenant, anchor[0], limit + 1),
            ).fetchall()
        else:
            rows = db.execute(
                "SELECT doc FROM records WHERE kind = ? AND tenant = ? ORDER BY seq DESC LIMIT ?",
                (kind, tenant, limit + 1),
            ).fetchall()
        docs = [json.loads(r[0]) for r in rows]
        return docs[:limit], len(docs) > limit

    def delete(self, kind: str, resource_id: str, tenant: str) -> bool:
        with self._write() as db:
            cur = db.execute(
                "DELETE FROM records WHERE kind = ? AND id = ? AND tenant = ?", (kind, resource_id, tenant)
            )
            if cur.rowcount and kind == "job":
                db.execute("DELETE FROM events WHERE job_id = ?", (resource_id,))
                db.execute("DELETE FROM cancel_flags WHERE job_id = ?", (resource_id,))
                db.execute("DELETE FROM queue WHERE job_id = ?", (resource_id,))
                db.execute("DELETE FROM reviews WHERE job_id = ? AND tenant = ?", (resource_id, tenant))
            return bool(cur.rowcount)

    # ---------------- jobs ----------------
    def mutate_job(self, job_id: str, fn: Mutation) -> Record | None:
        with self._write() as db:
            row = db.execute("SELECT doc FROM records WHERE kind = 'job' AND id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            new = fn(json.loads(row[0]))
            if new is None:
                return None
            db.execute(
                "UPDATE records SET doc = ?, status = ? WHERE kind = 'job' AND id = ?",
                (json.dumps(new), new.get("status"), job_id),
            )
            return new

    def jobs_with_status(self, status: str) -> list[Record]:
        rows = (
            self._db()
            .execute("SELECT doc FROM records WHERE kind = 'job' AND status = ? ORDER BY seq", (status,))
            .fetchall()
        )
        return [json.loads(r[0]) for r in rows]

    def count_jobs_by_status(self) -> dict[str, int]:
        rows = (
            self._db()
            .execute("SELECT status, COUNT(*) FROM records WHERE kind = 'job' GROUP BY status")
            .fetchall()
        )
        return {status: n for status, n in rows}

    # ---------------- events ----------------
    def add_event(self, job_id: str, event: Record) -> int:
        with self._write() as db:
            (last,) = db.execute(
                "SELECT COALESCE(MAX(seq), -1) FROM events WHERE job_id = ?", (job_id,)
            ).fetchone()
            seq = last + 1
            db.execute(
                "INSERT INTO events (job_id, seq, doc) VALUES (?, ?, ?)",
                (job_id, seq, json.dumps({**event, "seq": seq})),
            )
            return seq

    def list_events(self, job_id: str, after: int = -1, limit: int = 100) -> tuple[list[Record], bool]:
        rows = (
            self._db()
            .execute(
                "SELECT doc FROM events WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (job_id, after, limit + 1),
            )
            .fetchall()
        )
        docs = [json.loads(r[0]) for r in rows]
        return docs[:limit], len(docs) > limit

    # ---------------- cancel flags ----------------
    def request_cancel(self, job_id: str) -> None:
        with self._write() as db:
            db.execute("INSERT OR IGNORE INTO cancel_flags (job_id) VALUES (?)", (job_id,))

    def cancel_requested(self, job_id: str) -> bool:
        return (
            self._db().execute("SELECT 1 FROM cancel_flags WHERE job_id = ?", (job_id,)).fetchone()
            is not None
        )

    # ---------------- queue ----------------
    def enqueue(self, job_id: str) -> None:
        with self._write() as db:
            db.execute("INSERT OR IGNORE INTO queue (job_id) VALUES (?)", (job_id,))

    def claim_next(self) -> str | None:
        with self._write() as db:
            row = db.execute("SELECT pos, job_id FROM queue ORDER BY pos LIMIT 1").fetchone()
            if row is None:
                return None
            db.execute("DELETE FROM queue WHERE pos = ?", (row[0],))
            return row[1]

    def dequeue(self, job_id: str) -> bool:
        with self._write() as db:
            return bool(db.execute("DELETE FROM queue WHERE job_id = ?", (job_id,)).rowcount)

    def queue_length(self) -> int:
        return self._db().execute("SELECT COUNT(*) FROM queue").fetchone()[0]

    def queue_contains(self, job_id: str) -> bool:
        return self._db().execute("SELECT 1 FROM queue WHERE job_id = ?", (job_id,)).fetchone() is not None

    # ---------------- locks ----------------
    def acquire_lock(self, name: str, owner: str, ttl_seconds: float) -> bool:
        now = time.time()
        with self._write() as db:
            row = db.execute("SELECT owner, expires_at FROM locks WHERE name = ?", (name,)).fetchone()
            if row is not None and row[1] > now and row[0] != owner:
                return False
            db.execute(
                "INSERT OR REPLACE INTO locks (name, owner, expires_at) VALUES (?, ?, ?)",
                (name, owner, now + ttl_seconds),
            )
            return True

    def renew_lock(self, name: str, owner: str, ttl_seconds: float) -> bool:
        now = time.time()
        with self._write() as db:
            cur = db.execute(
                "UPDATE locks SET expires_at = ? WHERE name = ? AND owner = ? AND expires_at > ?",
                (now + ttl_seconds, name, owner, now),
            )
            return bool(cur.rowcount)

    def release_lock(self, name: str, owner: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM locks WHERE name = ? AND owner = ?", (name, owner))

    def lock_owner(self, name: str) -> str | None:
        row = (
            self._db()
            .execute("SELECT owner FROM locks WHERE name = ? AND expires_at > ?", (name, time.time()))
            .fetchone()
        )
        return row[0] if row else None

    # ---------------- workers ----------------
    def worker_beat(self, worker_id: str, info: Record | None = None) -> None:
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO workers (id, last_seen, info) VALUES (?, ?, ?)",
                (worker_id, time.time(), json.dumps(info or {})),
            )

    def worker_gone(self, worker_id: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM workers WHERE id = ?", (worker_id,))

    def live_workers(self, max_age_seconds: float) -> list[Record]:
        rows = (
            self._db()
            .execute(
                "SELECT id, last_seen, info FROM workers WHERE last_seen > ?",
                (time.time() - max_age_seconds,),
            )
            .fetchall()
        )
        return [{**json.loads(info), "id": wid, "last_seen": seen} for wid, seen, info in rows]

    # ---------------- label reviews ----------------
    _REVIEW_FIELDS = ("index", "action", "label", "reviewed_at", "key_id")

    def put_reviews(self, tenant: str, job_id: str, reviews: list[Record]) -> None:
        with self._write() as db:
            db.executemany(
                "INSERT OR REPLACE INTO reviews (tenant, job_id, row_index, action, label, reviewed_at, key_id)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(tenant, job_id, *(r[f] for f in self._REVIEW_FIELDS)) for r in reviews],
            )

    def list_reviews(self, tenant: str, job_id: str, rows: Sequence[int] | None = None) -> list[Record]:
        query = "SELECT row_index, action, label, reviewed_at, key_id FROM reviews WHERE tenant = ? AND job_id = ?"
        if rows is None:
            found = self._db().execute(query + " ORDER BY row_index", (tenant, job_id)).fetchall()
        else:
            found = []
            for start in range(0, len(rows), 500):  # bounded by SQLite's limit on bound parameters
                chunk = [int(i) for i in rows[start : start + 500]]
                marks = ",".join("?" * len(chunk))
                found += self._db().execute(query + f" AND row_index IN ({marks})", (tenant, job_id, *chunk))
            found.sort()
        return [dict(zip(self._REVIEW_FIELDS, row, strict=True)) for row in found]

    def reviewed_rows(self, tenant: str, job_id: str) -> set[int]:
        found = self._db().execute(
            "SELECT row_index FROM reviews WHERE tenant = ? AND job_id = ?", (tenant, job_id)
        )
        return {row[0] for row in found}

    # ---------------- lifecycle ----------------
    def ping(self) -> bool:
        try:
            self._db().execute("SELECT 1").fetchone()
            return True
        except sqlite3.Error:
            return False

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
