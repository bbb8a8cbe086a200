"""The SQLite job store: guarded state transitions, batching, leases, bounded retries, TTL queries."""

from __future__ import annotations

import threading
import time

import pytest

from sampleforge.params import GenerationParams
from sampleforge.serve.job import Job
from sampleforge.serve.jobstore import JobStore, QueueFull
from sampleforge.serve.results import new_job_id


def make_job(count: int = 1, steps: int = 10, sampler: str = "ddim", seed: int | None = None,
             ttl_s: float = 3600.0, created_at: float | None = None) -> Job:
    params = GenerationParams(prompt="kick", count=count, steps=steps, sampler=sampler, seed=seed, duration=1.0)
    return Job(id=new_job_id(), state="queued", model="m", prompt="kick", params=params, ttl_s=ttl_s, created_at=time.time() if created_at is None else created_at, seed=seed)


@pytest.fixture
def store(tmp_path):
    return JobStore(tmp_path / "jobs.sqlite3")


def test_submit_get_round_trip_and_wal(store):
    job = store.submit(make_job(count=3, seed=7))
    got = store.get(job.id)
    assert got is not None and got.params == job.params and got.state == "queued" and got.seed == 7
    assert store.get(new_job_id()) is None
    mode = store._conn().execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_queue_bound_counts_queued_and_running(store):
    a = store.submit(make_job(), max_active=2)
    store.submit(make_job(), max_active=2)
    with pytest.raises(QueueFull):
        store.submit(make_job(), max_active=2)
    assert store.claim("w", 1, 60, leader=a.id)  # running still counts
    with pytest.raises(QueueFull):
        store.submit(make_job(), max_active=2)
    assert store.finish(a.id, "w", [])
    store.submit(make_job(), max_active=2)  # a slot is free again


def test_claim_batches_compatible_jobs_up_to_max_clips(store):
    t0 = time.time()
    a = store.submit(make_job(count=2, created_at=t0))
    b = store.submit(make_job(count=3, created_at=t0 + 1))
    other = store.submit(make_job(count=1, steps=20, created_at=t0 + 2))  # different steps: not batched
    c = store.submit(make_job(count=4, created_at=t0 + 3))  # would exceed 6 clips
    d = store.submit(make_job(count=1, created_at=t0 + 4))
    batch = store.claim("w1", max_clips=6, lease_s=60, new_seed=lambda n: 100)
    assert [j.id for j in batch] == [a.id, b.id, d.id]
    assert all(j.state == "running" and j.attempts == 1 and j.worker == "w1" for j in batch)
    assert all(store.get(j.id).seed == 100 for j in batch)  # unseeded jobs got a seed
    assert store.get(other.id).state == "queued" and store.get(c.id).state == "queued"


def test_jobs_of_any_sampler_are_batched_together(store):
    """Each clip draws from its own generator (seed + k), so ancestral samplers batch like the others."""
    a = store.submit(make_job(sampler="euler_ancestral"))
    b = store.submit(make_job(sampler="euler_ancestral"))
    store.submit(make_job(sampler="ddim"))
    batch = store.claim("w", max_clips=16, lease_s=60)
    assert [j.id for j in batch] == [a.id, b.id]


def test_two_workers_never_claim_the_same_job(store):
    for _ in range(40):
        store.submit(make_job())
    claimed: list[str] = []
    lock = threading.Lock()

    def work(name: str) -> None:
        while True:
            batch = store.claim(name, max_clips=3, lease_s=60)
            if not batch:
                return
            with lock:
                claimed.extend(j.id for j in batch)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(claimed) == 40 and len(set(claimed)) == 40


def test_finish_only_by_the_holder_and_not_after_cancel(store):
    a = store.submit(make_job())
    store.claim("w1", 1, 60, leader=a.id)
    assert not store.finish(a.id, "intruder", [])
    assert store.cancel(a.id)
    assert not store.finish(a.id, "w1", [{"index": 0}])
    assert store.get(a.id).state == "cancelled"
    assert store.heartbeat([a.id], "w1") == []  # the worker learns it lost the job


def test_leader_claim_takes_over_only_a_stale_running_job(store):
    a = store.submit(make_job())
    store.claim("w1", 1, lease_s=0.01, leader=a.id)
    assert store.claim("w2", 1, lease_s=60, leader=a.id) == []  # fresh heartbeat: w1 is alive
    time.sleep(0.05)
    taken = store.claim("w2", 1, lease_s=0.01, leader=a.id)  # heartbeat older than the lease
    assert [j.worker for j in taken] == ["w2"] and taken[0].attempts == 2
    assert not store.finish(a.id, "w1", [])  # the old worker can no longer finish it
    assert store.finish(a.id, "w2", [])
    assert store.claim("w3", 1, lease_s=0, leader=a.id) == []  # finished jobs are never claimed


def test_requeue_abandoned_is_bounded_by_attempts(store):
    a = store.submit(make_job())
    for attempt in range(1, 4):
        assert store.claim("w", 1, 60, leader=a.id)[0].attempts == attempt
        requeued, failed = store.requeue_abandoned(max_attempts=3)
        if attempt < 3:
            assert requeued == [a.id] and failed == []
        else:
            assert requeued == [] and failed == [a.id]
    job = store.get(a.id)
    assert job.state == "failed" and "interrupted 3 times" in job.error


def test_requeue_abandoned_with_a_lease_spares_live_jobs(store):
    a = store.submit(make_job())
    store.claim("w", 1, 60, leader=a.id)
    assert store.requeue_abandoned(3, stale_before=time.time() - 60) == ([], [])
    assert store.requeue_abandoned(3, stale_before=time.time() + 1) == ([a.id], [])


def test_release_gives_the_attempt_back(store):
    a = store.submit(make_job())
    store.claim("w", 1, 60, leader=a.id)
    assert store.release([a.id], "w") == 1
    job = store.get(a.id)
    assert job.state == "queued" and job.attempts == 0


def test_expired_only_finished_jobs_past_their_ttl(store):
    now = time.time()
    old = store.submit(make_job(ttl_s=10))
    young = store.submit(make_job(ttl_s=10))
    running = store.submit(make_job(ttl_s=10))
    queued = store.submit(make_job(ttl_s=10, created_at=now - 1000))
    for j in (old, young):
        store.claim("w", 1, 60, leader=j.id)
        store.finish(j.id, "w", [])
    store.claim("w", 1, 60, leader=running.id)
    store._conn().execute("UPDATE jobs SET finished_at = ? WHERE id = ?", (now - 11, old.id))
    store._conn().execute("UPDATE jobs SET started_at = ?, heartbeat_at = ? WHERE id = ?",
                          (now - 1000, now - 1000, running.id))
    assert store.expired(now) == [old.id]
    assert not store.delete_expired(young.id, now) and not store.delete_expired(running.id, now)
    assert not store.delete_expired(queued.id, now)
    assert store.delete_expired(old.id, now) and store.get(old.id) is None


def test_worker_liveness(store):
    store.beat_worker("a", {"kind": "thread"})
    store.beat_worker("b", {"kind": "celery"})
    store._conn().execute("UPDATE workers SET last_seen = ? WHERE id = 'b'", (time.time() - 100,))
    assert [w["id"] for w in store.alive_workers(within_s=10)] == ["a"]
    store.forget_worker("a")
    assert store.alive_workers(within_s=10) == []
