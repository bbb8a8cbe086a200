"""--broker deployments whose processes disagree or die: a worker started with a longer --lease-seconds than the
server's keeps its jobs and counts as alive; a job whose pool process was killed runs again as soon as its message
comes back, while a duplicate message for a live holder stays a no-op."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time

import pytest

import sampleforge.serve.celery_app as celery_app
from sampleforge.serve.config import ServeConfig
from sampleforge.serve.schemas import GenerateRequest
from sampleforge.serve.worker import process_space

NO_BROKER = "redis://127.0.0.1:1/0"  # nothing listens; these tests never reach a broker
QUICK = {"prompt": "kick", "steps": 1, "duration": 0.25, "seed": 3}


def dead_pid() -> int:
    """The pid of a process of this host that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid


def set_heartbeat(store, job_id: str, age_s: float) -> None:
    store._conn().execute("UPDATE jobs SET heartbeat_at = ? WHERE id = ?", (time.time() - age_s, job_id))


def test_a_worker_with_a_longer_lease_keeps_its_job_and_counts_as_alive(make_service):
    """Server --lease-seconds 0.5, worker 60 (it beats every 15 s): between beats its job is not re-queued and
    the worker is alive; once the worker's own lease has passed without a beat, the job is re-queued."""
    service = make_service(broker=NO_BROKER, lease_seconds=0.5)
    name = service.generator.name
    job = service.submit(GenerateRequest(**QUICK))
    holder = "celery@host:1:aaaaaa"
    assert service.store.claim(holder, 16, 60.0, leader=job.id)
    set_heartbeat(service.store, job.id, 5.0)  # ten server leases, a third of the worker's beat interval
    service._handoff_pass(republish_before=time.time())  # no queued job: nothing goes to the broker
    stored = service.store.get(job.id)
    assert stored is not None and stored.state == "running" and stored.worker == holder and stored.attempts == 1

    service.store.beat_worker("celery@host:1:bbbbbb", {"kind": "celery", "model": name, "pid": 1, "beat_s": 15.0})
    service.store._conn().execute("UPDATE workers SET last_seen = ?", (time.time() - 10,))
    health = service.health()
    assert health["workers"]["models"] == {name: 1} and health["ready"], health

    set_heartbeat(service.store, job.id, 61.0)  # the worker's own lease passed: it is gone
    assert service.store.requeue_abandoned(3, lease_s=0.5) == ([job.id], [])
    service.store._conn().execute("UPDATE workers SET last_seen = ?", (time.time() - 60,))
    assert service.health()["workers"]["models"] == {name: 0}


def test_a_worker_says_in_one_line_which_settings_differ_from_the_servers(make_service, tmp_path, caplog):
    service = make_service(broker=NO_BROKER, lease_seconds=0.5, max_batch=4)
    service.start()
    try:
        worker = ServeConfig(storage=tmp_path / "storage", broker=NO_BROKER, lease_seconds=60.0, max_batch=4)
        ctx = celery_app.WorkerContext(worker, lambda: pytest.fail("comparing settings loads no model"))
        with caplog.at_level(logging.INFO, logger="sampleforge.serve"):
            ctx.check_server_settings()
    finally:
        service.stop()
    said = [r for r in caplog.records if getattr(r, "event", None) == "settings_differ"]
    assert [r.getMessage() for r in said] == [
        "the server uses --lease-seconds 0.5, this worker 60; give both the same"]
    assert said[0].levelno == logging.WARNING


@pytest.fixture
def task_on(monkeypatch, generator):
    """``task_on(service)`` -> the Celery task as a worker of ``service``'s storage runs it (no broker)."""

    def make(service):
        ctx = celery_app.WorkerContext(service.config, lambda: generator)
        monkeypatch.setattr(celery_app, "WORKER", ctx)
        return celery_app.make_celery(NO_BROKER, service.config).tasks[celery_app.TASK_NAME]

    return make


def test_a_job_whose_pool_process_died_runs_again_as_soon_as_its_message_is_back(make_service, task_on):
    """Celery hands the message of a killed pool process back at once: the job, held by that dead process and
    well within its lease, runs at once (its attempt counted) instead of a lease later."""
    service = make_service(broker=NO_BROKER, lease_seconds=60)
    job = service.submit(GenerateRequest(**QUICK))
    holder = f"celery@{process_space()}:{dead_pid()}:aaaaaa"
    assert service.store.claim(holder, 16, 60.0, leader=job.id)

    assert task_on(service)(job.id, service.store.storage_id) == [job.id]
    done = service.store.get(job.id)
    assert done is not None and done.state == "succeeded" and done.attempts == 2 and done.error is None


def test_a_job_that_keeps_killing_its_pool_process_fails_after_its_attempts(make_service, task_on):
    service = make_service(broker=NO_BROKER, lease_seconds=60, max_attempts=1)
    job = service.submit(GenerateRequest(**QUICK))
    assert service.store.claim(f"celery@{process_space()}:{dead_pid()}:aaaaaa", 16, 60.0, leader=job.id)

    assert task_on(service)(job.id, service.store.storage_id) == []
    failed = service.store.get(job.id)
    assert failed is not None and failed.state == "failed" and "giving up after 1 attempts" in (failed.error or "")


@pytest.mark.parametrize("where", ["live process here", "dead pid elsewhere", "dead pid in another container"])
def test_a_duplicate_message_for_a_live_or_remote_holder_is_a_no_op(make_service, task_on, where):
    """A holder alive on this host, or on another host or in another container of this host name (another
    process-id namespace: its pid means nothing here), keeps its job."""
    service = make_service(broker=NO_BROKER, lease_seconds=60)
    job = service.submit(GenerateRequest(**QUICK))
    holder = {"live process here": f"celery@{process_space()}:{os.getppid()}:aaaaaa",
              "dead pid elsewhere": f"celery@not-{socket.gethostname()}:{dead_pid()}:aaaaaa",
              "dead pid in another container": f"celery@{socket.gethostname()}/1:{dead_pid()}:aaaaaa"}[where]
    assert service.store.claim(holder, 16, 60.0, leader=job.id)

    assert task_on(service)(job.id, service.store.storage_id) == []
    stored = service.store.get(job.id)
    assert stored is not None and stored.state == "running" and stored.worker == holder and stored.attempts == 1
