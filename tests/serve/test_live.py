"""End to end over real HTTP: `sampleforge serve` in a child process on loopback, the real debug model."""

from __future__ import annotations

import io
import json
import sqlite3
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor

import pytest
import soundfile as sf


def read_events(client, url: str) -> list[tuple[str, dict]]:
    """The (event, data) pairs of a server-sent event stream, read until the server closes it."""
    events, name = [], None
    with client.stream("GET", url, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
    return events


def wait_running(client, job_id: str, min_progress: float, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] == "running" and job["progress"] >= min_progress:
            return job
        assert job["state"] in ("queued", "running"), job
        time.sleep(0.02)
    pytest.fail(f"job {job_id} never reached progress {min_progress}")


def test_round_trip_over_http_with_progress_events(live_server, wait_job, generator):
    server = live_server()
    c = server.client
    job = c.post(
        "/v1/generate", json={"prompt": "punchy kick", "count": 4, "steps": 150, "seed": 3, "duration": 2.0}
    ).json()
    events = read_events(c, job["urls"]["events"])
    names = [e for e, _ in events]
    assert names[-1] == "done" and names.count("done") == 1 and "progress" in names
    progress = [d["progress"] for _, d in events]
    assert progress == sorted(progress) and any(0 < p < 1 for p in progress), (
        progress
    )  # real progress, in order
    final = events[-1][1]
    assert final["state"] == "succeeded" and [r["seed"] for r in final["results"]] == [3, 4, 5, 6]

    clip = c.get(final["results"][2]["url"])
    assert clip.status_code == 200 and clip.content[:4] == b"RIFF"
    wav, sr = sf.read(io.BytesIO(clip.content))
    assert (sr, len(wav)) == (generator.sample_rate, 2 * generator.sample_rate)
    assert 'filename="punchy_kick_' in clip.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(c.get(final["urls"]["pack"]).content)) as zf:
        assert len([n for n in zf.namelist() if n.endswith(".wav")]) == 4

    assert c.delete(final["urls"]["self"]).json()["deleted"] is True
    assert c.get(final["urls"]["self"]).status_code == 404
    assert c.get(final["results"][0]["url"]).status_code == 404

    log_lines = [line for line in server.log.read_text().splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in log_lines]  # structured logs: every line is JSON
    assert any(
        r.get("event") == "request" and r.get("path") == "/v1/generate" and r.get("status") == 202
        for r in records
    )
    assert any(r.get("event") == "job_succeeded" for r in records)


def test_kill_9_mid_job_loses_no_job(live_server, wait_job, tmp_path):
    storage = tmp_path / "storage"
    server = live_server("--max-steps", "1000", storage=storage)
    c = server.client
    done = wait_job(
        c, c.post("/v1/generate", json={"prompt": "snare", "steps": 2, "duration": 0.5}).json()["job_id"]
    )
    done_audio = c.get(done["results"][0]["url"]).content
    long = c.post(
        "/v1/generate", json={"prompt": "kick", "count": 4, "steps": 700, "duration": 1.0, "seed": 9}
    ).json()
    waiting = [
        c.post("/v1/generate", json={"prompt": p, "steps": 3, "duration": 0.5}).json()
        for p in ("clap", "tom", "crash")
    ]
    wait_running(c, long["job_id"], min_progress=0.05)
    server.kill9()

    with sqlite3.connect(storage / "jobs.sqlite3") as db:  # what the crash left behind
        states = dict(db.execute("SELECT id, state FROM jobs").fetchall())
    assert states[long["job_id"]] == "running"
    assert all(states[j["job_id"]] == "queued" for j in waiting)

    restarted = live_server("--max-steps", "1000", storage=storage)
    c2 = restarted.client
    again = wait_job(c2, long["job_id"], timeout=90)
    assert again["state"] == "succeeded" and again["attempts"] == 2 and again["seed"] == 9
    for j in waiting:
        assert wait_job(c2, j["job_id"])["state"] == "succeeded"
    assert c2.get(done["results"][0]["url"]).content == done_audio  # finished results stay downloadable

    # a clean stop (SIGTERM) hands a running job back to the queue without spending an attempt
    last = c2.post("/v1/generate", json={"prompt": "kick", "count": 4, "steps": 700, "duration": 1.0}).json()
    wait_running(c2, last["job_id"], min_progress=0.01)
    restarted.stop()
    assert restarted.popen.returncode is not None
    with sqlite3.connect(storage / "jobs.sqlite3") as db:
        state, attempts = db.execute(
            "SELECT state, attempts FROM jobs WHERE id = ?", (last["job_id"],)
        ).fetchone()
    assert (state, attempts) == ("queued", 0), restarted.tail()


def test_a_hundred_concurrent_submits_all_finish(live_server, wait_job):
    server = live_server("--max-queue", "200")
    c = server.client
    body = {"prompt": "kick", "steps": 2, "duration": 0.5}
    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(lambda i: c.post("/v1/generate", json={**body, "seed": i}), range(100)))
    assert [r.status_code for r in responses] == [202] * 100
    ids = [r.json()["job_id"] for r in responses]
    assert len(set(ids)) == 100
    jobs = [wait_job(c, job_id, timeout=120) for job_id in ids]
    assert all(j["state"] == "succeeded" for j in jobs)
    assert [j["results"][0]["seed"] for j in jobs] == list(range(100))
    batches = {j["started_at"] for j in jobs}
    assert len(batches) <= 50, f"{len(batches)} batches for 100 compatible jobs: batching is not working"
    health = c.get("/v1/health").json()
    assert health["queue"]["queued"] == health["queue"]["running"] == 0
