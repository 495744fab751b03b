"""`Idempotency-Key` on the creating POSTs: a retried request gets the first answer and creates nothing new.

The first request with a key claims it in the store (scoped to the tenant and the operation) with the
request's fingerprint, runs, and stores its answer for 24 h. A retry with the same key and the same body
gets that answer back; with a different body, a 422; while the first is still running, a 409 (retry
shortly). Only successful answers are kept: an error frees the key, so the retry really retries (a 429 or
503 is meant to be retried, and a 422 answers the same again anyway).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from fastapi.responses import JSONResponse

from app.errors import ProblemError
from sidyp_core.store import JobStore

TTL_SECONDS = 24 * 3600
# A claim whose request died (the process was killed) frees itself after this, so the key is usable again.
PENDING_TTL_SECONDS = 600
KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"  # printable ASCII, no spaces; a uuid4 is the usual choice

Answer = tuple[int, dict[str, Any], dict[str, str]]  # status, JSON body, headers


def fingerprint(*parts: bytes | str | None) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = b"\x00none" if part is None else part.encode("utf-8") if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big") + data)
    return h.hexdigest()


def json_fingerprint(body: dict[str, Any]) -> str:
    return fingerprint(json.dumps(body, sort_keys=True, separators=(",", ":")))


def respond(
    store: JobStore,
    tenant: str,
    operation: str,
    key: str | None,
    request_print: str,
    run: Callable[[], Answer],
) -> JSONResponse:
    """Run `run` once per (tenant, operation, key); without a key, every request runs."""
    if key is None:
        return _response(*run())
    scope = f"{tenant}:{operation}"
    stored_key = hashlib.sha256(key.encode("utf-8")).hexdigest()
    claim = {"state": "pending", "fingerprint": request_print}
    earlier = store.claim_idempotency(scope, stored_key, claim, PENDING_TTL_SECONDS)
    if earlier is not None:
        return _replay(earlier, request_print)
    try:
        status, body, headers = run()
    except BaseException:
        store.release_idempotency(scope, stored_key)
        raise
    done = {**claim, "state": "done", "status": status, "body": body, "headers": headers}
    store.complete_idempotency(scope, stored_key, done, TTL_SECONDS)
    return _response(status, body, headers)


def _replay(earlier: dict[str, Any], request_print: str) -> JSONResponse:
    if earlier.get("fingerprint") != request_print:
        raise ProblemError(
            422,
            "This Idempotency-Key was used with a different request body; use a new key for a new request.",
            slug="idempotency-key-reused",
            errors=[{"field": "header.Idempotency-Key", "message": "already used with another body"}],
        )
    if earlier.get("state") != "done":
        raise ProblemError(
            409,
            "A request with this Idempotency-Key is still being processed; retry shortly.",
            slug="idempotency-key-in-use",
            headers={"Retry-After": "1"},
        )
    return _response(
        earlier["status"], earlier["body"], {**earlier["headers"], "Idempotent-Replayed": "true"}
    )


def _response(status: int, body: dict[str, Any], headers: dict[str, str]) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)
