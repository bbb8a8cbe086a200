"""Pure ASGI middleware: the bearer token (401), request body size and time limits (413, 408) and one JSON log line
per request."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("sampleforge.serve.http")


def error_body(message: str) -> dict[str, str]:
    """The body of an error that names no field, from the app or from a middleware: ``error`` is one line, as every
    error body's (a 422's names its fields), ``detail`` the same message."""
    return {"detail": message, "error": message}


async def _send_json(send: Send, status: int, body: dict[str, Any], close: bool = False,
                     headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    data = json.dumps(body).encode()
    sent = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *headers]
    await send({"type": "http.response.start", "status": status,
                "headers": sent + ([(b"connection", b"close")] if close else [])})
    await send({"type": "http.response.body", "body": data})


UNAUTHORIZED = "missing or wrong bearer token (Authorization: Bearer <token>)"


class BearerToken:
    """401 (``WWW-Authenticate: Bearer``) for a request whose path ``needs_token`` without ``Authorization: Bearer
    <token>`` (compared in constant time), before anything else of it is read: a client without the token learns
    nothing of a route's body, its fields or its limits. No token: every request passes."""

    def __init__(self, app: ASGIApp, token: str | None, needs_token: Callable[[str], bool]) -> None:
        self.app, self.token, self.needs_token = app, token, needs_token

    def _holds_token(self, scope: Scope) -> bool:
        assert self.token is not None
        value = next((v for k, v in scope.get("headers", []) if k == b"authorization"), b"")
        scheme, _, given = value.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.token.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.token is None or not self.needs_token(scope["path"]) \
                or self._holds_token(scope):
            await self.app(scope, receive, send)
            return
        await _send_json(send, 401, error_body(UNAUTHORIZED), headers=((b"www-authenticate", b"Bearer"),))


class BodyGuard:
    """Refuse request bodies over ``max_bytes`` with 413 (by Content-Length, or while streaming a chunked
    body), and bodies still incomplete ``timeout_s`` after the app first asks for them with 408."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float, upload_paths: tuple[str, ...] = (),
                 upload_max_bytes: int = 0) -> None:
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s
        # routes that take audio (vary, morph) may send up to upload_max_bytes
        self.upload_paths, self.upload_max_bytes = frozenset(upload_paths), upload_max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.upload_max_bytes if scope.get("path") in self.upload_paths else self.max_bytes
        too_big = error_body(f"request body larger than {limit} bytes")
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    await _send_json(send, 400, error_body("bad Content-Length header"))
                    return
                if length > limit:
                    await _send_json(send, 413, too_big)
                    return
        received = 0
        deadline: float | None = None
        complete = False
        started = responded = False  # responded: we answered 413/408 ourselves; drop what the app sends after

        async def refuse(status: int, body: dict[str, Any]) -> Message:
            nonlocal responded
            if not started:
                await _send_json(send, status, body, close=True)
            responded = True
            return {"type": "http.disconnect"}  # the app sees a client that went away

        async def guarded_receive() -> Message:
            nonlocal received, deadline, complete
            if responded:
                return {"type": "http.disconnect"}
            if complete:
                return await receive()
            loop = asyncio.get_running_loop()
            deadline = deadline or loop.time() + self.timeout_s
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                return await refuse(408, error_body(f"request body not received within {self.timeout_s:g} s"))
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    return await refuse(413, too_big)
                complete = not message.get("more_body", False)  # later receives wait for a disconnect
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if not responded:
                started = started or message["type"] == "http.response.start"
                await send(message)

        await self.app(scope, guarded_receive, guarded_send)


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
