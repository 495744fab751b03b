"""Redis job store for the Celery mode: state shared by the API processes and every worker.

Keys (prefix `sidyp:`):
  rec:<kind>:<id>        JSON record
  idx:<kind>:<tenant>    sorted set of ids by insertion sequence (lists, newest first)
  status:<status>        set of job ids in that status (reaper, metrics, queue limit)
  events:<job_id>        list of JSON events (index = seq)
  cancel:<job_id>        cancel flag
  queue                  list of job ids for embedded-style workers
  lock:<name>            lock owner, with a PX expiry
  workers                hash worker id -> JSON {last_seen, ...}
  reviews:<tenant>:<job> hash row index -> JSON review decision
Job mutations use WATCH/MULTI so concurrent writers (API cancel, worker progress, reaper) never lose updates.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import redis

from sidyp_core.store.base import JOB_STATUSES, RESOURCE_KINDS, JobStore, Mutation, Record

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""
# Pop the oldest queued id and drop it from the membership set in one step.
_CLAIM = """
local id = redis.call('rpop', KEYS[1])
if id then redis.call('srem', KEYS[2], id) end
return id
"""


class RedisJobStore(JobStore):
    def __init__(self, url: str, prefix: str = "sidyp:"):
        self.r = redis.Redis.from_url(url, decode_responses=True, health_check_interval=30)
        self.p = prefix
        self._renew = self.r.register_script(_RENEW)
        self._release = self.r.register_script(_RELEASE)
        self._claim = self.r.register_script(_CLAIM)

    def _k(self, *parts: str) -> str:
        return self.p + ":".join(parts)

    # ---------------- records ----------------
    def put(self, kind: str, record: Record) -> None:
        assert kind in RESOURCE_KINDS
        seq = self.r.incr(self._k("seq"))
        pipe = self.r.pipeline(transaction=True)
        pipe.set(self._k("rec", kind, record["id"]), json.dumps(record), nx=True)
        pipe.zadd(self._k("idx", kind, record["tenant"]), {record["id"]: seq})
        if kind == "job" and record.get("status"):
            pipe.sadd(self._k("status", record["status"]), record["id"])
        created, *_ = pipe.execute()
        if not created:
            raise ValueError(f"{kind} {record['id']} already exists")

    def get(self, kind: str, resource_id: str, tenant: str | None) -> Record | None:
        raw = self.r.get(self._k("rec", kind, resource_id))
        if raw is None:
            return None
        doc = json.loads(raw)
        if tenant is not None and doc.get("tenant") != tenant:
            return None
        return doc

    def list(self, kind: str, tenant: str, limit: int, after: str | None = None) -> tuple[list[Record], bool]:
        idx = self._k("idx", kind, tenant)
        if after is not None:
            anchor = self.r.zscore(idx, after)
            if anchor is None:
                return [], False
            ids = self.r.zrevrangebyscore(idx, f"({anchor}", "-inf", start=0, num=limit + 1)
        else:
            ids = self.r.zrevrange(idx, 0, limit)
        has_more = len(ids) > limit
        ids = ids[:limit]
        raws = self.r.mget([self._k("rec", kind, i) for i in ids]) if ids else []
        return [json.loads(x) for x in raws if x is not None], has_more

    def delete(self, kind: str, resource_id: str, tenant: str) -> bool:
        doc = self.get(kind, resource_id, tenant)
        if doc is None:
            return False
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(self._k("rec", kind, resource_id))
        pipe.zrem(self._k("idx", kind, tenant), resource_id)
        if kind == "job":
            for status in JOB_STATUSES:
                pipe.srem(self._k("status", status), resource_id)
            pipe.delete(self._k("events", resource_id), self._k("cancel", resource_id))
            pipe.lrem(self._k("queue"), 0, resource_id)
            pipe.srem(self._k("queued-set"), resource_id)
            pipe.delete(self._k("reviews", tenant, resource_id))
        pipe.execute()
        return True

    # ---------------- jobs ----------------
    def mutate_job(self, job_id: str, fn: Mutation) -> Record | None:
        key = self._k("rec", "job", job_id)
        with self.r.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    if raw is None:
                        pipe.unwatch()
                        return None
                    old = json.loads(raw)
                    new = fn(json.loads(raw))
                    if new is None:
                        pipe.unwatch()
                        return None
                    pipe.multi()
                    pipe.set(key, json.dumps(new))
                    if old.get("status") != new.get("status"):
                        pipe.srem(self._k("status", str(old.get("status"))), job_id)
                        pipe.sadd(self._k("status", str(new.get("status"))), job_id)
                    pipe.execute()
                    return new
                except redis.WatchError:
                    continue

    def jobs_with_status(self, status: str) -> list[Record]:
        ids = sorted(self.r.smembers(self._k("status", status)))
        if not ids:
            return []
        raws = self.r.mget([self._k("rec", "job", i) for i in ids])
        docs = [json.loads(x) for x in raws if x is not None]
        return [d for d in docs if d.get("status") == status]

    def count_jobs_by_status(self) -> dict[str, int]:
        pipe = self.r.pipeline(transaction=False)
        for status in JOB_STATUSES:
            pipe.scard(self._k("status", status))
        return {s: n for s, n in zip(JOB_STATUSES, pipe.execute(), strict=True) if n}

    # ---------------- events ----------------
    def add_event(self, job_id: str, event: Record) -> int:
        # The seq is only known once pushed, so the stored event carries the list index implicitly.
        length = self.r.rpush(self._k("events", job_id), json.dumps(event))
        return length - 1

    def list_events(self, job_id: str, after: int = -1, limit: int = 100) -> tuple[list[Record], bool]:
        start = max(after + 1, 0)
        raws = self.r.lrange(self._k("events", job_id), start, start + limit)
        docs = [{**json.loads(x), "seq": start + i} for i, x in enumerate(raws)]
        return docs[:limit], len(docs) > limit

    # ---------------- cancel flags ----------------
    def request_cancel(self, job_id: str) -> None:
        self.r.set(self._k("cancel", job_id), "1")

    def cancel_requested(self, job_id: str) -> bool:
        return bool(self.r.exists(self._k("cancel", job_id)))

    # ---------------- queue ----------------
    def enqueue(self, job_id: str) -> None:
        if self.r.sadd(self._k("queued-set"), job_id):
            self.r.lpush(self._k("queue"), job_id)

    def claim_next(self) -> str | None:
        return self._claim(keys=[self._k("queue"), self._k("queued-set")])

    def dequeue(self, job_id: str) -> bool:
        pipe = self.r.pipeline(transaction=True)
        pipe.lrem(self._k("queue"), 0, job_id)
        pipe.srem(self._k("queued-set"), job_id)
        removed, _ = pipe.execute()
        return bool(removed)

    def queue_length(self) -> int:
        return int(self.r.llen(self._k("queue")))

    def queue_contains(self, job_id: str) -> bool:
        return bool(self.r.sismember(self._k("queued-set"), job_id))

    # ---------------- locks ----------------
    def acquire_lock(self, name: str, owner: str, ttl_seconds: float) -> bool:
        key = self._k("lock", name)
        if self.r.set(key, owner, nx=True, px=int(ttl_seconds * 1000)):
            return True
        # Re-entrant for the same owner: a worker re-taking its own lock just extends it.
        return bool(self._renew(keys=[key], args=[owner, int(ttl_seconds * 1000)]))

    def renew_lock(self, name: str, owner: str, ttl_seconds: float) -> bool:
        return bool(self._renew(keys=[self._k("lock", name)], args=[owner, int(ttl_seconds * 1000)]))

    def release_lock(self, name: str, owner: str) -> None:
        self._release(keys=[self._k("lock", name)], args=[owner])

    def lock_owner(self, name: str) -> str | None:
        return self.r.get(self._k("lock", name))

    # ---------------- workers ----------------
    def worker_beat(self, worker_id: str, info: Record | None = None) -> None:
        self.r.hset(self._k("workers"), worker_id, json.dumps({**(info or {}), "last_seen": time.time()}))

    def worker_gone(self, worker_id: str) -> None:
        self.r.hdel(self._k("workers"), worker_id)

    def live_workers(self, max_age_seconds: float) -> list[Record]:
        now = time.time()
        out = []
        for wid, raw in self.r.hgetall(self._k("workers")).items():
            doc = json.loads(raw)
            if now - float(doc.get("last_seen", 0)) < max_age_seconds:
                out.append({**doc, "id": wid})
        return out

    # ---------------- label reviews ----------------
    def put_reviews(self, tenant: str, job_id: str, reviews: list[Record]) -> None:
        if reviews:
            self.r.hset(
                self._k("reviews", tenant, job_id), mapping={str(r["index"]): json.dumps(r) for r in reviews}
            )

    def list_reviews(self, tenant: str, job_id: str, rows: Sequence[int] | None = None) -> list[Record]:
        key = self._k("reviews", tenant, job_id)
        if rows is None:
            raws = self.r.hvals(key)
        else:
            raws = [x for x in self.r.hmget(key, [str(i) for i in rows]) if x is not None] if rows else []
        return sorted((json.loads(x) for x in raws), key=lambda d: d["index"])

    def reviewed_rows(self, tenant: str, job_id: str) -> set[int]:
        return {int(i) for i in self.r.hkeys(self._k("reviews", tenant, job_id))}

    # ---------------- lifecycle ----------------
    def ping(self) -> bool:
        try:
            return bool(self.r.ping())
        except redis.RedisError:
            return False

    def close(self) -> None:
        self.r.close()
