"""RFC 9457 problem details: every error the API returns is `application/problem+json`.

Body: `type` (a URI reference naming the kind of problem), `title`, `status`, `detail`, and where it
helps an `errors` list: for uploads `{row, column, message}` (row = 0-based data row, as `index` in labels;
null when the problem is the file or its header), for request bodies `{field, message}`.
"""

from __future__ import annotations

import logging
import sqlite3
import uuid
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("sidyp.api")

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


class ProblemError(Exception):
    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str | None = None,
        title: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ):
        super().__init__(detail)
        self.extra = extra  # further members of the body (RFC 9457 extension members)
        self.status = status
        self.detail = detail
        self.slug = slug or _TITLES.get(status, "error").lower().replace(" ", "-")
        self.title = title or _TITLES.get(status, "Error")
        self.errors = errors
        self.headers = headers


def problem_response(
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    title: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    instance: str | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"/problems/{slug or _TITLES.get(status, 'error').lower().replace(' ', '-')}",
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if errors is not None:
        body["errors"] = errors
    body.update(extra or {})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


_WHEN = {
    401: "missing or invalid bearer key",
    404: "no such resource for this tenant",
    409: "the resource is in a state that does not allow this",
    410: "the outputs are no longer on disk",
    413: "the request body is over the size limit",
    422: "the request (body, query, header or uploaded file) is invalid; `errors` says where",
    429: "a limit was reached; retry after the Retry-After seconds",
    503: "the store or queue is unavailable; retry after the Retry-After seconds",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these problem+json answers, all with the one Problem schema (added to the
    document's components by app.openapi)."""
    return {
        status: {
            "description": _WHEN.get(status, _TITLES.get(status, "error")),
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        for status in statuses
    }


def not_found(kind: str) -> ProblemError:
    # The same answer whether the id does not exist or belongs to another tenant.
    return ProblemError(404, f"No such {kind}.", slug=f"{kind}-not-found")


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors()[:50]:
        loc = [str(p) for p in err.get("loc", ())]
        out.append({"field": ".".join(loc), "message": str(err.get("msg", "invalid value"))})
    return out


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(
            exc.status,
            exc.detail,
            slug=exc.slug,
            title=exc.title,
            errors=exc.errors,
            headers=exc.headers,
            instance=request.url.path,
            extra=exc.extra,
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(exc)
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5]) or "invalid request"
        return problem_response(
            422, detail, slug="validation-error", errors=errors, instance=request.url.path
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "error")
        slug = None
        if exc.status_code == 400 and detail == "There was an error parsing the body":
            # FastAPI's words when json.loads itself fails (e.g. RecursionError on deeply nested JSON).
            detail, slug = (
                "The request body could not be parsed (malformed, or JSON nested too deeply).",
                "invalid-body",
            )
        return problem_response(
            exc.status_code,
            detail,
            slug=slug,
            headers=getattr(exc, "headers", None),
            instance=request.url.path,
        )

    async def _store_down(request: Request, exc: Exception) -> JSONResponse:
        # Redis restarting, or the SQLite file busy past its timeout: a transient outage, not a bug. Handled
        # here rather than as a 500 so the client gets a retryable answer and the connection stays usable.
        if isinstance(exc, sqlite3.OperationalError) and "locked" not in str(exc):
            return await _unexpected(request, exc)
        log.warning("store unavailable on %s %s: %s", request.method, request.url.path, exc)
        return problem_response(
            503,
            "The job store is unavailable; try again shortly.",
            slug="store-unavailable",
            headers={"Retry-After": "5"},
            instance=request.url.path,
        )

    for kind in (redis.ConnectionError, redis.TimeoutError, sqlite3.OperationalError):
        app.add_exception_handler(kind, _store_down)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The tenant gets a stable type and an id to quote; the log line with that id has the exception.
        error_id = uuid.uuid4().hex[:16]
        log.exception("unhandled error on %s %s (error id %s)", request.method, request.url.path, error_id)
        return problem_response(
            500,
            f"The server failed to handle this request; quote error id {error_id} to the operator.",
            slug="internal-error",
            instance=request.url.path,
            extra={"error_id": error_id},
        )
