"""A job's events as server-sent events (text/event-stream): every stored event in order, then new ones as
they are written, ending once the job has ended and its last events are out.

Each event is `id: <seq>`, `event: <type>`, `data: <the JSON event>`; a reconnecting client's
`Last-Event-ID` header resumes after that seq. The stream ends with `event: end` carrying the status.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from sidyp_core.jobs import JobLedger
from sidyp_core.store import JobStore

SSE_MEDIA_TYPE = "text/event-stream"
POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0  # a comment line now and then keeps proxies from closing an idle stream


def _frame(event: dict) -> str:
    return f"id: {event['seq']}\nevent: {event.get('type', 'message')}\ndata: {json.dumps(event)}\n\n"


async def _events(store: JobStore, job_id: str, request: Request, after: int) -> AsyncIterator[str]:
    ledger = JobLedger(store)
    last_sent = time.monotonic()
    ending, job = False, None
    while not await request.is_disconnected():
        events, more = await run_in_threadpool(store.list_events, job_id, after, 100)
        for event in events:
            after = event["seq"]
            yield _frame(event)
            last_sent = time.monotonic()
        if more:
            continue
        if ending:  # one more read after the job ended: its closing event is written just after the status
            yield f"event: end\ndata: {json.dumps({'status': job.status if job else 'deleted'})}\n\n"
            return
        job = await run_in_threadpool(ledger.get, job_id)
        ending = job is None or job.finished
        if time.monotonic() - last_sent > KEEPALIVE_SECONDS:
            yield ": keep-alive\n\n"
            last_sent = time.monotonic()
        if not ending:
            await asyncio.sleep(POLL_SECONDS)


def _resume_after(request: Request, after: int) -> int:
    last = request.headers.get("last-event-id", "")
    return max(after, int(last)) if last.isdigit() and len(last) < 10 else after


def event_stream_response(store: JobStore, job_id: str, request: Request, after: int) -> StreamingResponse:
    return StreamingResponse(
        _events(store, job_id, request, _resume_after(request, after)),
        media_type=SSE_MEDIA_TYPE,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
