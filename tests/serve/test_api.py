"""The HTTP API in-process (TestClient) with the real Generator on the debug model."""

from __future__ import annotations

import io
import json
import time
import zipfile

import numpy as np
import pytest
import soundfile as sf

from sampleforge.audio.io import read_metadata
from sampleforge.errors import UserInputError
from tests.judges import judge

FAST = {"steps": 2, "duration": 0.5}


def assert_same_clip(actual: np.ndarray, expected: np.ndarray) -> None:
    """Clip from a batch vs the same seed alone: equal up to float noise. Not bit-equal: batch-size-dependent
    kernels differ in the last bits and the vocoder's phase reconstruction amplifies that a little
    (measured: correlation 0.998 for the same seed, 0.01 for the next seed)."""
    assert actual.shape == expected.shape
    assert np.corrcoef(actual, expected)[0, 1] > 0.99
    assert np.abs(actual - expected).max() < 0.15


def test_generate_then_download_clips_and_pack(make_client, generator, tmp_path, wait_job):
    client = make_client()
    r = client.post("/v1/generate", json={"prompt": "kick", "count": 3, "seed": 42, **FAST})
    assert r.status_code == 202, r.text
    body = r.json()
    assert r.headers["location"] == f"/v1/jobs/{body['job_id']}"
    assert len(body["urls"]["audio"]) == 3 and body["state"] == "queued"
    job = wait_job(client, body["job_id"])
    assert job["state"] == "succeeded" and job["progress"] == 1.0 and job["attempts"] == 1
    assert [r["seed"] for r in job["results"]] == [42, 43, 44]
    assert job["finished_at"] and job["expires_at"] > job["finished_at"]

    audio = client.get(job["results"][1]["url"])
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    wav, sr = sf.read(io.BytesIO(audio.content), dtype="float32")
    assert sr == generator.sample_rate and wav.shape == (int(round(0.5 * sr)),)
    assert np.isfinite(wav).all() and 0.0 < np.abs(wav).max() <= 0.951
    # the same clip as generating it alone with its seed
    assert_same_clip(wav, generator.generate("kick", n=1, seed=43, **FAST)[0].numpy())

    path = tmp_path / "clip.wav"
    path.write_bytes(audio.content)
    meta = read_metadata(path)
    assert meta["prompt"] == "kick" and meta["seed"] == "43" and meta["model"] == generator.id  # as the CLI's files
    assert meta["duration"] == "0.5" and meta["precision"] == "fp32" and "eta" not in meta

    base = f"/v1/jobs/{job['job_id']}/audio"
    assert client.get(f"{base}/1").content == audio.content
    assert client.get(f"{base}/1.flac").status_code == 404  # this job made WAV
    assert client.get(f"{base}/3.wav").status_code == 404
    assert client.get(f"{base}/..%2F..%2Fjobs.sqlite3").status_code == 404

    pack = client.get(job["urls"]["pack"])
    assert pack.status_code == 200 and pack.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(pack.content)) as zf:
        names = zf.namelist()
        assert sorted(n for n in names if n.endswith(".wav")) == [
            f"kick_{job['job_id'][:8]}_{i}.wav" for i in range(3)
        ]
        assert json.loads(zf.read("job.json"))["seed"] == 42


def test_candidates_over_http(make_client, tmp_path, wait_job):
    client = make_client()
    r = client.post("/v1/generate", json={"prompt": "kick", "count": 2, "seed": 42, "candidates": 2, **FAST})
    assert r.status_code == 202, r.text
    job = wait_job(client, r.json()["job_id"])
    assert job["state"] == "succeeded", job
    path = tmp_path / "c.wav"
    path.write_bytes(client.get(job["results"][0]["url"]).content)
    assert read_metadata(path)["candidates"] == "2"
    bad = client.post("/v1/generate", json={"prompt": "kick", "candidates": 9})
    assert bad.status_code == 422 and bad.json()["error"].startswith("candidates:")


@pytest.mark.parametrize("hears, prompt, kept, note", [
    ("kick", "kick", 0, None),
    ("snare", "kick", None, "candidates: for 3 of 3 clips of 'kick' none of 2 candidates was heard as its class"),
    ("kick", "808", None, "candidates: '808' names no drum class the judges know; its clips are not judged"),
], ids=["kept", "none-held", "not-judged"])
def test_a_job_says_which_candidate_each_clip_kept(make_client, tmp_path, wait_job, generator, monkeypatch,
                                                   hears, prompt, kept, note):
    """Each clip of a job with candidates names the one it kept (null: the model's own clip), in the job's results
    and its file, and the job's warnings say where none was kept, or that the prompt was not judged."""
    monkeypatch.setattr(generator, "_judges", (judge(hears),))
    client = make_client()
    r = client.post("/v1/generate", json={"prompt": prompt, "count": 3, "seed": 7, "candidates": 2, **FAST})
    job = wait_job(client, r.json()["job_id"])
    assert job["state"] == "succeeded", job
    assert [c["candidate"] for c in job["results"]] == [kept] * 3
    path = tmp_path / "c.wav"
    path.write_bytes(client.get(job["results"][2]["url"]).content)
    assert read_metadata(path)["candidate"] == ("none" if kept is None else str(kept))
    said = [w for w in job["warnings"] if w.startswith("candidates:")]
    assert said == ([] if note is None else [said[0]]) and (note is None or said[0].startswith(note)), said
    plain = wait_job(client, client.post("/v1/generate", json={"prompt": prompt, "seed": 7, **FAST}).json()["job_id"])
    assert "candidate" not in plain["results"][0]


def test_a_setting_the_model_cannot_honour_is_said_when_the_job_is_made(make_client, wait_job):
    """Timbre knobs sent to a model without them: the 202 says so, as the CLI and the Python API do."""
    client = make_client()
    r = client.post("/v1/generate", json={"prompt": "kick", "brightness": 0.9, **FAST})
    assert r.status_code == 202, r.text
    told = [w for w in r.json()["warnings"] if "no timbre knobs" in w]
    assert told and "brightness ignored" in told[0], r.json()
    assert told[0] in wait_job(client, r.json()["job_id"])["warnings"]


def test_flac_and_default_duration(make_client, generator, wait_job):
    client = make_client()
    job = wait_job(
        client,
        client.post("/v1/generate", json={"prompt": "snare", "steps": 2, "format": "flac"}).json()["job_id"],
    )
    assert job["state"] == "succeeded", job
    r = client.get(job["results"][0]["url"])
    assert r.headers["content-type"] == "audio/flac" and job["results"][0]["url"].endswith(".flac")
    wav, sr = sf.read(io.BytesIO(r.content))
    duration = generator.bundle.config.duration
    assert job["params"]["duration"] == duration and len(wav) == int(round(duration * sr))
    assert isinstance(job["seed"], int)  # a random seed was chosen and is reported


def test_unknown_keywords_are_reported(make_client):
    client = make_client(start=False)
    body = client.post("/v1/generate", json={"prompt": "kick zzblorp", **FAST}).json()
    assert any("zzblorp" in w for w in body["warnings"])
    assert client.get(f"/v1/jobs/{body['job_id']}").json()["warnings"] == body["warnings"]


def test_compatible_jobs_are_batched_and_match_unbatched(make_client, generator, wait_job):
    client = make_client(start=False)
    a = client.post("/v1/generate", json={"prompt": "kick", "count": 2, "seed": 11, **FAST}).json()
    b = client.post(
        "/v1/generate", json={"prompt": "snare", "count": 3, "seed": 13, **FAST}
    ).json()  # seeds 11..15
    c = client.post("/v1/generate", json={"prompt": "clap", "count": 1, **FAST}).json()
    d = client.post("/v1/generate", json={"prompt": "clap", "count": 1, "steps": 3, "duration": 0.5}).json()
    service = client.app.state.service
    service.start()
    try:
        jobs = [wait_job(client, j["job_id"]) for j in (a, b, c, d)]
    finally:
        service.stop()
    assert all(j["state"] == "succeeded" for j in jobs)
    assert jobs[0]["started_at"] == jobs[1]["started_at"] == jobs[2]["started_at"]  # one claim, one batch
    assert jobs[3]["started_at"] != jobs[0]["started_at"]  # other steps: its own batch
    for job, prompt, n in ((jobs[0], "kick", 2), (jobs[1], "snare", 3)):
        for k in range(n):
            wav, _ = sf.read(io.BytesIO(client.get(job["results"][k]["url"]).content), dtype="float32")
            assert_same_clip(wav, generator.generate(prompt, n=1, seed=job["seed"] + k, **FAST)[0].numpy())


def test_task_api_maps_onto_a_job(make_client, wait_job):
    client = make_client()
    task = {
        "id": "generate-audio-1",
        "type": "audio-generation",
        "modelType": "sampleforge",
        "storeResults": True,
        "data": {
            "operation": "generate",
            "prompt": "kick",
            "params": {"diffusionSteps": 2, "guidanceScale": 3.5, "duration": 0.5},
        },
    }
    r = client.post("/v1/tasks", json=task)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["id"] == "generate-audio-1" and body["status"] == "pending" and body["result"] is None
    job = wait_job(client, body["job_id"])
    assert (
        job["params"]["steps"] == 2 and job["params"]["cfg_scale"] == 3.5 and job["params"]["duration"] == 0.5
    )
    done = client.get(f"/v1/tasks/{body['job_id']}").json()
    assert (
        done["status"] == "completed"
        and done["result"]["data"]["sampleRate"] == job["results"][0]["sample_rate"]
    )
    assert client.get(done["result"]["data"]["audio"][0]).status_code == 200
    bad = client.post("/v1/tasks", json={**task, "data": {**task["data"], "operation": "transcribe"}})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "operation"
    too_many = client.post(
        "/v1/tasks", json={**task, "data": {**task["data"], "params": {"diffusionSteps": 10**6}}}
    )
    assert too_many.status_code == 422 and "diffusionSteps" in too_many.json()["detail"][0]["loc"]
    over = client.post(
        "/v1/tasks", json={**task, "data": {**task["data"], "params": {"diffusionSteps": 5000}}}
    )
    assert over.status_code == 422 and over.json()["detail"][0]["loc"] == [
        "body",
        "data",
        "params",
        "diffusionSteps",
    ]


def test_cancel_queued_then_delete(make_client):
    client = make_client(start=False)
    job = client.post("/v1/generate", json={"prompt": "kick", **FAST}).json()
    r = client.delete(f"/v1/jobs/{job['job_id']}")
    assert r.status_code == 200 and r.json() == {"id": job["job_id"], "state": "cancelled", "deleted": False}
    assert client.get(f"/v1/jobs/{job['job_id']}").json()["state"] == "cancelled"
    assert client.get(job["urls"]["audio"][0]).status_code == 409
    assert client.delete(f"/v1/jobs/{job['job_id']}").json()["deleted"] is True
    assert client.get(f"/v1/jobs/{job['job_id']}").status_code == 404


def test_cancel_running_job_stops_it_and_frees_the_worker(make_client, wait_job):
    client = make_client(max_steps=1000)
    long = client.post(
        "/v1/generate", json={"prompt": "kick", "count": 8, "steps": 1000, "duration": 2.0}
    ).json()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        state = client.get(f"/v1/jobs/{long['job_id']}").json()
        if state["state"] == "running" and state["progress"] > 0:
            break
        time.sleep(0.02)
    assert state["state"] == "running", state
    assert client.delete(f"/v1/jobs/{long['job_id']}").json()["state"] == "cancelled"
    short = client.post("/v1/generate", json={"prompt": "snare", **FAST}).json()
    assert (
        wait_job(client, short["job_id"], timeout=20)["state"] == "succeeded"
    )  # the worker let go of the long job
    final = client.get(f"/v1/jobs/{long['job_id']}").json()
    assert final["state"] == "cancelled" and final["results"] == []
    service = client.app.state.service
    assert not service.files.job_dir(long["job_id"]).exists()


@pytest.mark.parametrize("job_id", ["abc", "0" * 31, "A" * 32, "g" * 32, "0" * 33, "..", "%2e%2e", "0" * 32])
def test_anything_but_a_known_job_id_is_404(make_client, job_id):
    client = make_client(start=False)
    for suffix in ("", "/events", "/audio/0", "/audio/0.wav", "/pack.zip"):
        assert client.get(f"/v1/jobs/{job_id}{suffix}").status_code == 404, suffix
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 404
    assert client.get(f"/v1/tasks/{job_id}").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": "kick", "count": 17}, "count"),
        ({"prompt": "kick", "count": 0}, "count"),
        ({"prompt": "kick", "count": "lots"}, "count"),
        ({"prompt": "kick", "count": 2.5}, "count"),
        ({"prompt": "kick", "steps": 201}, "steps"),
        ({"prompt": "kick", "steps": 10**40}, "steps"),
        ({"prompt": "kick", "duration": 60}, "duration"),
        ({"prompt": "kick", "duration": -1}, "duration"),
        ({"prompt": "kick", "sampler": "nope"}, "sampler"),
        ({"prompt": "kick", "seed": -1}, "seed"),
        ({"prompt": "kick", "format": "mp3"}, "format"),
        ({"prompt": "kick", "cfg_scale": [1]}, "cfg_scale"),
        ({"prompt": "kick", "colour": "red"}, "colour"),
        ({"prompt": "   "}, "prompt"),
        ({"prompt": "x" * 301}, "prompt"),
        ({}, "prompt"),
    ],
)
def test_bad_values_are_422_naming_the_field(make_client, body, field):
    client = make_client(start=False)
    r = client.post("/v1/generate", json=body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert any(d["loc"][-1] == field for d in detail), detail
    assert field in r.json()["error"]


@pytest.mark.parametrize(
    ("path", "body", "field", "said"),
    [  # beyond the schema's own bounds (1000 clips, 1000 steps, 600 s): the client hears this server's limit
        ("/v1/generate", {"prompt": "kick", "count": 5000}, "count", "at most 16 clips per job"),
        ("/v1/generate", {"prompt": "kick", "count": 17}, "count", "at most 16 clips per job"),
        ("/v1/generate", {"prompt": "kick", "steps": 5000}, "steps", "at most 200 steps"),
        ("/v1/generate", {"prompt": "kick", "duration": 5000}, "duration", "must be between 0.25 and 4.0 seconds"),
        ("/v1/tasks", {"data": {"prompt": "kick", "params": {"diffusionSteps": 5000}}}, "diffusionSteps",
         "at most 200 steps"),
        ("/v1/vary", {"audio": "AAAA", "count": 5000}, "count", "at most 64 clips per request"),
        ("/v1/morph", {"from_prompt": "kick", "to_prompt": "snare", "morph_steps": 5000}, "morph_steps",
         "at most 64 clips per request"),
    ],
)
def test_a_schema_bound_is_said_as_this_servers_limit(make_client, path, body, field, said):
    client = make_client(start=False)
    r = client.post(path, json=body)
    assert r.status_code == 422, r.text
    mine = [d for d in r.json()["detail"] if d["loc"][-1] == field]
    assert mine and mine[0]["msg"].startswith(said), r.json()
    assert "1000" not in r.json()["error"] and "600" not in r.json()["error"]
    low = client.post("/v1/generate", json={"prompt": "kick", "count": 0}).json()
    assert "16" not in low["error"] and "count" in low["error"]  # a lower bound is the schema's own


@pytest.mark.parametrize(
    "raw",
    [
        b'{"prompt": "kick", "cfg_scale": NaN}',
        b'{"prompt": "kick", "cfg_scale": Infinity}',
        b'{"prompt": "kick", "duration": 1e999}',
        b'{"prompt": "kick", "seed": -Infinity}',
    ],
)
def test_non_finite_numbers_are_422_not_500(make_client, raw):
    client = make_client(start=False)
    r = client.post("/v1/generate", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    json.loads(r.text)  # strict JSON (no NaN echoed back)


def test_malformed_json_and_wrong_shapes_are_422(make_client):
    client = make_client(start=False)
    for raw in (b"{", b"[1, 2]", b'"kick"', b"null", b"\xff\xfe"):
        r = client.post("/v1/generate", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 422, (raw, r.text)
    r = client.post("/v1/generate", content=b'{"prompt": "kick",}', headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"].startswith("body: not valid JSON at character 18: Expecting")


def test_body_size_limit_is_413(make_client):
    client = make_client(start=False, max_body_bytes=1000)
    r = client.post("/v1/generate", json={"prompt": "kick " * 400})
    assert r.status_code == 413 and "1000 bytes" in r.json()["detail"]

    def chunks():  # no Content-Length: counted while streaming
        for _ in range(20):
            yield b" " * 100

    r = client.post("/v1/generate", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_full_queue_is_429_with_retry_after(make_client):
    client = make_client(start=False, max_queue=2)
    for _ in range(2):
        assert client.post("/v1/generate", json={"prompt": "kick", **FAST}).status_code == 202
    r = client.post("/v1/generate", json={"prompt": "kick", **FAST})
    assert (
        r.status_code == 429 and int(r.headers["retry-after"]) >= 1 and "queue is full" in r.json()["detail"]
    )
    task = {"type": "audio-generation", "data": {"operation": "generate", "prompt": "kick"}}
    assert client.post("/v1/tasks", json=task).status_code == 429


def test_bearer_token(make_client):
    client = make_client(start=False, token="s3cret")
    body = {"prompt": "kick", **FAST}
    assert client.post("/v1/generate", json=body).status_code == 401
    r = client.post("/v1/generate", json=body, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    ok = client.post("/v1/generate", json=body, headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 202
    job_id = ok.json()["job_id"]
    for path in (
        f"/v1/jobs/{job_id}",
        f"/v1/jobs/{job_id}/pack.zip",
        "/v1/models",
        "/v1/vocab",
        f"/v1/tasks/{job_id}",
    ):
        assert client.get(path).status_code == 401, path
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 401
    assert client.get(f"/v1/jobs/{job_id}", headers={"Authorization": "bearer s3cret"}).status_code == 200
    # public: probes, the page, its assets, the API docs
    for path in ("/v1/health/live", "/", "/static/app.js", "/docs", "/openapi.json"):
        assert client.get(path).status_code == 200, path
    assert client.get("/v1/health").status_code == 503  # workers are off in this test: not ready


def test_health_models_vocab(make_client, generator):
    client = make_client()
    h = client.get("/v1/health")
    assert h.status_code == 200
    body = h.json()
    assert body["ready"] and body["mode"] == "embedded" and body["workers"]["alive"] == 1
    assert body["model"] == {"name": generator.name, "loaded": True, "sample_rate": generator.sample_rate}
    models = client.get("/v1/models").json()
    m = models["models"][0]
    assert models["default"] == generator.name and "ddim" in m["samplers"] and m["limits"]["max_count"] == 16
    assert m["settings"] == ["candidates"]  # what this model takes that others refuse
    vocab = client.get("/v1/vocab").json()
    assert {k["word"]: k["count"] for k in vocab["keywords"]} == generator.vocab()
    assert {"kick", "snare", "closed hat", "open hat", "clap", "tom", "crash"} <= {
        c["label"] for c in vocab["classes"]
    }


def test_events_stream_ends_with_done(make_client):
    client = make_client()
    job = client.post("/v1/generate", json={"prompt": "kick", **FAST}).json()
    with client.stream("GET", job["urls"]["events"]) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        text = "".join(r.iter_text())
    events = [block for block in text.split("\n\n") if block.startswith("event:")]
    assert events[-1].startswith("event: done")
    final = json.loads(events[-1].split("data: ", 1)[1])
    assert final["state"] == "succeeded" and len(final["results"]) == 1


def test_start_up_requeues_interrupted_jobs(make_client, wait_job):
    """What a restart after kill -9 finds: a job still marked running; it runs again (attempt 2)."""
    client = make_client(start=False)
    service = client.app.state.service
    job = client.post("/v1/generate", json={"prompt": "kick", **FAST}).json()
    queued = client.post("/v1/generate", json={"prompt": "snare", **FAST, "steps": 3}).json()
    assert service.store.claim("dead-worker", 1, 60, leader=job["job_id"])  # the crashed process held it
    service.start()
    try:
        first, second = wait_job(client, job["job_id"]), wait_job(client, queued["job_id"])
    finally:
        service.stop()
    assert first["state"] == "succeeded" and first["attempts"] == 2
    assert second["state"] == "succeeded" and second["attempts"] == 1


def test_second_embedded_server_on_one_storage_is_refused(make_service):
    from sampleforge.errors import SampleforgeError

    a = make_service()
    a.start()
    try:
        with pytest.raises(SampleforgeError, match="used by another"):
            make_service().start()
    finally:
        a.stop()


def test_cli_refuses_a_storage_in_use_and_bad_broker_urls(make_service, debug_model, tmp_path, capsys, port):
    from sampleforge.cli import main

    running = make_service(storage=tmp_path / "busy")
    running.start()
    try:
        code = main(["serve", "--model", str(debug_model), "--storage", str(tmp_path / "busy"), "--port", port])
    finally:
        running.stop()
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("{")]  # minus JSON logs
    assert code == 2 and len(err) == 1 and "used by another `sampleforge serve`" in err[0]
    assert main(["worker", "--broker", "amqp://x", "--storage", str(tmp_path), "--model", str(debug_model)]) == 2
    assert "redis://" in capsys.readouterr().err
    for url, said in (("redis://127.0.0.1:notaport/0", "Port could not be cast"), ("redis:///0", "no host"),
                      ("redis://127.0.0.1:6379/zero", "the database must be a number")):
        for command in (["worker"], ["serve", "--port", port]):  # before a model loads: the server would take jobs
            assert main([*command, "--broker", url, "--storage", str(tmp_path / "s"),
                         "--model", "no-such-model"]) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and f"--broker {url}: {said}" in err[0], err


def test_cli_passes_precision_to_the_generator(debug_model):
    from sampleforge.cli import build_parser
    from sampleforge.serve.commands import load_generator

    args = build_parser().parse_args(["serve", "--model", str(debug_model), "--precision", "bf16", "--device", "cpu"])
    assert load_generator(args.model[0], args).precision == "bf16"
    bad = build_parser().parse_args(["worker", "--broker", "redis://x", "--precision", "fp8"])
    with pytest.raises(UserInputError, match="--precision"):
        load_generator(str(debug_model), bad)


def test_generate_takes_length_as_the_cli_does(make_client, generator, wait_job, tmp_path):
    """``length``: 'auto' trims each clip to its sound, seconds cut or pad it; past --max-duration it is refused."""
    client = make_client()
    whole = wait_job(client, client.post("/v1/generate", json={"prompt": "kick", "seed": 4, **FAST}).json()["job_id"])
    cut = wait_job(client, client.post("/v1/generate", json={"prompt": "kick", "seed": 4, "length": 0.1,
                                                             **FAST}).json()["job_id"])
    auto = client.post("/v1/generate", json={"prompt": "kick", "seed": 4, "length": "auto", **FAST}).json()
    auto = wait_job(client, auto["job_id"])
    sr = generator.sample_rate
    assert whole["results"][0]["samples"] == int(round(0.5 * sr)) and cut["results"][0]["samples"] == int(0.1 * sr)
    assert auto["results"][0]["samples"] <= whole["results"][0]["samples"]
    wav = sf.read(io.BytesIO(client.get(cut["results"][0]["url"]).content), dtype="float32")[0]
    full = sf.read(io.BytesIO(client.get(whole["results"][0]["url"]).content), dtype="float32")[0]
    assert wav.shape == (int(0.1 * sr),) and np.allclose(wav[: int(0.09 * sr)], full[: int(0.09 * sr)], atol=1e-6)
    (tmp_path / "cut.wav").write_bytes(client.get(cut["results"][0]["url"]).content)
    assert read_metadata(tmp_path / "cut.wav")["length"] == "0.1"
    for bad in ("forever", -1, 10_000):
        r = client.post("/v1/generate", json={"prompt": "kick", "length": bad, **FAST})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "length"], r.text


def test_a_wrong_typed_value_is_said_once_in_our_words(make_client) -> None:
    """pydantic wrapped our message ("steps: Value error, steps must be ...")."""
    client = make_client(start=False)
    r = client.post("/v1/generate", json={"prompt": "kick", "steps": "4"})
    error = r.json()["error"]
    assert r.status_code == 422 and error == "steps: must be an integer (at most 200 steps), got '4'", error
    assert r.json()["detail"][0]["msg"].startswith("must be an integer")
    count = client.post("/v1/generate", json={"prompt": "kick", "count": True}).json()["error"]
    assert count == "count: must be an integer (at most 16 clips per job), got True", count  # the server's, not 1000
    duration = client.post("/v1/generate", json={"prompt": "kick", "duration": "2"}).json()["error"]
    assert duration == "duration: must be a number (between 0.25 and 4.0 seconds), got '2'", duration
    cfg = client.post("/v1/generate", json={"prompt": "kick", "cfg_scale": "x"}).json()["error"]
    assert cfg.startswith("cfg_scale: must be a finite number between 0 and 30") and "Value error" not in cfg, cfg


def test_a_storage_whose_job_database_is_not_one_is_one_line(debug_model, tmp_path, capsys, port) -> None:
    """It was a traceback from sqlite3 (after the model loaded), for serve and worker alike."""
    from sampleforge.cli import main
    from sampleforge.errors import UserInputError
    from sampleforge.serve.jobstore import JobStore

    text, folder = tmp_path / "text", tmp_path / "folder"
    text.mkdir()
    (text / "jobs.sqlite3").write_text("this is not a database, only text long enough to look like a header ......")
    (folder / "jobs.sqlite3").mkdir(parents=True)
    for storage, said in ((text, "file is not a database"), (folder, "a folder where the job database goes")):
        for command in (["serve", "--port", port], ["worker", "--broker", "redis://127.0.0.1:1/0"]):
            assert main([*command, "--storage", str(storage), "--model", "no-such-model"]) == 2  # before the model
            err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("{")]
            assert len(err) == 1 and f"--storage {storage}: " in err[0] and said in err[0], err
    with pytest.raises(UserInputError, match="cannot open it as the job database"):
        JobStore(text / "jobs.sqlite3")
    good = JobStore(tmp_path / "good" / "jobs.sqlite3")  # a store in use passes the check
    from sampleforge.serve.jobstore import check_database

    check_database(good.path)
