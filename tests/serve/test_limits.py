"""Slow and stalled clients against a live `sampleforge serve`: dropped on time, never starving /v1/health;
the logs such a flood triggers stay JSON and bounded."""

from __future__ import annotations

import io
import json
import logging
import select
import socket
import time

from sampleforge.serve.logs import BURST, configure_logging


def stalled(port: int, payload: bytes) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(payload)
    return s


def closed_by_server(s: socket.socket) -> bool:
    """True once the server closed the connection (EOF after an optional 408 response)."""
    while select.select([s], [], [], 0)[0]:
        try:
            if not s.recv(65536):
                return True
        except ConnectionResetError:
            return True
    return False


def test_stalled_clients_are_dropped_on_time_and_health_still_answers(live_server):
    server = live_server("--header-timeout", "1", "--body-timeout", "1", "--keep-alive", "1")
    port = server.port
    half_headers = [stalled(port, b"GET /v1/health HTTP/1.1\r\nHost: x\r\n") for _ in range(40)]
    half_bodies = [stalled(port, b"POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: 100\r\n\r\n{\"prompt\": ") for _ in range(40)]
    idle = [stalled(port, b"") for _ in range(40)]
    # the next request on a keep-alive connection stalls half-way too
    keep = stalled(port, b"GET /v1/health/live HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/health/live HTTP/1.1\r\n")
    t0 = time.monotonic()
    assert server.client.get("/v1/health/live").status_code == 200
    assert time.monotonic() - t0 < 2.0
    sockets = [*half_headers, *half_bodies, *idle, keep]
    deadline = time.monotonic() + 10.0
    open_ = list(sockets)
    while open_ and time.monotonic() < deadline:
        time.sleep(0.2)
        open_ = [s for s in open_ if not closed_by_server(s)]
    assert not open_, f"{len(open_)} of {len(sockets)} stalled connections still open after 10 s"
    for s in sockets:
        s.close()
    log = server.tail(400)
    assert "Traceback" not in log

    # a body that stops half-way gets 408 and the connection closes
    s = stalled(port, b"POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 50\r\n\r\n{\"prompt\"")
    s.settimeout(5)
    reply = b""
    try:
        while chunk := s.recv(4096):
            reply += chunk
    finally:
        s.close()
    assert reply.startswith(b"HTTP/1.1 408") and b"request body not received within 1 s" in reply


def test_asyncio_logs_are_json_and_bursts_are_bounded(capsys):
    configure_logging("info")
    log = logging.getLogger("asyncio")
    try:
        raise ConnectionResetError("peer went away")
    except ConnectionResetError:
        for _ in range(10 * BURST):
            log.error("socket.send() raised exception.", exc_info=True)
    lines = io.StringIO(capsys.readouterr().err).read().splitlines()
    assert 1 <= len(lines) <= BURST
    first = json.loads(lines[0])
    assert first["logger"] == "asyncio" and "ConnectionResetError" in first["exc"]
