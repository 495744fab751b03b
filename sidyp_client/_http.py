"""The one place requests are sent: auth header, retries with backoff, idempotency keys, typed errors."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from sidyp_client.errors import APIConnectionError, error_from_response, parse_retry_after

RETRY_STATUSES = frozenset({429, 503})
# Methods that change nothing, or change it the same way when repeated: safe to re-send after a timeout.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


class HTTP:
    """A thin httpx wrapper. 429 and 503 are retried, waiting what `Retry-After` says (or exponential
    backoff with jitter when it says nothing); a `Retry-After` longer than `max_retry_wait` is not waited
    out but raised, so a caller is never blocked for minutes without knowing."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff_base: float = 0.5,
        max_backoff: float = 20.0,
        max_retry_wait: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        from sidyp_client import __version__

        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.max_backoff = max_backoff
        self.max_retry_wait = max_retry_wait
        self._sleep = sleep
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": f"sidyp-client/{__version__}"},
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        idempotency_key: str | bool = False,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send, retrying what is safe to retry; a 4xx/5xx answer raises its typed SidypError.

        idempotency_key: True = a fresh uuid4, a str = that key; sent as `Idempotency-Key` and reused on
        every retry of this call, so the server answers a repeat with the first result and starts nothing.
        """
        headers = dict(kwargs.pop("headers", None) or {})
        if idempotency_key:
            headers["Idempotency-Key"] = (
                idempotency_key if isinstance(idempotency_key, str) else str(uuid.uuid4())
            )
        resend_safe = method.upper() in IDEMPOTENT_METHODS or "Idempotency-Key" in headers
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                response = self._client.request(method, path, headers=headers, **kwargs)
            except httpx.TransportError as exc:
                # A refused connection never reached the server: always safe. Anything later (a timeout, a
                # reset) may have been applied, so it is re-sent only when repeating it is harmless.
                if last or not (resend_safe or isinstance(exc, httpx.ConnectError)):
                    raise APIConnectionError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
                self._sleep(self._backoff(attempt))
                continue
            if response.status_code in RETRY_STATUSES and not last:
                wait = parse_retry_after(response.headers.get("retry-after"))
                if wait is None or wait <= self.max_retry_wait:
                    self._sleep(wait if wait is not None else self._backoff(attempt))
                    continue
            if response.status_code >= 400:
                raise error_from_response(response)
            return response
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _backoff(self, attempt: int) -> float:
        # Full jitter between half and all of the exponential delay: clients retrying together spread out.
        delay = min(self.max_backoff, self.backoff_base * 2**attempt)
        return delay * random.uniform(0.5, 1.0)

    def get_json(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=drop_none(params)).json()

    def paginate(
        self, path: str, params: dict[str, Any], cursor_of: Callable[[dict], Any]
    ) -> Iterator[dict[str, Any]]:
        """Every item of a cursor-paged list (`data`, `has_more`), fetching pages as the caller iterates.
        The next page starts `after` the server's `next_cursor` when it sends one, else `cursor_of(last)`."""
        params = drop_none(params)
        while True:
            page = self.request("GET", path, params=params).json()
            yield from page["data"]
            if not page.get("has_more") or not page["data"]:
                return
            cursor = page.get("next_cursor")
            params["after"] = cursor if cursor is not None else cursor_of(page["data"][-1])


def drop_none(params: dict[str, Any]) -> dict[str, Any]:
    """Query parameters without the unset ones; booleans as the API spells them (true / false)."""
    out = {}
    for k, v in params.items():
        if v is None:
            continue
        out[k] = ("true" if v else "false") if isinstance(v, bool) else v
    return out
