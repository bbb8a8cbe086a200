"""Pure ASGI middleware: request body size limit (413) and one JSON log line per request."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("sampleforge.serve.http")


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413: by Content-Length, or while streaming a chunked body.
    Requests to ``upload_paths`` (routes that take audio) may send up to ``upload_max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int, upload_paths: tuple[str, ...] = (),
                 upload_max_bytes: int = 0) -> None:
        self.app, self.max_bytes = app, max_bytes
        self.upload_paths, self.upload_max_bytes = frozenset(upload_paths), upload_max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.upload_max_bytes if scope.get("path") in self.upload_paths else self.max_bytes
        too_big = {"detail": f"request body larger than {limit} bytes"}
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    await _send_json(send, 400, {"detail": "bad Content-Length header"})
                    return
                if length > limit:
                    await _send_json(send, 413, too_big)
                    return
        received = 0
        responded = False  # we answered 413 ourselves: drop whatever the app sends afterwards

        async def limited_receive() -> Message:
            nonlocal received, responded
            if responded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    await _send_json(send, 413, too_big)
                    responded = True
                    return {"type": "http.disconnect"}  # the app sees a client that went away
            return message

        async def guarded_send(message: Message) -> None:
            if not responded:
                await send(message)

        await self.app(scope, limited_receive, guarded_send)


class RequestLog:
    """Log ``{"event": "request", "method", "path", "status", "ms", "client"}`` when a response ends."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = {"code": 500}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            client = scope.get("client")
            log.info("request", extra={"event": "request", "method": scope.get("method"), "path": scope.get("path"),
                                       "status": status["code"], "ms": round((time.perf_counter() - t0) * 1000, 2),
                                       "client": client[0] if client else None})
