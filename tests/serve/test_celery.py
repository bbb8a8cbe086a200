"""Scale-out: `serve --broker redis://` with real `sampleforge worker` processes on a private redis-server:
generation and workflow jobs (vary with an upload, kit pad), and a worker killed mid-job."""

from __future__ import annotations

import base64
import io
import time

import numpy as np
import pytest
import soundfile as sf

pytestmark = pytest.mark.redis

# short leases so a killed worker is noticed in seconds (the defaults suit production: 60 s)
SHARED = ["--lease-seconds", "3", "--max-attempts", "3"]


def wait_ready(client, proc, timeout: float = 90.0) -> dict:
    """Wait until /v1/health is 200: a worker process has registered."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get("/v1/health")
        if r.status_code == 200:
            return r.json()
        if proc.popen.poll() is not None:
            pytest.fail(f"worker exited with {proc.popen.returncode}:\n{proc.tail()}")
        time.sleep(0.2)
    pytest.fail(f"no worker became ready:\n{proc.tail()}")


def test_worker_process_runs_jobs_and_a_killed_worker_loses_nothing(
    redis_url, live_server, spawn, debug_model, tmp_path, wait_job
):
    storage = tmp_path / "storage"
    server = live_server("--broker", redis_url, "--max-steps", "1000", *SHARED, storage=storage)
    c = server.client
    assert c.get("/v1/health").status_code == 503  # no worker yet: alive but not ready
    worker_args = [
        "worker",
        "--broker",
        redis_url,
        "--storage",
        str(storage),
        "--model",
        str(debug_model),
        *SHARED,
    ]
    first = spawn("worker1", *worker_args)
    health = wait_ready(c, first)
    assert health["mode"] == "celery" and health["workers"]["alive"] == 1

    quick = c.post(
        "/v1/generate", json={"prompt": "kick", "count": 2, "steps": 2, "duration": 0.5, "seed": 1}
    ).json()
    done = wait_job(c, quick["job_id"], timeout=60)
    assert done["state"] == "succeeded" and c.get(done["results"][1]["url"]).content[:4] == b"RIFF"

    # workflow jobs (their uploads in the shared storage) run on the worker process too
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    sf.write(buf, (rng.standard_normal(22050) * np.exp(-np.arange(22050) / 2000) * 0.5).astype(np.float32),
             44100, format="WAV", subtype="FLOAT")
    vary = c.post("/v1/vary", json={"audio": base64.b64encode(buf.getvalue()).decode(), "prompt": "snare",
                                    "strength": 0.5, "count": 2, "steps": 2, "seed": 3, "format": "wav16"})
    pad = c.post("/v1/kit/pad", json={"piece": "kick", "seed": 1, "steps": 2})
    assert vary.status_code == 202 and pad.status_code == 202, (vary.text, pad.text)
    for queued, clips in ((vary.json(), 2), (pad.json(), 1)):
        job = wait_job(c, queued["job_id"], timeout=60)
        assert job["state"] == "succeeded" and len(job["results"]) == clips, (job, first.tail())
        assert c.get(job["results"][0]["url"]).content[:4] == b"RIFF"
    assert sf.info(io.BytesIO(c.get(wait_job(c, vary.json()["job_id"])["results"][1]["url"]).content)).subtype == "PCM_16"

    long = c.post(
        "/v1/generate", json={"prompt": "snare", "count": 4, "steps": 700, "duration": 1.0, "seed": 5}
    ).json()
    deadline = time.monotonic() + 60
    while True:
        job = c.get(f"/v1/jobs/{long['job_id']}").json()
        if job["state"] == "running" and job["progress"] >= 0.05:
            break
        assert time.monotonic() < deadline, f"the job never ran:\n{first.tail()}"
        time.sleep(0.02)
    first.kill9()  # mid-job: its message stays unacknowledged, its lease stops being renewed

    second = spawn("worker2", *worker_args)
    final = wait_job(c, long["job_id"], timeout=120)
    assert final["state"] == "succeeded", (final, second.tail())
    assert final["attempts"] == 2 and [r["seed"] for r in final["results"]] == [5, 6, 7, 8]
    assert c.get(final["results"][3]["url"]).status_code == 200
    assert c.get(done["results"][0]["url"]).status_code == 200  # earlier results untouched
