"""TTL clean-up: finished jobs past their TTL go (row and audio); running, queued and young jobs stay."""

from __future__ import annotations

import os
import time

from sampleforge.serve.cleanup import sweep
from sampleforge.serve.results import new_job_id


def test_janitor_deletes_only_expired_finished_jobs(make_client, wait_job):
    ttl_s = 1.5
    client = make_client(ttl_hours=ttl_s / 3600, cleanup_interval_s=0.2, max_steps=1000)
    service = client.app.state.service
    old = wait_job(
        client,
        client.post("/v1/generate", json={"prompt": "kick", "steps": 2, "duration": 0.5}).json()["job_id"],
    )
    assert service.files.job_dir(old["job_id"]).exists()
    long = client.post(
        "/v1/generate", json={"prompt": "snare", "count": 8, "steps": 1000, "duration": 2.0}
    ).json()  # 8 full-length clips x 1000 steps: several times the TTL wait below even on an idle machine
    deadline = time.monotonic() + 30
    while client.get(long["urls"]["self"]).json()["state"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(
        ttl_s + 0.6
    )  # the old job is now past its TTL; the long one has been running longer than the TTL
    assert client.get(old["urls"]["self"]).status_code == 404
    assert not service.files.job_dir(old["job_id"]).exists()
    assert client.get(long["urls"]["self"]).json()["state"] == "running"  # never deleted while running
    client.delete(long["urls"]["self"])


def test_sweep_spares_young_and_active_jobs_and_removes_orphans(make_client, wait_job):
    client = make_client(start=False)
    service = client.app.state.service
    service.start()
    try:
        job = wait_job(
            client,
            client.post("/v1/generate", json={"prompt": "kick", "steps": 2, "duration": 0.5}).json()[
                "job_id"
            ],
        )
    finally:
        service.stop()
    queued = client.post("/v1/generate", json={"prompt": "kick", "steps": 2}).json()
    ttl = service.config.ttl_seconds
    now = time.time()
    assert sweep(service.store, service.files, orphan_age_s=ttl, now=now) == []  # young: kept
    orphan = service.files.job_dir(new_job_id())
    orphan.mkdir()
    old = now - ttl - 10
    os.utime(orphan, (old, old))
    fresh_orphan = service.files.job_dir(new_job_id())  # a worker may be writing it right now
    fresh_orphan.mkdir()
    deleted = sweep(service.store, service.files, orphan_age_s=ttl, now=now + ttl + 1)
    assert sorted(deleted) == sorted([job["job_id"], orphan.name])
    assert client.get(queued["urls"]["self"]).json()["state"] == "queued"  # queued jobs never expire
    assert fresh_orphan.exists() and not orphan.exists()
    assert client.get(job["urls"]["self"]).status_code == 404


def test_an_expired_job_is_not_served_before_the_sweep_deletes_it(make_client, wait_job):
    """Past its TTL a job is gone to the client at once (it was downloadable until the next sweep, minutes later)."""
    ttl_s = 1.0
    client = make_client(ttl_hours=ttl_s / 3600, cleanup_interval_s=3600)
    job = wait_job(client, client.post("/v1/generate", json={"prompt": "kick", "steps": 2, "duration": 0.5}).json()["job_id"])
    assert client.get(job["results"][0]["url"]).status_code == 200
    time.sleep(ttl_s + 0.3)
    for url in (job["urls"]["self"], job["results"][0]["url"], job["urls"]["pack"]):
        r = client.get(url)
        assert r.status_code == 404 and "expired" in r.json()["error"], (url, r.text)
    assert client.app.state.service.files.job_dir(job["job_id"]).exists()  # the sweep deletes it, later
