"""Request body size limits enforced while the body streams in, before anything parses it.

A declared Content-Length over the limit is refused at once; a chunked body is counted as it arrives
and cut off when it passes the limit. Either way the client gets a 413 problem+json.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import PROBLEM_JSON


def _problem_413(limit: int) -> bytes:
    return json.dumps(
        {
            "type": "/problems/request-too-large",
            "title": "Content too large",
            "status": 413,
            "detail": f"request body larger than {limit} bytes",
        }
    ).encode()


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, upload_limit: int, json_limit: int, upload_paths: tuple[str, ...]):
        self.app = app
        self.upload_limit = upload_limit
        self.json_limit = json_limit
        self.upload_paths = upload_paths

    async def _refuse(self, send: Send, limit: int) -> None:
        body = _problem_413(limit)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        # Uploads get room for the multipart framing and the small form fields around the file.
        limit = self.upload_limit + 65536 if scope.get("path") in self.upload_paths else self.json_limit
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    if int(value) > limit:
                        await self._refuse(send, limit)
                        return
                except ValueError:
                    pass
        state = {"seen": 0, "exceeded": False, "started": False}

        async def limited_receive() -> Message:
            if state["exceeded"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["seen"] += len(message.get("body", b""))
                if state["seen"] > limit:
                    state["exceeded"] = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if state["exceeded"]:
                return  # the app's own answer to the cut-off body is replaced by the 413 below
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not state["exceeded"]:
                raise
        if state["exceeded"] and not state["started"]:
            await self._refuse(send, limit)
