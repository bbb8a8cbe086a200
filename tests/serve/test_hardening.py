"""Defects found by attacking the service, one test each: races, readiness, write errors, auth traps,
the celery hand-off after a broker outage, durability, big jobs, metadata and small leaks."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import shutil
import sqlite3
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile as sf

from sampleforge.audio.io import read_metadata
from sampleforge.errors import AudioReadError, CheckpointError, UserInputError
from sampleforge.serve import runner
from sampleforge.serve.config import ServeConfig
from sampleforge.serve.results import (
    CHUNK,
    ResultFiles,
    ResultWriteError,
    new_job_id,
    read_chunks,
    stream_zip,
)

FAST = {"steps": 1, "duration": 0.25}


def health_until(client, status: int, timeout: float = 10.0):
    """GET /v1/health until it answers ``status`` (the readiness probe runs every second)."""
    deadline = time.monotonic() + timeout
    while True:
        r = client.get("/v1/health")
        if r.status_code == status or time.monotonic() > deadline:
            return r
        time.sleep(0.1)


def finished_job(client, wait_job, **body):
    r = client.post("/v1/generate", json={"prompt": "kick", **FAST, **body})
    assert r.status_code == 202, r.text
    job = wait_job(client, r.json()["job_id"])
    assert job["state"] == "succeeded", job
    return job


# ---- downloads racing a DELETE ------------------------------------------------------------------------
def test_delete_racing_downloads_gives_no_5xx_and_no_cut_file(make_client, wait_job):
    client = make_client(max_count=16)
    statuses: list[int] = []
    for _ in range(4):
        job = finished_job(client, wait_job, count=16)
        urls = [job["urls"]["pack"]] * 6 + [r["url"] for r in job["results"][:6]]

        def get(url: str) -> int:
            r = client.get(url)
            if r.status_code == 200 and url.endswith(".zip"):  # a whole, valid zip
                with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
                    assert zf.testzip() is None and len(zf.namelist()) == 17
            elif r.status_code == 200:  # a whole clip
                assert sf.read(io.BytesIO(r.content))[0].shape == (int(round(0.25 * 44100)),) or len(r.content) > 44
            return r.status_code

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(get, u) for u in urls]
            time.sleep(0.01)
            deleted = client.delete(f"/v1/jobs/{job['job_id']}")
            statuses += [f.result() for f in futures] + [deleted.status_code]
    assert all(s in (200, 404, 410) for s in statuses), sorted(set(statuses))


def test_open_files_stay_readable_after_the_job_folder_is_deleted(tmp_path):
    files = ResultFiles(tmp_path, durable=False)
    job_id = new_job_id()
    files.job_dir(job_id).mkdir()
    data = os.urandom(3 * CHUNK + 5)
    path = files.job_dir(job_id) / "0.wav"
    path.write_bytes(data)
    opened = files.open_files([path])
    assert opened is not None
    files.delete(job_id)
    assert b"".join(read_chunks(opened[0])) == data and opened[0].closed
    assert files.open_files([path]) is None  # gone before the open: the route answers 410


def test_pack_is_zipped_while_it_is_sent(tmp_path):
    """Memory per pack client stays around CHUNK bytes, whatever the number and size of the clips."""
    sources = []
    for i in range(4):
        p = tmp_path / f"{i}.wav"
        p.write_bytes(os.urandom(5 * CHUNK + i))
        sources.append(p)
    chunks = list(stream_zip([(open(p, "rb"), f"clip{i}.wav") for i, p in enumerate(sources)]))  # noqa: SIM115
    assert max(len(c) for c in chunks) <= CHUNK + 1024 and len(chunks) > 20
    with zipfile.ZipFile(io.BytesIO(b"".join(chunks))) as zf:
        assert zf.testzip() is None
        assert [zf.read(f"clip{i}.wav") for i in range(4)] == [p.read_bytes() for p in sources]


# ---- readiness and write errors ---------------------------------------------------------------------
def test_health_is_503_when_the_result_folder_refuses_writes(make_client):
    client = make_client()
    assert client.get("/v1/health").status_code == 200
    service = client.app.state.service
    results = service.files.results
    shutil.move(results, results.with_name("moved"))
    results.write_text("not a folder")  # every file created under results/ now fails
    r = health_until(client, 503)
    assert r.status_code == 503 and any("result folder" in p for p in r.json()["problems"]), r.json()
    assert str(service.files.root) not in r.text  # no server path
    results.unlink()
    shutil.move(results.with_name("moved"), results)
    assert health_until(client, 200).status_code == 200  # ready again, no restart


def test_health_is_503_and_submit_503_when_the_database_refuses_writes(make_client):
    client = make_client()
    service = client.app.state.service
    locker = sqlite3.connect(service.files.db_path, timeout=0.1)
    locker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock (a stuck writer, a backup)
    try:
        r = health_until(client, 503)
        assert r.status_code == 503 and any("database" in p for p in r.json()["problems"]), r.json()
        service.store.busy_timeout_s = 0.2  # the submit's wait for the lock, shortened for the test
        sub = client.post("/v1/generate", json={"prompt": "kick", **FAST})
        assert sub.status_code == 503 and sub.headers["retry-after"], sub.text
    finally:
        locker.rollback()
        locker.close()


def test_a_transient_write_error_is_retried(make_client, wait_job, monkeypatch):
    monkeypatch.setattr(runner, "WRITE_RETRY_DELAYS", (0.05, 0.05))
    client = make_client()
    real, calls = ResultFiles.write_clip, {"n": 0}

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ResultWriteError("cannot write clip 0.wav (No space left on device)")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ResultFiles, "write_clip", flaky)  # the class: each attempt writes through its own files
    job = finished_job(client, wait_job)
    assert calls["n"] == 2 and job["attempts"] == 1


def test_audio_the_writer_refuses_fails_the_job_at_once(make_client, wait_job, monkeypatch):
    """Not a disk error (libsndfile refuses the audio or its metadata): the same every time, so not retried."""
    monkeypatch.setattr(runner, "WRITE_RETRY_DELAYS", (5.0, 5.0))  # a retry would make the job take 10 s
    client = make_client()
    calls = {"n": 0}

    def refused(*args, **kwargs):
        calls["n"] += 1
        raise ResultWriteError("cannot write clip 0.wav (bad string)", transient=False)

    monkeypatch.setattr(ResultFiles, "write_clip", refused)
    t0 = time.monotonic()
    r = client.post("/v1/generate", json={"prompt": "kick", **FAST})
    job = wait_job(client, r.json()["job_id"])
    assert job["state"] == "failed" and "bad string" in job["error"], job
    assert calls["n"] == 1 and time.monotonic() - t0 < 5.0


def test_write_errors_say_whether_a_retry_can_help(tmp_path, monkeypatch):
    from sampleforge.serve import results

    files = results.ResultFiles(tmp_path, durable=False)
    job_id = results.new_job_id()
    files.job_dir(job_id).parent.mkdir(parents=True, exist_ok=True)
    files.job_dir(job_id).write_text("a file where the job's folder goes")  # the file system refuses
    with pytest.raises(ResultWriteError) as disk:
        files.write_clip(job_id, 0, np.zeros(100, np.float32), 44100, "wav", {})
    assert disk.value.transient

    def refuse(*args, **kwargs):
        raise UserInputError("x.flac: cannot write audio (bad string)")

    monkeypatch.setattr(results, "write_audio", refuse)
    with pytest.raises(ResultWriteError) as audio:
        files.write_clip(results.new_job_id(), 0, np.zeros(100, np.float32), 44100, "flac", {})
    assert not audio.value.transient


def test_a_lasting_write_error_fails_the_job_without_a_server_path(make_client, wait_job, monkeypatch):
    monkeypatch.setattr(runner, "WRITE_RETRY_DELAYS", (0.05,))
    client = make_client()
    service = client.app.state.service
    # moved aside at once, not deleted: the readiness probe writes a file into it every second, which races rmtree
    service.files.results.rename(service.files.results.with_name("results-moved"))
    service.files.results.write_text("not a folder")
    r = client.post("/v1/generate", json={"prompt": "kick", **FAST})
    job = wait_job(client, r.json()["job_id"])
    assert job["state"] == "failed" and "could not store the audio" in job["error"], job
    assert str(service.files.root) not in job["error"] and "/" not in job["error"].replace("/v1", "")


# ---- auth traps ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("token", ["", "   ", " s3cret", "s3cret\n", "s3 cret"])
def test_tokens_that_cannot_work_refuse_to_start(make_service, token):
    with pytest.raises(UserInputError):
        make_service(token=token)


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--token", ""], {}, "--token: the token is empty"),
    (["--token", "s3cret "], {}, "--token: the token starts or ends with whitespace"),
    ([], {"SAMPLEFORGE_TOKEN": ""}, "$SAMPLEFORGE_TOKEN: the token is empty"),
    ([], {"SAMPLEFORGE_TOKEN": " s3cret"}, "$SAMPLEFORGE_TOKEN: the token starts or ends"),
])
def test_cli_refuses_token_traps_in_one_line(debug_model, tmp_path, capsys, monkeypatch, port, args, env, message):
    from sampleforge.cli import main

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    code = main(["serve", "--model", str(debug_model), "--storage", str(tmp_path / "s"), "--port", port, *args])
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("{")]
    assert code == 2 and len(err) == 1 and message in err[0], err


def test_token_file_and_warnings(tmp_path, caplog, monkeypatch):
    from sampleforge.cli import build_parser
    from sampleforge.serve.commands import read_token

    monkeypatch.delenv("SAMPLEFORGE_TOKEN", raising=False)
    (tmp_path / "token").write_text("s3cret\n")
    args = build_parser().parse_args(["serve", "--token-file", str(tmp_path / "token")])
    assert read_token(args) == "s3cret"  # one trailing newline is a file's, not the token's
    with caplog.at_level(logging.WARNING, logger="sampleforge.serve"):
        assert read_token(build_parser().parse_args(["serve", "--token", "s3cret"])) == "s3cret"
    assert any("visible" in r.getMessage() for r in caplog.records)
    assert read_token(build_parser().parse_args(["serve"])) is None


def test_a_bearer_token_must_match_exactly(make_client):
    client = make_client(start=False, token="s3cret")
    for value in ("Bearer s3cret", "bearer s3cret"):
        assert client.get("/v1/models", headers={"Authorization": value}).status_code == 200
    for value in ("Bearer s3cre", "Bearer s3cretX", "Bearer", "s3cret", "Basic s3cret"):
        assert client.get("/v1/models", headers={"Authorization": value}).status_code == 401, value


BODY_ROUTES = ("/v1/generate", "/v1/tasks", "/v1/vary", "/v1/morph", "/v1/kit/pad", "/v1/kit")
BAD_BODIES = {"malformed": b'{"prompt": ', "twice": b'{"prompt": "kick", "prompt": "snare"}', "wrong": b'{"nope": 5}',
              "not-utf8": b'{"prompt": "caf\xe9"}', "deep": b"[" * 2000 + b"]" * 2000}


@pytest.mark.parametrize("path", BODY_ROUTES)
@pytest.mark.parametrize("raw", BAD_BODIES.values(), ids=BAD_BODIES.keys())
@pytest.mark.parametrize("auth", [None, "Bearer wrong"])
def test_without_the_token_a_bad_body_is_401_not_422(make_client, path, raw, auth):
    """The token is checked before the body is read: a client without it learns nothing of the schema."""
    client = make_client(start=False, token="s3cret")
    headers = {"content-type": "application/json", **({"Authorization": auth} if auth else {})}
    r = client.post(path, content=raw, headers=headers)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", r.text
    said = "missing or wrong bearer token (Authorization: Bearer <token>)"
    assert r.json() == {"detail": said, "error": said}
    ok = client.post(path, content=raw, headers={**headers, "Authorization": "Bearer s3cret"})
    assert ok.status_code == 422, ok.text  # with the token: what is wrong with the body


def test_without_the_token_even_a_huge_body_is_401(make_client):
    client = make_client(start=False, token="s3cret", max_body_bytes=1000)
    assert client.post("/v1/generate", content=b" " * 5000).status_code == 401
    assert client.post("/v1/generate", content=b" " * 5000, headers={"Authorization": "Bearer s3cret"}).status_code == 413
    for path in ("/v1/health/live", "/", "/docs"):  # public: no token
        assert client.get(path).status_code == 200, path


def test_every_protected_route_is_under_the_checked_paths():
    from sampleforge.serve.routes import PUBLIC, ROUTERS, needs_token

    assert all(needs_token(route.path) for router in ROUTERS for route in router.routes)
    assert not any(needs_token(route.path) for router in PUBLIC for route in router.routes)


# ---- the celery hand-off ------------------------------------------------------------------------------
class FlakyBroker:
    """A Celery stand-in whose broker is down until ``up`` is set."""

    def __init__(self) -> None:
        self.up = threading.Event()
        self.sent: list[str] = []

    def send_task(self, name: str, args: list[str], queue: str) -> None:
        if not self.up.is_set():
            raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        self.sent.append(args[0])


def test_a_job_accepted_while_the_broker_is_down_is_published_once_it_is_back(make_service, monkeypatch):
    import sampleforge.serve.celery_app as celery_app

    broker = FlakyBroker()
    monkeypatch.setattr(celery_app, "make_celery", lambda url, config: broker)
    service = make_service(broker="redis://127.0.0.1:1/0", lease_seconds=1.0)
    service.start()
    try:
        from sampleforge.serve.schemas import GenerateRequest

        job = service.submit(GenerateRequest(prompt="kick", steps=1, duration=0.25))
        time.sleep(1.5)
        assert broker.sent == [] and service.store.unpublished(older_than=0.0) == [job.id]
        broker.up.set()  # the broker is back: no restart
        deadline = time.monotonic() + 10
        while (job.id not in broker.sent or service.store.unpublished(older_than=0.0)) \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        assert broker.sent == [job.id] and service.store.unpublished(older_than=0.0) == []
    finally:
        service.stop()


# ---- durability, big jobs -----------------------------------------------------------------------------
@pytest.mark.parametrize(("durable", "synchronous", "fsyncs"), [(True, 2, True), (False, 1, False)])
def test_durability_setting(tmp_path, monkeypatch, durable, synchronous, fsyncs):
    from sampleforge.serve.jobstore import JobStore

    store = JobStore(tmp_path / "jobs.sqlite3", durable=durable)
    assert store._conn().execute("PRAGMA synchronous").fetchone()[0] == synchronous
    calls: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(fd), real(fd))[1])
    files = ResultFiles(tmp_path, durable=durable)
    job_id = new_job_id()
    import torch

    files.write_clip(job_id, 0, torch.zeros(100), 44100, "wav", {"prompt": "kick"})
    files.write_manifest(job_id, {"id": job_id})
    assert bool(calls) == fsyncs and (len(calls) >= 4 if fsyncs else True)  # file + folder, twice
    assert ServeConfig().durable  # the default: survive a power loss


def test_a_job_bigger_than_max_batch_is_split_into_calls(make_client, wait_job, generator, monkeypatch):
    sizes: list[int] = []
    real = generator.generate_full

    def spy(prompts, *args, **kwargs):
        sizes.append(len(prompts))
        return real(prompts, *args, **kwargs)

    monkeypatch.setattr(generator, "generate_full", spy)
    client = make_client(max_batch=2)
    job = finished_job(client, wait_job, count=5, seed=3)
    assert sizes == [2, 2, 1] and [r["seed"] for r in job["results"]] == [3, 4, 5, 6, 7]


# ---- small leaks ----------------------------------------------------------------------------------------
def test_a_long_task_prompt_names_data_prompt(make_client):
    client = make_client(start=False, max_prompt_chars=10)
    r = client.post("/v1/tasks", json={"type": "audio-generation",
                                       "data": {"operation": "generate", "prompt": "kick " * 5}})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "data", "prompt"], r.json()


@pytest.mark.parametrize("name", ["\u0660", "\u0660.wav", "\uff10", "\u0661\u0662"])
def test_clip_names_are_ascii_digits_only(make_client, wait_job, name):
    client = make_client()
    job = finished_job(client, wait_job)
    assert client.get(f"/v1/jobs/{job['job_id']}/audio/0").status_code == 200
    assert client.get(f"/v1/jobs/{job['job_id']}/audio/{name}").status_code == 404


def test_control_characters_never_reach_the_metadata(make_client, wait_job, tmp_path):
    client = make_client()
    job = finished_job(client, wait_job, prompt="kick\u0000\u001b[31m\u0085 snare")
    path = tmp_path / "clip.wav"
    path.write_bytes(client.get(job["results"][0]["url"]).content)
    meta = read_metadata(path)
    assert meta["prompt"] == "kick  [31m  snare"
    raw = path.read_bytes()
    assert b"\x1b[31m" not in raw and b"kick\x00" not in raw  # neither in INAM (the title) nor elsewhere


def test_a_prompt_with_no_known_keyword_warns(make_client):
    client = make_client(start=False)
    for prompt in ("!!!", "\u0660\u0661"):
        body = client.post("/v1/generate", json={"prompt": prompt, **FAST}).json()
        assert any("no keyword this model knows" in w for w in body["warnings"]), body


def test_wavs_stay_bit_identical_with_durability(tmp_path):
    """fsync changes when bytes reach the disk, never which bytes."""
    import torch

    wav = torch.linspace(-0.5, 0.5, 1000)
    a, b = ResultFiles(tmp_path / "a", durable=True), ResultFiles(tmp_path / "b", durable=False)
    job_id = new_job_id()
    pa = a.write_clip(job_id, 0, wav, 44100, "wav", {"prompt": "kick"})
    pb = b.write_clip(job_id, 0, wav, 44100, "wav", {"prompt": "kick"})
    assert pa.read_bytes() == pb.read_bytes()
    assert np.allclose(sf.read(pa)[0], wav.numpy(), atol=1e-7)


# ---- strict request types -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("body", "field"), [
    ({"steps": True}, "steps"), ({"steps": "4"}, "steps"), ({"steps": 4.0}, "steps"), ({"count": "2"}, "count"),
    ({"cfg_scale": "3"}, "cfg_scale"), ({"cfg_scale": False}, "cfg_scale"), ({"seed": True}, "seed"),
    ({"duration": "1"}, "duration"), ({"prompt": 5}, "prompt"), ({"format": True}, "format"),
    ({"sampler": 1}, "sampler"),
])
def test_generate_coerces_no_types(make_client, body, field):
    client = make_client(start=False)
    r = client.post("/v1/generate", json={"prompt": "kick", **FAST, **body})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", field], r.text


@pytest.mark.parametrize(("change", "loc"), [
    ({"storeResults": "no"}, ["body", "storeResults"]),
    ({"id": 7}, ["body", "id"]),
    ({"params": {"diffusionSteps": True}}, ["body", "data", "params", "diffusionSteps"]),
    ({"params": {"guidanceScale": "3.5"}}, ["body", "data", "params", "guidanceScale"]),
])
def test_tasks_coerce_no_types(make_client, change, loc):
    client = make_client(start=False)
    data = {"operation": "generate", "prompt": "kick", **{k: v for k, v in change.items() if k == "params"}}
    task = {"type": "audio-generation", "data": data, **{k: v for k, v in change.items() if k != "params"}}
    r = client.post("/v1/tasks", json=task)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == loc, r.text


def test_whole_numbers_are_still_numbers(make_client):
    client = make_client(start=False)
    r = client.post("/v1/generate", json={"prompt": "kick", "cfg_scale": 3, "duration": 1, "steps": 2})
    assert r.status_code == 202 and r.json()["params"]["cfg_scale"] == 3.0, r.text


TASK = b'{"type": "audio-generation", "data": {"operation": "generate", "prompt": "kick", "params": %s}}'


@pytest.mark.parametrize(("path", "raw", "loc"), [
    ("/v1/generate", b'{"prompt": "kick", "steps": 2, "prompt": "snare"}', ["body", "prompt"]),
    ("/v1/tasks", TASK % b'{"diffusionSteps": 2, "diffusionSteps": 3}', ["body", "data", "params", "diffusionSteps"]),
    ("/v1/kit", b'{"pieces": ["kick", "snare"], "pad_seeds": {"kick": 1, "kick": 2}}', ["body", "pad_seeds", "kick"]),
], ids=["generate", "tasks", "kit"])
def test_a_key_given_twice_is_a_422_naming_it(make_client, path, raw, loc):
    """json.loads keeps the last value: the job would be one the client may not have meant."""
    client = make_client(start=False)
    r = client.post(path, content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == loc and "twice" in r.json()["error"], r.text
    assert client.get("/v1/health").json()["queue"]["queued"] == 0


@pytest.mark.parametrize(("path", "raw", "loc"), [
    ("/v1/generate", b'{"prompt": "kick", "seed": %s}' % (b"9" * 5000), ["body", "seed"]),
    ("/v1/tasks", TASK % b'{"diffusionSteps": %s}' % (b"1" * 4301), ["body", "data", "params", "diffusionSteps"]),
    ("/v1/kit", b'{"pieces": ["kick"], "pad_seeds": {"kick": %s}}' % (b"1" * 4500), ["body", "pad_seeds", "kick"]),
], ids=["generate", "tasks", "kit"])
def test_an_integer_too_long_to_read_is_a_422_naming_it(make_client, path, raw, loc):
    """Past Python's 4300 digits json.loads refuses the body; that was a 400 naming nothing."""
    r = make_client(start=False).post(path, content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == loc, r.text


@pytest.mark.parametrize("raw", [b'{"prompt": "kick", "\\ud800": 1, "\\ud800": 2}',
                                 b'{"prompt": "kick", "\\udfff": %s}' % (b"9" * 5000)], ids=["twice", "too-long"])
def test_a_key_that_is_a_lone_surrogate_is_still_a_422(make_client, raw):
    """JSON may escape half a UTF-16 pair; UTF-8 cannot carry it back in the error."""
    r = make_client(start=False).post("/v1/generate", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][0] == "body", r.text


def test_a_body_that_is_not_utf8_is_a_422_saying_so(make_client):
    r = make_client(start=False).post("/v1/generate", content='{"prompt": "café"}'.encode("latin-1"),
                                      headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body"] and "UTF-8" in r.json()["error"], r.text


@pytest.mark.parametrize(("path", "raw"), [
    ("/v1/generate", b"[" * 2000 + b"]" * 2000),
    ("/v1/generate", b'{"a": ' * 2000 + b"1" + b"}" * 2000),
    ("/v1/tasks", TASK % (b"[" * 3000 + b"]" * 3000)),
    ("/v1/morph", b"[" * 10_000 + b"]" * 10_000),  # the upload routes take 4 MB
    ("/v1/kit", b'{"pad_seeds": {"kick": ' + b"[" * 5000 + b"]" * 5000 + b"}}"),
], ids=["array", "object", "tasks", "morph", "kit"])
def test_json_nested_too_deeply_is_a_422_naming_the_body(make_client, path, raw):
    """Past what Python's JSON reader recurses into, the body was a bare 400 naming nothing."""
    r = make_client(start=False).post(path, content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body"], r.text
    assert r.json()["error"].startswith("body: nested too deeply"), r.text


def test_json_nesting_has_one_limit(make_client):
    """At most MAX_DEPTH arrays or objects inside each other, whatever depth Python's reader would reach."""
    from sampleforge.serve.routes.common import MAX_DEPTH

    client = make_client(start=False)
    for depth, loc in ((MAX_DEPTH - 1, ["body", "steps"]), (MAX_DEPTH, ["body"])):  # the body's object is one
        raw = b'{"prompt": "kick", "steps": ' + b"[" * depth + b"]" * depth + b"}"
        r = client.post("/v1/generate", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == loc, (depth, r.text)


@pytest.mark.parametrize(("path", "raw"), [
    ("/v1/generate", b'{"prompt": "kick", "steps": 2, "duration": 0.25}'),
    ("/v1/tasks", TASK % b'{"diffusionSteps": 2}'),
    ("/v1/kit", b'{"prompt": "dusty", "pieces": ["kick", "snare"], "pad_seeds": {"kick": 7}}'),
], ids=["generate", "tasks", "kit"])
def test_a_json_body_is_parsed_once(make_client, monkeypatch, path, raw):
    """The strict read hands its parse to the route (it was parsed twice)."""
    client = make_client(start=False)
    real, parsed = json.loads, []
    monkeypatch.setattr(json, "loads", lambda text, **kw: (parsed.append(text), real(text, **kw))[1])
    r = client.post(path, content=raw, headers={"content-type": "application/json"})
    monkeypatch.setattr(json, "loads", real)
    assert r.status_code == 202 and parsed.count(raw) == 1, (r.text, parsed)
    job = client.get(r.headers["location"]).json()  # the parsed body made the job
    assert job["state"] == "queued" and job["prompt"] in ("kick", "dusty"), job
    assert path != "/v1/kit" or job["request"]["pad_seeds"] == {"kick": 7}, job


def test_max_count_above_what_a_job_may_hold_refuses_to_start(debug_model, tmp_path, capsys, port):
    from sampleforge.cli import main

    code = main(["serve", "--model", str(debug_model), "--storage", str(tmp_path / "s"), "--port", port,
                 "--max-count", "2000"])
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("{")]
    assert code == 2 and len(err) == 1 and "--max-count 2000" in err[0], err


# ---- HEAD -----------------------------------------------------------------------------------------------------
def test_every_get_route_answers_head_like_get_without_a_body(make_client):
    """Uptime checkers and proxies send HEAD: the GET answer's status and headers, no body (and no event stream)."""
    client = make_client(start=False)  # workers off: the job stays queued, /v1/health is 503
    job_id = client.post("/v1/generate", json={"prompt": "kick", **FAST}).json()["job_id"]
    paths = {"/"} | {p for p, ops in client.get("/openapi.json").json()["paths"].items() if "get" in ops}
    paths |= {"/v1/vocab?model=nope", f"/v1/jobs/{new_job_id()}", "/v1/jobs/bad"}
    assert {"/v1/health", "/v1/models", "/v1/jobs/{job_id}", "/v1/kit/pieces"} <= paths
    for template in sorted(paths):
        path = template.replace("{job_id}", job_id).replace("{name}", "0")
        head = client.head(path)
        assert head.status_code != 405 and head.content == b"", (path, head.status_code)
        if path.endswith("/events"):  # GET streams until the job ends: HEAD answers at once
            assert head.status_code == 200 and head.headers["content-type"].startswith("text/event-stream")
            continue
        get = client.get(path)
        assert (head.status_code, dict(head.headers)) == (get.status_code, dict(get.headers)), path
    assert client.head("/v1/generate").status_code == 405  # POST-only routes stay so


def test_a_405_lists_every_method_of_the_path(make_client):
    """``Allow`` names HEAD beside GET, and the methods of the path's other routes (GET and DELETE of a job)."""
    client = make_client(start=False)
    job_id = client.post("/v1/generate", json={"prompt": "kick", **FAST}).json()["job_id"]
    for method, path, allow in [("PUT", f"/v1/jobs/{job_id}", "DELETE, GET, HEAD"), ("HEAD", "/v1/generate", "POST"),
                                ("DELETE", "/v1/health", "GET, HEAD"), ("POST", "/v1/models", "GET, HEAD")]:
        r = client.request(method, path)
        assert (r.status_code, r.headers.get("allow")) == (405, allow), (method, path)
    assert client.put(f"/v1/jobs/{job_id}").json()["detail"]  # the JSON error body, as for every error


def test_every_error_body_has_one_error_line(make_client):
    """A client reads ``error`` whatever the status: 401, 404, 405, 409, 413 and 422 alike."""
    client = make_client(start=False, max_body_bytes=1000)
    job_id = client.post("/v1/generate", json={"prompt": "kick", **FAST}).json()["job_id"]
    answers = {404: client.get("/v1/jobs/nope"), 405: client.put(f"/v1/jobs/{job_id}"),
               409: client.get(f"/v1/jobs/{job_id}/audio/0"), 413: client.post("/v1/generate", content=b" " * 5000),
               422: client.post("/v1/generate", json={"prompt": "kick", "steps": -1})}
    for status, r in answers.items():
        body = r.json()
        assert r.status_code == status and isinstance(body["error"], str) and body["error"], (status, body)
        assert "\n" not in body["error"] and "detail" in body
    locked = make_client(start=False, token="s3cret").get("/v1/models")
    assert locked.status_code == 401 and locked.json()["error"].startswith("missing or wrong bearer token")


# ---- what a failed job tells the client ---------------------------------------------------------------------
INTERNAL = re.compile(r"internal error while running the job \(ref ([0-9a-f]{8})\)")


def _crash_logged(caplog, ref: str) -> logging.LogRecord:
    """The one log record of the crash with reference ``ref`` (the traceback with it)."""
    records = [r for r in caplog.records if getattr(r, "ref", None) == ref]
    assert len(records) == 1 and records[0].exc_info is not None, [r.getMessage() for r in caplog.records]
    return records[0]


@pytest.mark.parametrize("exc", [RuntimeError("CUDA error in /home/build/secret/kernels.cu:42"),
                                 ValueError("tensor of shape (3, 4) at /opt/sampleforge/model.safetensors"),
                                 KeyError("/srv/sampleforge/weights")], ids=["runtime", "value", "key"])
def test_an_unexpected_crash_stores_a_generic_error_and_logs_the_traceback(make_client, wait_job, generator,
                                                                            monkeypatch, caplog, exc):
    def crash(*args, **kwargs):
        raise exc

    monkeypatch.setattr(generator, "generate_full", crash)
    client = make_client()
    with caplog.at_level(logging.INFO, logger="sampleforge.serve"):
        r = client.post("/v1/generate", json={"prompt": "kick", **FAST})
        job = wait_job(client, r.json()["job_id"])
    assert job["state"] == "failed" and "/" not in job["error"] and "Error" not in job["error"], job
    m = INTERNAL.fullmatch(job["error"])
    assert m, job["error"]
    record = _crash_logged(caplog, m[1])
    assert record.exc_info[1] is exc and record.jobs == [job["job_id"]]
    task = client.get(f"/v1/tasks/{job['job_id']}").json()
    assert str(exc) not in json.dumps(task)


def test_an_unexpected_error_in_a_route_is_a_500_with_a_reference_the_log_holds(make_service, monkeypatch,
                                                                               caplog):
    from fastapi.testclient import TestClient

    from sampleforge.serve.app import create_app

    service = make_service()
    secret = RuntimeError("cannot open /srv/sampleforge/secret.db")
    monkeypatch.setattr(type(service), "models", property(lambda self: (_ for _ in ()).throw(secret)), raising=False)
    with TestClient(create_app(service, manage_service=False), raise_server_exceptions=False) as client, \
            caplog.at_level(logging.INFO, logger="sampleforge.serve"):
        r = client.get("/v1/models")
    assert r.status_code == 500 and "/srv" not in r.text
    m = re.fullmatch(r"internal server error \(ref ([0-9a-f]{8}); logged\)", r.json()["detail"])
    assert m, r.json()
    record = _crash_logged(caplog, m[1])
    assert record.exc_info[1] is secret and record.path == "/v1/models"


def test_an_error_meant_for_users_keeps_its_message(make_client, wait_job, generator, monkeypatch):
    def refuse(*args, **kwargs):
        raise UserInputError("duration: too short for this model's latent (at least 0.5 s)")

    monkeypatch.setattr(generator, "generate_full", refuse)
    client = make_client()
    job = wait_job(client, client.post("/v1/generate", json={"prompt": "kick", **FAST}).json()["job_id"])
    assert job["state"] == "failed" and job["error"] == "duration: too short for this model's latent (at least 0.5 s)"


@pytest.mark.parametrize("exc, told", [
    (CheckpointError("/srv/sampleforge/models/m/unet.safetensors: tensor 'w' has shape (3, 4), the config (4, 4)"),
     "unet.safetensors: tensor 'w' has shape (3, 4), the config (4, 4)"),
    (AudioReadError("/srv/sampleforge/storage/uploads/ab12.wav: holds NaN or infinite samples"),
     "ab12.wav: holds NaN or infinite samples")], ids=["checkpoint", "audio"])
def test_an_error_meant_for_users_names_no_server_folder(make_client, wait_job, generator, monkeypatch, caplog,
                                                        exc, told):
    """A model that does not load, or a stored upload that cannot be read, is said in the job's error, by file
    name: the server's folders stay in its log."""
    def refuse(*args, **kwargs):
        raise exc

    monkeypatch.setattr(generator, "generate_full", refuse)
    client = make_client()
    with caplog.at_level(logging.INFO, logger="sampleforge.serve"):
        job = wait_job(client, client.post("/v1/generate", json={"prompt": "kick", **FAST}).json()["job_id"])
    assert job["state"] == "failed" and job["error"] == told
    assert [r.error for r in caplog.records if getattr(r, "event", None) == "batch_failed"] == [str(exc)]


def test_a_crash_in_a_celery_task_is_stored_the_same_way(tmp_path, monkeypatch, caplog):
    """The Celery task runs the same job function as the server's threads: the same message, the same log."""
    import sampleforge.serve.celery_app as celery_app
    from sampleforge.params import GenerationParams
    from sampleforge.serve.job import Job

    class Crashing:  # what a worker process loads
        name, sample_rate, samplers = "crashing", 44100, ("ddim",)

        def generate_full(self, *args, **kwargs):
            raise RuntimeError("segfault in /opt/secret/libtorch.so")

    config = ServeConfig(storage=tmp_path / "storage", broker="redis://127.0.0.1:1/0")
    ctx = celery_app.WorkerContext(config, Crashing)
    monkeypatch.setattr(celery_app, "WORKER", ctx)
    params = GenerationParams(prompt="kick", steps=1, cfg_scale=3.0, sampler="ddim", duration=0.25)
    job = ctx.store.submit(Job(id=new_job_id(), state="queued", model="crashing", prompt="kick", params=params,
                               ttl_s=60.0, created_at=time.time()))
    task = celery_app.make_celery(config.broker, config).tasks[celery_app.TASK_NAME]
    with caplog.at_level(logging.INFO, logger="sampleforge.serve"):
        assert task(job.id) == [job.id]
    failed = ctx.store.get(job.id)
    assert failed is not None and failed.state == "failed"
    m = INTERNAL.fullmatch(failed.error or "")
    assert m, failed.error
    assert "libtorch" in str(_crash_logged(caplog, m[1]).exc_info[1])


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_json_body_sent_as_another_type_says_so(make_client, content_type):
    """curl -d sends a form; the body is JSON all the same: the 422 says which header to send."""
    client = make_client(start=False)
    headers = {"content-type": content_type} if content_type else {}
    r = client.post("/v1/generate", content=b'{"prompt": "kick"}', headers=headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body"], r.text
    assert "Content-Type: application/json" in r.json()["error"], r.text
    assert client.post("/v1/generate", json={"prompt": "kick", **FAST}).status_code == 202


def test_a_seed_without_room_for_its_clips_is_refused_naming_it(make_client):
    """Clip k uses seed + k: a last clip past the largest seed would get a seed no request can ask for again."""
    client = make_client(start=False)
    top = 2**31 - 1
    r = client.post("/v1/generate", json={"prompt": "kick", **FAST, "seed": top, "count": 2})
    assert r.status_code == 422 and "seed" in r.text and str(top - 1) in r.text, r.text
    assert client.post("/v1/generate", json={"prompt": "kick", **FAST, "seed": top - 1, "count": 2}).status_code == 202


@pytest.mark.parametrize(("path", "body", "loc"), [
    ("/v1/generate", {"prompt": "kick", "seed": 2**31 - 1, "count": 2}, ["body", "seed"]),
    ("/v1/tasks", {"type": "audio-generation", "data": {"operation": "generate", "prompt": "kick",
                                                        "params": {"seed": 2**31 - 2, "count": 3}}},
     ["body", "data", "params", "seed"]),
])
def test_the_seed_without_room_is_the_field_named(make_client, path, body, loc):
    r = make_client(start=False).post(path, json=body)
    assert r.status_code == 422 and loc in [e["loc"] for e in r.json()["detail"]], r.text
