"""Service throughput and latency: N generation requests against a live `sampleforge serve` on loopback.

    python -m benchmarks.serve --url http://127.0.0.1:8000 [-n 50] [--concurrency 8] [--steps 8] [--count 1]
    python -m benchmarks.serve --spawn debug [-n 100]        # start a server on a debug model, measure, stop it

Each client thread submits a job (``POST /v1/generate``), then polls ``GET /v1/jobs/{id}`` until it finishes.
Printed: throughput (jobs/s and clips/s over the whole run), and p50/p90/p99/max of the submit latency
(the POST round trip), the queue wait (accepted -> started), and the end-to-end latency (POST -> results
ready). Bounded on purpose: loopback servers only, at most 1000 requests and 64 client threads.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx

from sampleforge.serve import config

MAX_REQUESTS = 1000
MAX_CONCURRENCY = 64


def is_loopback(url: str) -> bool:
    """Whether the server at ``url`` is on this machine (``serve.config.is_loopback`` on its host)."""
    return config.is_loopback(urlparse(url).hostname or "")


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p90/p99/max (nearest rank) of ``values`` in milliseconds."""
    if not values:
        return {}
    s = sorted(values)

    def rank(p: float) -> float:
        return s[min(len(s) - 1, max(0, math.ceil(p / 100 * len(s)) - 1))]

    return {"p50": rank(50), "p90": rank(90), "p99": rank(99), "max": s[-1]}


def _ts(text: str | None) -> float | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else None


def one_request(client: httpx.Client, body: dict[str, Any], timeout: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    r = client.post("/v1/generate", json=body)
    submit = time.perf_counter() - t0
    if r.status_code != 202:
        return {"ok": False, "status": r.status_code, "submit": submit}
    job_id = r.json()["job_id"]
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            break
        if time.perf_counter() - t0 > timeout:
            return {"ok": False, "status": "timeout", "submit": submit}
        time.sleep(0.02)
    total = time.perf_counter() - t0
    created, started = _ts(job["created_at"]), _ts(job["started_at"])
    wait = (started - created) if created and started else None
    return {"ok": job["state"] == "succeeded", "status": job["state"], "submit": submit, "total": total,
            "wait": wait, "clips": len(job["results"]), "batch": job["started_at"]}


def run(url: str, n: int, concurrency: int, body: dict[str, Any], token: str | None, timeout: float) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=url, headers=headers, timeout=60.0,
                      limits=httpx.Limits(max_connections=concurrency + 2)) as client:
        client.get("/v1/health/live").raise_for_status()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            results = list(pool.map(lambda i: one_request(client, {**body, "seed": i}, timeout), range(n)))
        wall = time.perf_counter() - t0
    ok = [r for r in results if r["ok"]]
    return {
        "requests": n, "succeeded": len(ok), "failed": n - len(ok), "wall_s": wall,
        "jobs_per_s": len(ok) / wall, "clips_per_s": sum(r["clips"] for r in ok) / wall,
        "batches": len({r["batch"] for r in ok}),
        "submit_ms": percentiles([r["submit"] * 1000 for r in results]),
        "wait_ms": percentiles([r["wait"] * 1000 for r in ok if r["wait"] is not None]),
        "total_ms": percentiles([r["total"] * 1000 for r in ok]),
        "errors": sorted({str(r["status"]) for r in results if not r["ok"]}),
    }


def report(stats: dict[str, Any], body: dict[str, Any], concurrency: int) -> None:
    print(f"{stats['requests']} requests, {concurrency} client threads, body {body}")
    print(f"succeeded {stats['succeeded']}, failed {stats['failed']} {stats['errors'] or ''}".rstrip())
    print(f"wall {stats['wall_s']:.2f} s: {stats['jobs_per_s']:.2f} jobs/s, {stats['clips_per_s']:.2f} clips/s, "
          f"{stats['batches']} generate() batches")
    print(f"{'latency (ms)':<22}{'p50':>10}{'p90':>10}{'p99':>10}{'max':>10}")
    for name, key in (("submit (POST)", "submit_ms"), ("queue wait", "wait_ms"), ("end to end", "total_ms")):
        p = stats[key]
        if p:
            print(f"{name:<22}" + "".join(f"{p[k]:>10.1f}" for k in ("p50", "p90", "p99", "max")))


def debug_model(workdir: Path) -> str:
    """A random-weight debug model folder under ``workdir`` (made once)."""
    from sampleforge.debug_model import make_debug_bundle

    folder = workdir / "debug-model"
    return str(folder if (folder / "config.json").exists() else make_debug_bundle(folder))


def spawn_server(model: str, workdir: Path, extra: tuple[str, ...] = (), storage: Path | None = None,
                 port: int | None = None, ready: str = "/v1/health") -> tuple[subprocess.Popen[bytes], str]:
    """Start `sampleforge serve` on a free loopback port (``model`` "debug": a random-weight debug model)."""
    if model == "debug":
        model = debug_model(workdir)
    if port is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log = open(workdir / "server.log", "ab")  # noqa: SIM115 (lives as long as the server)
    proc = subprocess.Popen([sys.executable, "-m", "sampleforge.cli", "serve", "--model", model, "--port", str(port),
                             "--storage", str(storage or workdir / "storage"), "--max-queue", str(MAX_REQUESTS),
                             *extra],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + ready, timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGTERM)
    raise SystemExit(f"the server did not start; see {workdir / 'server.log'}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default=None, help="a running server (loopback only)")
    ap.add_argument("--spawn", metavar="MODEL", default=None, help="start a server on MODEL ('debug': a debug model)")
    ap.add_argument("-n", type=int, default=50, help=f"requests (at most {MAX_REQUESTS})")
    ap.add_argument("--concurrency", type=int, default=8, help=f"client threads (at most {MAX_CONCURRENCY})")
    ap.add_argument("--prompt", default="punchy kick")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--sampler", default=None)
    ap.add_argument("--duration", type=float, default=None)
    ap.add_argument("--token", default=os.environ.get("SAMPLEFORGE_TOKEN"))
    ap.add_argument("--timeout", type=float, default=600.0, help="per request, seconds")
    args = ap.parse_args(argv)
    if not 1 <= args.n <= MAX_REQUESTS or not 1 <= args.concurrency <= MAX_CONCURRENCY:
        ap.error(f"-n must be 1..{MAX_REQUESTS} and --concurrency 1..{MAX_CONCURRENCY}")
    if (args.url is None) == (args.spawn is None):
        ap.error("give exactly one of --url and --spawn")
    body: dict[str, Any] = {"prompt": args.prompt, "steps": args.steps, "count": args.count}
    if args.sampler:
        body["sampler"] = args.sampler
    if args.duration:
        body["duration"] = args.duration
    if args.url is not None:
        if not is_loopback(args.url):
            ap.error(f"{args.url}: only loopback servers (127.0.0.0/8, ::1, localhost) are benchmarked")
        report(run(args.url, args.n, args.concurrency, body, args.token, args.timeout), body, args.concurrency)
        return 0
    with tempfile.TemporaryDirectory(prefix="sampleforge-bench-") as tmp:
        proc, url = spawn_server(args.spawn, Path(tmp))
        try:
            report(run(url, args.n, args.concurrency, body, args.token, args.timeout), body, args.concurrency)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
