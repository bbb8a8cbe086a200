"""--broker deployments under faults: a broker that loses messages, a worker of another model, a worker given
another --storage. The Redis tests use a private redis-server and short leases (the hand-off runs every
lease / 2, a lost message is republished after 5 hand-off intervals)."""

from __future__ import annotations

import base64
import json
import logging
import time

import pytest
from celery.exceptions import Reject

import sampleforge.serve.celery_app as celery_app
from sampleforge.serve.config import ServeConfig
from sampleforge.serve.schemas import GenerateRequest

SHARED = ["--lease-seconds", "2", "--max-attempts", "3"]
NO_BROKER = "redis://127.0.0.1:1/0"  # nothing listens: publishing fails, the service still starts


def queued_ids(redis_client, queue: str) -> list[str]:
    """The job ids of the messages waiting in a broker queue (kombu keeps them as JSON in a Redis list)."""
    ids = []
    for raw in redis_client.lrange(queue, 0, -1):
        args, _kwargs, _embed = json.loads(base64.b64decode(json.loads(raw)["body"]))
        ids.append(args[0])
    return ids


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not within {timeout} s")
        time.sleep(0.05)


@pytest.mark.redis
def test_a_message_the_broker_lost_is_published_again_within_seconds(make_service, redis_url):
    """Redis restarted without persistence (FLUSHALL), or a message taken and never run: the queued job is
    published again after a few hand-off intervals, not after the visibility timeout (an hour)."""
    import redis

    service = make_service(broker=redis_url, lease_seconds=0.8)  # hand-off every 0.4 s, a message lost after 2 s
    broker = redis.Redis.from_url(redis_url)
    queue = celery_app.queue_name(service.generator.name)
    service.start()
    try:
        job = service.submit(GenerateRequest(prompt="kick", steps=1, duration=0.25))
        wait_for(lambda: queued_ids(broker, queue) == [job.id], 5, "the first hand-off")
        time.sleep(4.0)
        assert queued_ids(broker, queue) == [job.id]  # a message still waiting is not sent again

        broker.flushall()  # a Redis restart without persistence
        wait_for(lambda: queued_ids(broker, queue) == [job.id], 10, "the republish after a broker restart")
        broker.rpop(queue)  # a worker took the message and did not run the job
        wait_for(lambda: queued_ids(broker, queue) == [job.id], 10, "the republish of a message taken and not run")
        stored = service.store.get(job.id)
        assert stored is not None and stored.state == "queued"
    finally:
        service.stop()
        broker.close()


def test_health_is_not_ready_when_no_worker_runs_a_served_model(make_service):
    """A `sampleforge worker --model` of another model runs none of this server's jobs: not ready, naming the
    model, with the live workers counted per served model."""
    service = make_service(broker=NO_BROKER)
    name = service.generator.name
    service.store.beat_worker("celery@host:1:aaaaaa", {"kind": "celery", "model": "drums-v2", "pid": 1})
    health = service.health()
    assert not health["ready"] and health["workers"]["alive"] == 0 and health["workers"]["models"] == {name: 0}
    assert health["problems"] == [f"no worker alive for model {name!r} (workers alive run 'drums-v2')"]

    service.store.beat_worker("celery@host:2:bbbbbb", {"kind": "celery", "model": name, "pid": 2})
    health = service.health()
    assert health["ready"] and health["problems"] == [] and health["workers"]["models"] == {name: 1}


def test_a_worker_with_another_storage_hands_the_job_back_and_says_why(tmp_path, monkeypatch, caplog):
    """The message names the server's store; a worker whose --storage is another refuses it unacknowledged (the
    broker keeps it for a worker of the right storage) and logs an error naming the cause."""
    config = ServeConfig(storage=tmp_path / "other", broker=NO_BROKER, lease_seconds=0.8)
    ctx = celery_app.WorkerContext(config, lambda: pytest.fail("a job of another store must not load the model"))
    monkeypatch.setattr(celery_app, "WORKER", ctx)
    task = celery_app.make_celery(NO_BROKER, config).tasks[celery_app.TASK_NAME]
    with caplog.at_level(logging.INFO, logger="sampleforge.serve"), pytest.raises(Reject) as refused:
        task("0" * 32, "f" * 32)
    assert refused.value.requeue
    said = [r for r in caplog.records if getattr(r, "event", None) == "job_from_other_storage"]
    assert len(said) == 1 and said[0].levelno == logging.ERROR and "--storage" in said[0].getMessage()
    assert "\n" not in said[0].getMessage()


@pytest.mark.redis
def test_a_job_taken_by_a_worker_of_another_storage_runs_once_a_right_worker_is_up(
    redis_url, live_server, spawn, debug_model, tmp_path, wait_job
):
    storage = tmp_path / "storage"
    server = live_server("--broker", redis_url, *SHARED, storage=storage)
    c = server.client

    def worker(name: str, where: str):
        return spawn(name, "worker", "--broker", redis_url, "--storage", where, "--model", str(debug_model), *SHARED)

    wrong = worker("wrong-worker", str(tmp_path / "elsewhere"))
    job = c.post("/v1/generate", json={"prompt": "kick", "steps": 2, "duration": 0.5, "seed": 3}).json()
    wait_for(lambda: "job_from_other_storage" in wrong.log.read_text(errors="replace"), 90,
             f"the wrong worker's error:\n{wrong.tail()}")
    assert c.get(f"/v1/jobs/{job['job_id']}").json()["state"] == "queued"
    wrong.stop()

    right = worker("right-worker", str(storage))
    done = wait_job(c, job["job_id"], timeout=90)
    assert done["state"] == "succeeded" and done["attempts"] == 1, (done, right.tail())
    assert c.get(done["results"][0]["url"]).content[:4] == b"RIFF"

