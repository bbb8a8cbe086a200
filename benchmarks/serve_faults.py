"""The service under faults: stalled clients, pack readers that never read, DELETE racing downloads, a broker
outage, repeated kill -9, unwritable storage, and what durability costs. Live servers on a debug model.

    python -m benchmarks.serve_faults stall [--connections 2000]
    python -m benchmarks.serve_faults pack-rss [--clients 100]
    python -m benchmarks.serve_faults race [--jobs 10]
    python -m benchmarks.serve_faults redis
    python -m benchmarks.serve_faults kill9 [--rounds 20]
    python -m benchmarks.serve_faults readiness
    python -m benchmarks.serve_faults durability

Every server is `sampleforge serve` on loopback with a random-weight debug model, started and stopped
here. Set SERVER_PYTHONPATH to run the servers from another checkout (a before/after comparison).
Bounded: at most 5,000 connections, 500 clients, 50 rounds.
"""

from __future__ import annotations

import argparse
import atexit
import io
import os
import resource
import selectors
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from benchmarks.serve import debug_model, percentiles

TERMINAL = ("succeeded", "failed", "cancelled")
CHILD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def child_env() -> dict[str, str]:
    env = {**os.environ, **CHILD_ENV}
    if os.environ.get("SERVER_PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["SERVER_PYTHONPATH"]
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


RUNNING: list[Server] = []  # stopped at exit, also when a run is interrupted (SIGTERM, an error)


def stop_all() -> None:
    for server in RUNNING:
        server.stop()


class Server:
    """`sampleforge serve` (or another sampleforge command) in its own process group, logging to a file."""

    def __init__(self, work: Path, *args: str, command: str = "serve", port: int | None = None,
                 storage: Path | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "sampleforge.cli", command, "--model", debug_model(work),
                "--storage", str(storage or work / "storage")]
        if command == "serve":
            argv += ["--port", str(self.port)]
        self.log = work / f"{command}.log"
        self._out = open(self.log, "ab")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen([*argv, *args], stdout=self._out, stderr=subprocess.STDOUT,
                                     start_new_session=True, env=child_env())
        RUNNING.append(self)

    def wait(self, path: str = "/v1/health", timeout: float = 180.0) -> float:
        """Seconds until ``path`` answers 200."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited; see {self.log}")
            try:
                if httpx.get(self.url + path, timeout=2).status_code == 200:
                    return time.monotonic() - t0
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"server not ready after {timeout} s; see {self.log}")

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def kill9(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill9()
        self._out.close()
        if self in RUNNING:
            RUNNING.remove(self)


@contextmanager
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="sampleforge-faults-") as tmp:
        yield Path(tmp)


def run_job(client: httpx.Client, body: dict[str, Any], timeout: float = 300.0) -> dict[str, Any]:
    r = client.post("/v1/generate", json=body)
    r.raise_for_status()
    return wait_job(client, r.json()["job_id"], timeout)


def wait_job(client: httpx.Client, job_id: str, timeout: float = 300.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in TERMINAL:
            return job
        time.sleep(0.1)
    raise SystemExit(f"job {job_id} not finished after {timeout} s")


def health_until(client: httpx.Client, status: int, timeout: float = 15.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        r = client.get("/v1/health")
        if r.status_code == status or time.monotonic() > deadline:
            return r
        time.sleep(0.1)


def raise_own_file_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, need + 1000), hard))


# ---- 1. stalled connections ---------------------------------------------------------------------------------
def stall(n: int) -> None:
    """n connections that stall (a third mid-headers, a third mid-body, a third silent): /v1/health latency
    while they are held, and how long the server takes to close them."""
    raise_own_file_limit(n)
    with workdir() as work:
        server = Server(work)
        server.wait()
        log_before = server.log.stat().st_size
        payloads = [b"GET /v1/health HTTP/1.1\r\nHost: x\r\n",
                    b"POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 100\r\n\r\n{\"prompt\": ", b""]
        socks: list[socket.socket] = []
        t0 = time.monotonic()
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            s.sendall(payloads[i % 3])
            socks.append(s)
        opened_s = time.monotonic() - t0
        latencies = []  # (seconds since the first connect, ms): sampled while the stalled sockets are held
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while time.monotonic() - t0 < 8.0:
                t = time.perf_counter()
                status = client.get("/v1/health").status_code
                latencies.append((time.monotonic() - t0, (time.perf_counter() - t) * 1000))
                assert status == 200, status
                time.sleep(0.25)
        closed_at: dict[int, float] = {}
        sel = selectors.DefaultSelector()  # epoll: select() cannot watch descriptors above 1024
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
        deadline = time.monotonic() + 90
        while len(closed_at) < n and time.monotonic() < deadline:
            for key, _ in sel.select(0.5):
                s = key.fileobj
                assert isinstance(s, socket.socket)
                try:
                    data = s.recv(65536)
                except ConnectionResetError:
                    data = b""
                if not data:
                    closed_at[s.fileno()] = time.monotonic() - t0
                    sel.unregister(s)
        sel.close()
        for s in socks:
            s.close()
        rss = server.rss_mib()
        alive = httpx.get(server.url + "/v1/health", timeout=10).status_code
        server.stop()
        log_lines = server.log.read_bytes()[log_before:].count(b"\n")
    closes = sorted(closed_at.values())
    p = percentiles([ms for _, ms in latencies])
    print(f"{n} stalled connections opened in {opened_s:.1f} s")
    print(f"/v1/health while held ({len(latencies)} requests over 8 s): p50 {p['p50']:.0f} ms, max {p['max']:.0f} ms; "
          f"first at {latencies[0][0]:.1f} s took {latencies[0][1]:.0f} ms")
    if len(closes) == n:
        print(f"all {n} closed by the server; last {closes[-1]:.1f} s after the first was opened, "
              f"median {closes[len(closes) // 2]:.1f} s")
    else:
        print(f"only {len(closes)} of {n} closed by the server within 90 s")
    print(f"server afterwards: /v1/health {alive}, RSS {rss:.0f} MiB, {log_lines} log lines during the test")


# ---- 2. pack readers that never read ------------------------------------------------------------------------
def pack_rss(clients: int) -> None:
    """``clients`` GET pack.zip of a 16-clip job (2 s clips) and never read: the server's RSS before/with/after."""
    raise_own_file_limit(clients)
    with workdir() as work:
        server = Server(work, "--max-count", "16")
        server.wait()
        with httpx.Client(base_url=server.url, timeout=300) as client:
            job = run_job(client, {"prompt": "kick", "count": 16, "steps": 1, "duration": 2.0})
            assert job["state"] == "succeeded", job
            size = len(client.get(job["urls"]["pack"]).content)
        time.sleep(2)
        before = server.rss_mib()
        request = f"GET {job['urls']['pack']} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        socks = []
        for _ in range(clients):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", server.port))
            s.sendall(request)
            socks.append(s)
        peak = before
        for _ in range(20):
            time.sleep(0.5)
            peak = max(peak, server.rss_mib())
        t = time.perf_counter()
        health = httpx.get(server.url + "/v1/health", timeout=30).status_code
        health_ms = (time.perf_counter() - t) * 1000
        for s in socks:
            s.close()
        time.sleep(5)
        after = server.rss_mib()
        server.stop()
    print(f"pack of 16 clips: {size / 2**20:.1f} MiB; {clients} clients that never read")
    print(f"server RSS: before {before:.0f} MiB, peak while held {peak:.0f} MiB (+{peak - before:.0f}), "
          f"5 s after they left {after:.0f} MiB; /v1/health meanwhile {health} in {health_ms:.0f} ms")


# ---- 3. DELETE racing downloads -----------------------------------------------------------------------------
def race(jobs: int) -> None:
    """For each of ``jobs`` finished 16-clip jobs: 8 pack and 8 clip downloads while the job is deleted."""
    with workdir() as work:
        server = Server(work, "--max-count", "16")
        server.wait()
        statuses: Counter[str] = Counter()
        with httpx.Client(base_url=server.url, timeout=120,
                          limits=httpx.Limits(max_connections=32)) as client:

            def get(url: str) -> str:
                try:
                    r = client.get(url)
                except httpx.HTTPError as exc:
                    return f"broken ({type(exc).__name__})"
                if r.status_code == 200 and url.endswith(".zip"):
                    try:
                        with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
                            if zf.testzip() is not None or len(zf.namelist()) != 17:
                                return "200 incomplete"
                    except zipfile.BadZipFile:
                        return "200 corrupt"
                return str(r.status_code)

            for i in range(jobs):
                job = run_job(client, {"prompt": "kick", "count": 16, "steps": 1, "duration": 0.5})
                urls = [job["urls"]["pack"]] * 8 + [r["url"] for r in job["results"][:8]]
                with ThreadPoolExecutor(17) as pool:
                    futures = [pool.submit(get, u) for u in urls]
                    time.sleep(0.01 * (i % 6))  # the DELETE lands before, during or after the downloads
                    futures.append(pool.submit(lambda j=job: str(client.delete(f"/v1/jobs/{j['job_id']}").status_code)))
                    statuses.update(f.result() for f in futures)
        server.stop()
    bad = sum(v for k, v in statuses.items() if k.startswith("5") or not k[0].isdigit() or "200 " in k)
    print(f"{jobs} jobs x (8 pack + 8 clip downloads + 1 DELETE): {dict(sorted(statuses.items()))}; bad: {bad}")


# ---- 4. a broker outage ---------------------------------------------------------------------------------------
def redis_outage() -> None:
    """Redis goes down, a job is accepted, Redis comes back: seconds until the job has run (no restart)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (make apt-test)")
    with workdir() as work:
        port = free_port()

        def start_redis() -> subprocess.Popen[bytes]:
            proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                     "--appendonly", "no", "--dir", str(work)], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, start_new_session=True)
            time.sleep(0.5)
            return proc

        broker = f"redis://127.0.0.1:{port}/0"
        redis = start_redis()
        atexit.register(lambda: redis.poll() is None and redis.kill())
        server = Server(work, "--broker", broker, "--lease-seconds", "10")
        worker = Server(work, "--broker", broker, "--lease-seconds", "10", command="worker")
        server.wait()
        with httpx.Client(base_url=server.url, timeout=60) as client:
            first = run_job(client, {"prompt": "kick", "steps": 1, "duration": 0.5})
            redis.kill()
            redis.wait()
            t = time.perf_counter()
            r = client.post("/v1/generate", json={"prompt": "snare", "steps": 1, "duration": 0.5})
            post_ms = (time.perf_counter() - t) * 1000
            job_id = r.json()["job_id"]
            time.sleep(10)
            during = client.get(f"/v1/jobs/{job_id}").json()["state"]
            redis = start_redis()
            back = time.monotonic()
            job = wait_job(client, job_id, timeout=120)
            ran_after = time.monotonic() - back
        for proc in (worker, server):
            proc.stop()
        redis.kill()
        redis.wait()
    print(f"before the outage: a job {first['state']}; during it: POST {r.status_code} in {post_ms:.0f} ms, "
          f"job {during} after 10 s")
    print(f"Redis back: the job {job['state']} {ran_after:.1f} s later, server and worker not restarted")


# ---- 5. kill -9 in a row --------------------------------------------------------------------------------------
def kill9(rounds: int) -> None:
    """``rounds`` times: submit jobs, kill -9 the server mid-job, restart it. Then: every job accounted for."""
    with workdir() as work:
        storage = work / "storage"
        port = free_port()
        ids: list[str] = []
        start_times = []
        killed_running = 0
        for i in range(rounds):
            server = Server(work, "--max-steps", "1000", "--max-attempts", str(rounds + 5), port=port, storage=storage)
            start_times.append(server.wait("/v1/health/live"))
            with httpx.Client(base_url=server.url, timeout=30) as client:
                for k in range(2):
                    r = client.post("/v1/generate", json={"prompt": "kick", "count": 2, "steps": 40 + 10 * k,
                                                          "duration": 1.0, "seed": 1000 * i + k})
                    ids.append(r.json()["job_id"])
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    states = [client.get(f"/v1/jobs/{j}").json()["state"] for j in ids[-2:]]
                    if "running" in states:
                        killed_running += 1
                        break
                    time.sleep(0.05)
                time.sleep(0.05 * (i % 5))
            server.kill9()
        server = Server(work, "--max-steps", "1000", port=port, storage=storage)
        server.wait()
        with httpx.Client(base_url=server.url, timeout=30) as client:
            final = [wait_job(client, j, timeout=600) for j in ids]
            broken = 0
            for job in final:
                for res in job["results"]:
                    r = client.get(res["url"])
                    broken += r.status_code != 200 or len(r.content) < 44
        server.stop()
        with sqlite3.connect(storage / "jobs.sqlite3") as db:
            rows = db.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM jobs").fetchone()
        leftovers = [p for p in storage.rglob("*.tmp")]
    states = Counter(j["state"] for j in final)
    attempts = Counter(j["attempts"] for j in final)
    print(f"{rounds} kill -9 in a row ({killed_running} while a job was running); {len(ids)} jobs accepted")
    print(f"after restart: {dict(states)}; attempts per job {dict(sorted(attempts.items()))}; rows {rows[0]} "
          f"(distinct {rows[1]}); unreadable clips {broken}; temp files left {len(leftovers)}")
    print(f"server start to live: median {sorted(start_times)[len(start_times) // 2]:.1f} s")


# ---- 6. readiness ---------------------------------------------------------------------------------------------
def readiness() -> None:
    """/v1/health and POST while results/ is not writable, then while another writer holds the database."""
    with workdir() as work:
        server = Server(work)
        server.wait()
        results = work / "storage" / "results"
        with httpx.Client(base_url=server.url, timeout=60) as client:
            ok = client.get("/v1/health").status_code
            results.rename(results.with_name("moved"))
            results.write_text("not a folder")
            h = health_until(client, 503)
            post = client.post("/v1/generate", json={"prompt": "kick", "steps": 1, "duration": 0.5})
            job = wait_job(client, post.json()["job_id"], timeout=120)
            results.unlink()
            results.with_name("moved").rename(results)
            again = health_until(client, 200).status_code
            locker = sqlite3.connect(work / "storage" / "jobs.sqlite3", timeout=1)
            locker.execute("BEGIN EXCLUSIVE")
            t = time.perf_counter()
            h_db = health_until(client, 503)
            h_db_ms = (time.perf_counter() - t) * 1000
            locker.rollback()
            locker.close()
        server.stop()
    print(f"healthy: {ok}; results/ not writable: health {h.status_code} {h.json()['problems']}")
    print(f"  a job accepted then: {job['state']}: {job['error']!r}")
    print(f"results/ back: health {again}; database locked by another writer: health {h_db.status_code} "
          f"after {h_db_ms:.0f} ms {h_db.json()['problems']}")


# ---- 7. durability cost -----------------------------------------------------------------------------------------
def durability(n: int = 200) -> None:
    """Cost of fsync + synchronous=FULL: job-store transactions and clip writes, durable vs fast."""
    import torch

    from sampleforge.params import GenerationParams
    from sampleforge.serve.job import Job
    from sampleforge.serve.jobstore import JobStore
    from sampleforge.serve.results import ResultFiles, new_job_id

    wav = torch.randn(88200).clamp(-1, 1) * 0.5
    params = GenerationParams(prompt="kick", sampler="ddim", duration=2.0)
    for durable in (False, True):
        with workdir() as work:
            store = JobStore(work / "jobs.sqlite3", durable=durable)
            files = ResultFiles(work, durable=durable)
            t = time.perf_counter()
            for _ in range(n):
                job = Job(id=new_job_id(), state="queued", model="m", prompt="kick", params=params, ttl_s=60,
                          created_at=time.time())
                store.submit(job)
                store.claim("w", 1, 60, leader=job.id)
                store.heartbeat([job.id], "w", progress=0.5)
                store.finish(job.id, "w", [])
            tx_ms = (time.perf_counter() - t) * 1000 / n
            t = time.perf_counter()
            for _ in range(n // 4):
                job_id = new_job_id()
                files.write_clip(job_id, 0, wav, 44100, "wav", {"prompt": "kick"})
                files.write_manifest(job_id, {"id": job_id})
            clip_ms = (time.perf_counter() - t) * 1000 / (n // 4)
        name = "full (default)" if durable else "fast"
        print(f"{name:<15} job store: {tx_ms:.2f} ms per job (4 transactions); one 2-s clip + job.json: "
              f"{clip_ms:.2f} ms")


COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {
    "stall": lambda a: stall(a.connections),
    "pack-rss": lambda a: pack_rss(a.clients),
    "race": lambda a: race(a.jobs),
    "redis": lambda a: redis_outage(),
    "kill9": lambda a: kill9(a.rounds),
    "readiness": lambda a: readiness(),
    "durability": lambda a: durability(),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=sorted(COMMANDS))
    ap.add_argument("--connections", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args(argv)
    if not (1 <= args.connections <= 5000 and 1 <= args.clients <= 500 and 1 <= args.jobs <= 100
            and 1 <= args.rounds <= 50):
        ap.error("bounds: --connections 1..5000, --clients 1..500, --jobs 1..100, --rounds 1..50")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up below on `timeout` / kill
    try:
        COMMANDS[args.what](args)
    finally:
        stop_all()
    return 0


if __name__ == "__main__":
    threading.stack_size(512 * 1024)
    sys.exit(main())
