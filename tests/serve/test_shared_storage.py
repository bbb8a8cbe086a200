"""One storage, several processes: a worker that stalled past its lease while another finished its job, and
servers of both modes (embedded, --broker) started on one storage."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import pytest

from sampleforge.errors import SampleforgeError
from sampleforge.serve.cleanup import sweep
from sampleforge.serve.jobstore import JobStore
from sampleforge.serve.results import ResultFiles, new_job_id
from sampleforge.serve.runner import JobRunner

FAST = {"steps": 2, "duration": 0.5}
NO_BROKER = "redis://127.0.0.1:1/0"  # nothing listens: a --broker service starts and publishes nothing


class StallsAfterSampling:
    """The model, run by a worker that stalls once the clips are sampled (swap, a paused VM, a hung disk): it
    goes on only when ``resume`` is set."""

    def __init__(self, generator: Any) -> None:
        self._generator = generator
        self.sampled, self.resume = threading.Event(), threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._generator, name)

    def generate_full(self, *args: Any, **kwargs: Any) -> Any:
        out = self._generator.generate_full(*args, **kwargs)
        self.sampled.set()
        self.resume.wait(30)
        return out


def test_a_worker_that_lost_its_lease_leaves_the_finished_jobs_files_alone(make_client, generator, caplog):
    client = make_client(start=False)
    service = client.app.state.service
    job_id = client.post("/v1/generate", json={"prompt": "kick", "count": 2, "seed": 5, **FAST}).json()["job_id"]
    model = StallsAfterSampling(generator)
    stalled = JobRunner(service.store, service.files, model, service.config, "worker-a")
    thread = threading.Thread(target=stalled.run_once)
    thread.start()
    try:
        assert model.sampled.wait(30)
        # its lease runs out: the server re-queues the job and another worker runs it to the end
        assert service.store.requeue_abandoned(3, stale_before=time.time() + 1) == ([job_id], [])
        other = JobRunner(service.store, service.files, generator, service.config, "worker-b")
        assert other.run_once() == [job_id]
        finished = client.get(f"/v1/jobs/{job_id}").json()
        audio = [client.get(r["url"]).content for r in finished["results"]]
        pack = client.get(finished["urls"]["pack"]).content
    finally:
        with caplog.at_level(logging.INFO, logger="sampleforge.serve"):
            model.resume.set()  # the stalled worker wakes up, writes its files and finds the job taken
            thread.join(30)
    after = client.get(f"/v1/jobs/{job_id}").json()
    assert after["state"] == "succeeded" and after["attempts"] == 2 and after["results"] == finished["results"]
    assert [client.get(r["url"]).content for r in after["results"]] == audio and audio[0][:4] == b"RIFF"
    assert client.get(finished["urls"]["pack"]).content == pack
    dropped = [r for r in caplog.records if getattr(r, "event", None) == "job_dropped"]
    assert len(dropped) == 1 and "lost its lease" in dropped[0].getMessage()
    assert not any((service.files.results / ".staging").iterdir())  # the stale attempt removed its own files


def test_a_cancelled_attempt_leaves_no_files(make_client, generator):
    client = make_client(start=False)
    service = client.app.state.service
    job_id = client.post("/v1/generate", json={"prompt": "kick", **FAST}).json()["job_id"]
    model = StallsAfterSampling(generator)
    thread = threading.Thread(target=JobRunner(service.store, service.files, model, service.config, "w").run_once)
    thread.start()
    assert model.sampled.wait(30)
    assert client.delete(f"/v1/jobs/{job_id}").json()["state"] == "cancelled"
    model.resume.set()
    thread.join(30)
    assert client.get(f"/v1/jobs/{job_id}").json()["state"] == "cancelled"
    assert not service.files.job_dir(job_id).exists() and not any((service.files.results / ".staging").iterdir())


def test_the_sweep_removes_attempt_folders_their_dead_workers_left(tmp_path):
    files = ResultFiles(tmp_path, durable=False)
    dead, live = files.stage(new_job_id()), files.stage(new_job_id())
    for staged in (dead, live):
        staged.write_manifest(staged.job_id, {"id": staged.job_id})
    os.utime(dead.folder, (time.time() - 7200, time.time() - 7200))  # its worker died two hours ago
    sweep(JobStore(files.db_path, durable=False), files, orphan_age_s=3600)
    assert not dead.folder.exists() and (live.folder / "job.json").is_file()


def test_an_embedded_server_refuses_a_storage_a_broker_server_uses(make_service):
    broker = make_service(broker=NO_BROKER)
    broker.start()
    try:
        with pytest.raises(SampleforgeError, match=r"used by another `sampleforge serve` \(with --broker\)"):
            make_service().start()
        second = make_service(broker=NO_BROKER)  # --broker servers may share a storage: their workers run the jobs
        second.start()
        second.stop()
    finally:
        broker.stop()
    embedded = make_service()
    embedded.start()  # once the --broker servers are gone
    embedded.stop()


def test_a_broker_server_refuses_a_storage_an_embedded_server_uses(make_service):
    embedded = make_service()
    embedded.start()
    try:
        with pytest.raises(SampleforgeError, match=r"used by another `sampleforge serve` \(embedded mode\)"):
            make_service(broker=NO_BROKER).start()
    finally:
        embedded.stop()


def test_an_embedded_server_refuses_a_storage_live_workers_use_and_requeues_nothing(make_service):
    """A --broker deployment whose server is down: its workers still run jobs, which an embedded server would
    re-queue and run a second time."""
    from sampleforge.serve.schemas import GenerateRequest

    service = make_service()
    job = service.submit(GenerateRequest(prompt="kick", **FAST))
    assert service.store.claim("celery@host:1:aaaaaa", 1, 60.0, leader=job.id)
    service.store.beat_worker("celery@host:1:bbbbbb", {"kind": "celery", "model": job.model, "pid": 1})
    with pytest.raises(SampleforgeError, match=r"used by a --broker deployment \(1 `sampleforge worker` alive"):
        service.start()
    held = service.store.get(job.id)
    assert held is not None and held.state == "running" and held.attempts == 1
    service.store.forget_worker("celery@host:1:bbbbbb")  # the worker stopped: the storage is free again
    other = make_service()
    other.start()
    other.stop()


def test_cli_refuses_a_storage_a_server_of_the_other_mode_uses(make_service, debug_model, tmp_path, capsys, port,
                                                                 monkeypatch):
    from sampleforge.cli import main
    from sampleforge.serve import server

    monkeypatch.setattr(server, "serve", lambda *args: None)  # a server that was not refused returns at once
    serve = ["serve", "--model", str(debug_model), "--storage", str(tmp_path / "busy"), "--port", port]
    for running, extra, said in ((make_service(storage=tmp_path / "busy", broker=NO_BROKER), [], "(with --broker)"),
                                 (make_service(storage=tmp_path / "busy"), ["--broker", NO_BROKER], "(embedded mode)")):
        running.start()
        try:
            code = main([*serve, *extra])
        finally:
            running.stop()
        err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("{")]  # minus JSON logs
        assert code == 2 and len(err) == 1 and f"used by another `sampleforge serve` {said}" in err[0], err


def test_a_worker_refuses_a_storage_an_embedded_server_uses(make_service, debug_model, tmp_path, capsys,
                                                            monkeypatch):
    """The embedded server's threads run its jobs and no broker message names them: the worker would wait for
    nothing. Refused before the model loads; beside a --broker server it starts."""
    import sampleforge.serve.celery_app as celery_app
    from sampleforge.cli import main

    loads: list[str] = []

    def stop_at_the_model(self: object) -> None:
        loads.append("model")
        raise SystemExit(0)

    monkeypatch.setattr(celery_app.WorkerContext, "generator", stop_at_the_model)
    worker = ["worker", "--broker", NO_BROKER, "--storage", str(tmp_path / "busy"), "--model", str(debug_model)]
    embedded = make_service(storage=tmp_path / "busy")
    embedded.start()
    try:
        code = main(worker)
    finally:
        embedded.stop()
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("{")]
    assert code == 2 and len(err) == 1 and "used by a `sampleforge serve` without --broker" in err[0], err
    assert loads == []
    broker = make_service(storage=tmp_path / "busy", broker=NO_BROKER)
    broker.start()
    try:
        with pytest.raises(SystemExit):  # past the check: it goes on to load the model (stopped here)
            main(worker)
    finally:
        broker.stop()
    assert loads == ["model"]
