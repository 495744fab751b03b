"""Typed exceptions for the service's problem+json answers (RFC 9457).

Every error the API returns carries `type`, `title`, `status`, `detail` and, for uploads and request bodies,
`errors`: a list of `{row, column, message}` (uploads) or `{field, message}` (bodies). The exception keeps
them as attributes, so a caller can branch on the class and show the row errors.
"""

from __future__ import annotations

from typing import Any

import httpx


class SidypError(Exception):
    """Base of every error the client raises. `status` is None when no HTTP answer came back."""

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        type: str | None = None,
        title: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        body: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.type = type
        self.title = title
        self.errors = errors or []
        self.body = body or {}
        self.retry_after = retry_after

    def __str__(self) -> str:
        head = f"{self.status} {self.title}: {self.detail}" if self.status else self.detail
        return head if not self.errors else f"{head} ({len(self.errors)} errors)"


class BadRequestError(SidypError):
    """400: the body could not be parsed."""


class AuthenticationError(SidypError):
    """401: no key, or a key the server does not know."""


class NotFoundError(SidypError):
    """404: no such dataset / job / model for this key (another tenant's ids answer the same)."""


class ConflictError(SidypError):
    """409: the resource is not in a state that allows this (e.g. the job has not succeeded yet)."""


class GoneError(SidypError):
    """410: the record exists but its files are no longer on the server."""


class PayloadTooLargeError(SidypError):
    """413: upload or request over the server's limit."""


class ValidationError(SidypError):
    """422: the input was read and refused; `.errors` lists what and where (row, column or field)."""


class RateLimitError(SidypError):
    """429: the server asks to come back later (`.retry_after` seconds); raised once retries are spent."""


class ServiceUnavailableError(SidypError):
    """503: store or queue briefly unavailable; raised once retries are spent."""


class APIConnectionError(SidypError):
    """No HTTP answer: connection refused, reset, or timed out (after the client's own retries)."""


_BY_STATUS: dict[int, type[SidypError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    404: NotFoundError,
    409: ConflictError,
    410: GoneError,
    413: PayloadTooLargeError,
    422: ValidationError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    import datetime as dt

    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def error_from_response(response: httpx.Response) -> SidypError:
    """The typed exception for a 4xx/5xx answer, problem+json or not (a proxy's HTML page, say)."""
    status = response.status_code
    cls = _BY_STATUS.get(status, SidypError)
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        text = response.text.strip()[:300] or response.reason_phrase
        return cls(text, status=status, title=response.reason_phrase, retry_after=retry_after)
    errors = body.get("errors")
    return cls(
        str(body.get("detail") or body.get("title") or response.reason_phrase),
        status=status,
        type=body.get("type"),
        title=body.get("title") or response.reason_phrase,
        errors=errors if isinstance(errors, list) else None,
        body=body,
        retry_after=retry_after,
    )


def format_problem(exc: SidypError) -> str:
    """Several readable lines for a terminal: the problem, then one line per row/field error."""
    lines = [f"error: {exc}"]
    if exc.type:
        lines.append(f"  type: {exc.type}")
    for err in exc.errors[:20]:
        where = []
        if err.get("row") is not None:
            where.append(f"row {err['row']}")
        if err.get("column") is not None:
            where.append(f"column {err['column']!r}")
        if err.get("field"):
            where.append(str(err["field"]))
        lines.append(f"  - {', '.join(where) or 'file'}: {err.get('message', '')}")
    if len(exc.errors) > 20:
        lines.append(f"  ... and {len(exc.errors) - 20} more")
    return "\n".join(lines)
