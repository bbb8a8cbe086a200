"""The HTTP server (uvicorn) with deliberate limits, so slow or stalled clients cannot starve the others.

- a request's line and headers must arrive within ``header_timeout_s`` (else: 408 and close), also for
  the next request on a keep-alive connection; its body within ``body_timeout_s`` (middleware.BodyGuard);
- an idle keep-alive connection closes after ``keep_alive_s``;
- headers are at most ``max_header_bytes``; more than ``max_connections`` open connections get 503;
- the process's file-handle limit is raised to its hard limit, and ``max_connections`` kept below it, so
  the server keeps handles for its database, its result files and /v1/health.

Behind a reverse proxy (see the README) these are a second line; the proxy's own timeouts come first.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from sampleforge.serve.config import ServeConfig

log = logging.getLogger("sampleforge.serve")

FD_RESERVE = 256  # file handles kept free for the database, result files, workers and logs
TIMEOUT_408 = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol plus a deadline for each request's line and headers."""

    header_timeout_s = 10.0  # set per server by ``serve`` (a class attribute: uvicorn builds the instances)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.cycle is not None and self.cycle.response_complete:  # no pipelined request started: wait for one
            self._arm_header_deadline()

    def _arm_header_deadline(self) -> None:
        if not self.transport.is_closing():
            self.loop.call_later(self.header_timeout_s, self._header_deadline, self.cycle)

    def _header_deadline(self, cycle_when_armed: Any) -> None:
        """No new request (headers complete) since the deadline was armed: answer 408 and close."""
        if self.cycle is not cycle_when_armed or self.transport.is_closing():
            return
        if self.conn.our_state in (h11.IDLE, h11.DONE):
            self.transport.write(TIMEOUT_408)
        self.transport.close()


def raise_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65_536)
    if soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def connection_limit(config: ServeConfig, file_limit: int) -> int:
    """``max_connections`` kept FD_RESERVE below the file-handle limit (a warning says when it is lowered)."""
    room = max(64, file_limit - FD_RESERVE)
    if config.max_connections > room:
        log.warning("connection limit lowered to fit the file-handle limit",
                    extra={"event": "limit_lowered", "max_connections": room, "file_limit": file_limit})
        return room
    return config.max_connections


def uvicorn_config(app: Any, config: ServeConfig, log_config: dict[str, Any] | None) -> uvicorn.Config:
    """The uvicorn settings of ``sampleforge serve``: the limits above on ``config.host:config.port``."""
    protocol = type("ServeProtocol", (GuardedH11Protocol,), {"header_timeout_s": config.header_timeout_s})
    return uvicorn.Config(
        app, host=config.host, port=config.port, log_config=log_config, access_log=False,
        http=protocol, loop="asyncio", lifespan="on", timeout_graceful_shutdown=5,
        limit_concurrency=connection_limit(config, raise_file_limit()), backlog=2048,
        timeout_keep_alive=max(1, round(config.keep_alive_s)),
        h11_max_incomplete_event_size=config.max_header_bytes,
    )


def serve(app: Any, config: ServeConfig, log_config: dict[str, Any] | None) -> None:
    """Run the app until SIGTERM/SIGINT."""
    uvicorn.Server(uvicorn_config(app, config, log_config)).run()
