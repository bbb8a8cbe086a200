"""Service test fixtures: the real Generator on the debug model, in-process apps, live server processes, Redis."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from sampleforge.serve.app import create_app
from sampleforge.serve.config import ServeConfig
from sampleforge.serve.service import Service

# one torch thread in every process a test starts (the machine is shared)
CHILD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="session")
def generator(debug_model: Path) -> Any:
    from sampleforge.pipeline import Generator

    return Generator.from_pretrained(debug_model, device="cpu")


@pytest.fixture
def make_service(tmp_path: Path, generator: Any) -> Callable[..., Service]:
    """``make_service(**config)`` -> a Service (not started) on a fresh storage dir with the debug model."""

    def make(**overrides: Any) -> Service:
        overrides.setdefault("storage", tmp_path / "storage")
        overrides.setdefault("model", str(generator.name))
        return Service(ServeConfig(**overrides), generator)

    return make


@pytest.fixture
def make_client(make_service: Callable[..., Service]) -> Iterator[Callable[..., TestClient]]:
    """``make_client(start=True, **config)`` -> a TestClient; start=False leaves the workers off (jobs stay queued)."""
    clients: list[TestClient] = []

    def make(start: bool = True, **overrides: Any) -> TestClient:
        service = make_service(**overrides)
        client = TestClient(create_app(service, manage_service=start))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def port() -> str:
    """A free port, for a `serve` command line expected to stop before it listens (serve checks it can listen
    before anything else: a fixed low port would need root)."""
    return str(free_port())


class Proc:
    """A child process (server or worker) in its own session, logging to a file."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.args, self.log = args, log
        self._out = open(log, "ab")  # noqa: SIM115 (closed in stop)
        self.popen = subprocess.Popen(
            args,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **CHILD_ENV},
        )

    def kill9(self) -> None:
        """SIGKILL the whole process group: no clean-up code runs (a crash, an OOM kill, a pulled plug)."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)
        self._out.close()

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)
        self._out.close()

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


class LiveServer(Proc):
    """``sampleforge serve`` on a free loopback port, with an httpx client bound to it."""

    def __init__(self, model: Path, storage: Path, log: Path, extra: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            [
                sys.executable,
                "-m",
                "sampleforge.cli",
                "serve",
                "--model",
                str(model),
                "--storage",
                str(storage),
                "--port",
                str(self.port),
                *extra,
            ],
            log,
        )
        self.client = httpx.Client(base_url=self.url, timeout=30.0)

    def wait_ready(self, timeout: float = 60.0, path: str = "/v1/health/live") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                pytest.fail(f"server exited with {self.popen.returncode}:\n{self.tail()}")
            try:
                if self.client.get(path).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        pytest.fail(f"server not ready after {timeout} s:\n{self.tail()}")


@pytest.fixture
def live_server(tmp_path: Path, debug_model: Path) -> Iterator[Callable[..., LiveServer]]:
    """``live_server(*extra_args, storage=...)`` -> a started LiveServer; all are stopped at the end."""
    servers: list[LiveServer] = []

    def start(*extra: str, storage: Path | None = None, ready_path: str = "/v1/health/live") -> LiveServer:
        server = LiveServer(
            debug_model, storage or tmp_path / "storage", tmp_path / f"server{len(servers)}.log", list(extra)
        )
        servers.append(server)
        server.wait_ready(path=ready_path)
        return server

    yield start
    for s in servers:
        s.client.close()
        s.stop()


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A private redis-server on a free loopback port (no persistence)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (run `make apt-test`)")
    import redis

    port = free_port()
    proc = Proc(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        tmp_path / "redis.log",
    )
    client = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.popen.poll() is not None:
                pytest.fail(f"redis-server did not start:\n{proc.tail()}")
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    client.close()
    proc.stop()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    """``spawn(name, *args)`` -> a child process running ``sampleforge <args>`` (stopped at the end)."""
    procs: list[Proc] = []

    def start(name: str, *args: str) -> Proc:
        proc = Proc([sys.executable, "-m", "sampleforge.cli", *args], tmp_path / f"{name}.log")
        procs.append(proc)
        return proc

    yield start
    for p in procs:
        p.stop()
