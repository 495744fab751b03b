"""The retry policy, with scripted answers (httpx.MockTransport): the one client test without a server,
since a real server cannot be made to answer 503 then 429 on cue."""

from __future__ import annotations

import httpx
import pytest

from sidyp_client import Client, RateLimitError


def test_429_and_503_are_retried_honouring_retry_after_with_one_idempotency_key():
    script = [
        (503, {"Retry-After": "2"}),
        (429, {}),  # no Retry-After: exponential backoff
        (201, {}),
        (429, {"Retry-After": "3600"}),  # longer than the client will wait: raised at once
    ]
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        status, headers = script[len(seen)]
        seen.append(request)
        if status >= 400:
            body = {
                "type": "/problems/queue-full",
                "title": "Too many requests",
                "status": status,
                "detail": "busy",
            }
            return httpx.Response(status, json=body, headers=headers)
        return httpx.Response(201, json={"id": "dataset_x", "n_rows": 2, "labels": ["a", "b"]})

    slept: list[float] = []
    client = Client("http://sidyp.test", "k", max_retries=3, transport=httpx.MockTransport(answer))
    client._http._sleep = slept.append

    dataset = client.datasets.create(b"text,noisy_label\nx,a\ny,b\n", filename="d.csv")
    assert dataset.id == "dataset_x" and len(seen) == 3
    assert slept[0] == 2.0  # what Retry-After said
    assert 0.5 <= slept[1] <= 1.0  # second attempt: backoff_base (0.5) * 2**1, jittered to [50 %, 100 %]
    keys = {r.headers["Idempotency-Key"] for r in seen}
    assert len(keys) == 1 and len(keys.pop()) == 36  # one uuid4 for the call, resent on each retry
    assert seen[0].headers["Authorization"] == "Bearer k"
    assert all(b"\r\n\r\ntext,noisy_label\nx,a\ny,b\n\r\n" in r.content for r in seen)  # whole file each time

    with pytest.raises(RateLimitError) as excinfo:
        client.datasets.create(b"text,noisy_label\nx,a\ny,b\n", filename="d.csv")
    assert len(seen) == 4 and len(slept) == 2  # no sleep, no retry
    assert excinfo.value.retry_after == 3600 and excinfo.value.status == 429
    assert excinfo.value.type == "/problems/queue-full" and excinfo.value.detail == "busy"
