"""`Client`: one connection pool, three resource groups (datasets, jobs, models)."""

from __future__ import annotations

import os

import httpx

from sidyp_client._http import HTTP
from sidyp_client.datasets import Datasets
from sidyp_client.jobs import Jobs
from sidyp_client.models import Models

DEFAULT_URL = "http://127.0.0.1:8000"


class Client:
    """base_url and api_key default to the SIDYP_URL and SIDYP_API_KEY environment variables.

    timeout: seconds per request (connect, read, write each). max_retries: how often a 429 / 503 answer
    or a failed connection is retried (waiting `Retry-After` when the server sends it). `transport` is
    handed to httpx (a proxy mount, a test transport).
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        max_retries: int = 3,
        transport: httpx.BaseTransport | None = None,
    ):
        base_url = base_url or os.environ.get("SIDYP_URL") or DEFAULT_URL
        api_key = api_key or os.environ.get("SIDYP_API_KEY")
        if not api_key:
            raise ValueError("no API key: pass api_key= or set SIDYP_API_KEY")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.base_url = base_url.rstrip("/")
        self._http = HTTP(
            self.base_url, api_key, timeout=timeout, max_retries=max_retries, transport=transport
        )
        self.datasets = Datasets(self._http)
        self.jobs = Jobs(self._http)
        self.models = Models(self._http)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.base_url!r})"  # never the key
