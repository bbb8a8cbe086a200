"""HTTP: POST /v1/vary, /v1/morph, /v1/kit/pad and /v1/kit queue jobs on the debug model (in-process app)."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sampleforge.audio.io import read_metadata

FAST = {"steps": 2}


_CLIPS: dict[tuple[str, int], np.ndarray] = {}


def clip_b64(generator, prompt: str = "snare", seed: int = 3) -> str:
    """A generated clip as a base64 float WAV (made once per prompt and seed)."""
    if (prompt, seed) not in _CLIPS:
        _CLIPS[(prompt, seed)] = generator.generate(prompt, steps=2, seed=seed).numpy()[0]
    wav = _CLIPS[(prompt, seed)]
    buf = io.BytesIO()
    sf.write(buf, wav, 44100, format="WAV", subtype="FLOAT")
    return base64.b64encode(buf.getvalue()).decode()


def run(client, path: str, body: dict, wait_job) -> dict:
    """POST a workflow request, expect 202 and a Location, wait for the job; returns the finished job."""
    r = client.post(path, json=body)
    assert r.status_code == 202, r.text
    queued = r.json()
    assert queued["state"] == "queued" and r.headers["location"] == f"/v1/jobs/{queued['job_id']}"
    job = wait_job(client, queued["job_id"])
    assert job["state"] == "succeeded", job
    return job


def audio_of(client, result: dict, tmp_path: Path) -> tuple[np.ndarray, dict[str, str], str]:
    """Download one result file (its URL) -> (audio, metadata inside it, PCM subtype)."""
    r = client.get(result["url"])
    assert r.status_code == 200, r.text
    path = tmp_path / result["name"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(r.content)
    wav, _ = sf.read(str(path), dtype="float32")
    return wav, read_metadata(path), sf.info(str(path)).subtype


def test_vary_queues_variations_with_provenance(make_client, generator, wait_job, tmp_path: Path) -> None:
    client = make_client()
    job = run(client, "/v1/vary", {"audio": clip_b64(generator), "prompt": "snare", "strength": 0.4, "count": 2,
                                   "seed": 9, "format": "wav16", "length": "auto", **FAST}, wait_job)
    assert job["operation"] == "vary" and job["request"]["settings"]["strength"] == 0.4
    assert [c["seed"] for c in job["results"]] == [9, 10] and job["urls"]["audio"][0].endswith("/audio/0.wav")
    wav, meta, subtype = audio_of(client, job["results"][0], tmp_path)
    assert subtype == "PCM_16" and 0 < wav.shape[0] <= 88200
    assert meta["operation"] == "vary" and meta["strength"] == "0.4" and meta["seed"] == "9"
    zero = run(client, "/v1/vary", {"audio": clip_b64(generator), "strength": 0.0, "count": 1, **FAST}, wait_job)
    direct = generator.vary(generator.generate("snare", steps=2, seed=3).numpy()[0], strength=0.0, steps=2)
    got, _, _ = audio_of(client, zero["results"][0], tmp_path)
    assert np.abs(got - direct.audio.numpy()[0]).max() < 1e-4  # the same VAE round trip


@pytest.mark.parametrize("body, field", [
    ({"audio": "%%%"}, "audio"),
    ({"audio": base64.b64encode(b"RIFF not really").decode()}, "audio"),
    ({"strength": 2.0}, "strength"),
    ({"count": 1000}, "count"),
    ({"steps": 100000}, "steps"),
    ({"sampler": "nope"}, "sampler"),
    ({"format": "mp3"}, "format"),
    ({"length": "forever"}, "length"),
    ({"bogus": 1}, "bogus"),
    ({"model": "not-served"}, "model"),
    ({"seed": 2**31 - 1, "count": 2}, "seed"),
])
def test_vary_bad_input_is_422_naming_the_field(make_client, generator, body: dict, field: str) -> None:
    client = make_client(start=False)
    payload = {"audio": clip_b64(generator), **FAST, **body}
    r = client.post("/v1/vary", json=payload)
    assert r.status_code == 422, r.text
    assert field in json.dumps(r.json())


@pytest.mark.parametrize("raw", [b"RIFF not really", b"\x00" * 3, b"fLaC" + b"\x00" * 40], ids=["riff", "zeros", "flac"])
def test_an_upload_that_is_not_audio_names_no_server_path(make_client, raw: bytes) -> None:
    """The clip is decoded from a temporary file: its path is the server's business, not the client's."""
    r = make_client(start=False).post("/v1/vary", json={"audio": base64.b64encode(raw).decode(), **FAST})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "audio"], r.text
    assert "not readable audio" in r.text and "/" not in r.json()["error"] and "upload" not in r.text, r.text


def test_upload_limit_is_separate_from_the_json_limit(make_client, generator) -> None:
    client = make_client(start=False, max_upload_bytes=10_000)
    r = client.post("/v1/vary", json={"audio": clip_b64(generator), **FAST})
    assert r.status_code == 413
    r = client.post("/v1/generate", json={"prompt": "kick " * 5000})
    assert r.status_code == 413  # the ordinary limit still holds elsewhere


def _wav_b64(wav: np.ndarray, rate: int, fmt: str = "WAV", subtype: str = "PCM_16") -> str:
    buf = io.BytesIO()
    sf.write(buf, wav, rate, format=fmt, subtype=subtype)
    return base64.b64encode(buf.getvalue()).decode()


@pytest.mark.parametrize(("wav", "rate", "fmt"), [
    (np.random.default_rng(0).uniform(-0.5, 0.5, 400), 1, "WAV"),  # 6.7 minutes in 800 bytes: GBs once resampled
    (np.full((20_000, 8), 0.25), 300, "FLAC"),  # 160,000 samples in a few KB of FLAC
], ids=["1-hz-wav", "8-channel-flac"])
def test_an_upload_that_decodes_too_long_is_a_422_before_it_is_decoded(make_client, wav, rate: int, fmt: str,
                                                                        monkeypatch) -> None:
    from sampleforge.serve.routes import workflow

    monkeypatch.setattr(workflow, "MAX_UPLOAD_VALUES", 100_000)  # the second clip is 66 s: over by its values
    monkeypatch.setattr(workflow, "read_audio", lambda *a: pytest.fail("decoded"))
    client = make_client(start=False)
    r = client.post("/v1/vary", json={"audio": _wav_b64(wav, rate, fmt), **FAST})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "audio"], r.text
    assert "at most" in r.json()["error"]
    r = client.post("/v1/morph", json={"from_audio": _wav_b64(wav, rate, fmt), "to_audio": _wav_b64(wav, rate, fmt),
                                       **FAST})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "from_audio"], r.text
    assert not list((client.app.state.service.files.results).iterdir())  # nothing stored


def test_morph_endpoints_equal_the_sources(make_client, generator, wait_job, tmp_path: Path) -> None:
    client = make_client()
    job = run(client, "/v1/morph", {"from_prompt": "kick", "to_prompt": "snare", "from_seed": 4, "morph_steps": 3,
                                    "format": "wav32f", **FAST}, wait_job)
    assert job["request"]["to_seed"] == 5 and [c["t"] for c in job["results"]] == [0.0, 0.5, 1.0]
    first, meta, _ = audio_of(client, job["results"][0], tmp_path)
    np.testing.assert_allclose(first, generator.generate("kick", steps=2, seed=4).numpy()[0], atol=1e-4)
    assert meta["operation"] == "morph" and meta["t"] == "0.0000"
    clips = run(client, "/v1/morph", {"from_audio": clip_b64(generator), "to_audio": clip_b64(generator, "kick", 1),
                                      "strength": 0.0, "morph_steps": 2, **FAST}, wait_job)
    assert len(clips["results"]) == 2 and clips["request"]["clips"] is True
    r = client.post("/v1/morph", json={"from_audio": clip_b64(generator), **FAST})
    assert r.status_code == 422 and "to_audio" in r.text


def _upload_sha256(b64: str, tmp_path: Path) -> str:
    """What `sampleforge vary` records as ``input_sha256`` for a file of these (base64) bytes."""
    from sampleforge.workflow import load_input

    path = tmp_path / "upload.wav"
    path.write_bytes(base64.b64decode(b64))
    return load_input(path, 44100)[1]


def test_vary_and_morph_files_carry_the_provenance_the_cli_writes(make_client, generator, wait_job,
                                                                   tmp_path: Path) -> None:
    """A variation names its input and the SHA-256 of the uploaded bytes; a morph its ends' prompts (and, for
    clips, its inputs and strength), as the files of `sampleforge vary` and `sampleforge morph` do."""
    client = make_client()
    snare, kick = clip_b64(generator), clip_b64(generator, "kick", 1)
    vary = run(client, "/v1/vary", {"audio": snare, "strength": 0.3, "count": 1, "seed": 2, **FAST}, wait_job)
    _, meta, _ = audio_of(client, vary["results"][0], tmp_path / "vary")
    assert meta["input"] == "input_audio.wav" and meta["input_sha256"] == _upload_sha256(snare, tmp_path)
    morph = run(client, "/v1/morph", {"from_prompt": "kick", "to_prompt": "snare", "morph_steps": 2, **FAST},
                wait_job)
    _, meta, _ = audio_of(client, morph["results"][1], tmp_path / "morph")
    assert (meta["prompt_a"], meta["prompt_b"]) == ("kick", "snare") and "input_a" not in meta
    clips = run(client, "/v1/morph", {"from_audio": snare, "to_audio": kick, "from_prompt": "tight", "strength": 0.5,
                                      "morph_steps": 2, **FAST}, wait_job)
    _, meta, _ = audio_of(client, clips["results"][0], tmp_path / "clips")
    assert (meta["prompt_a"], meta["prompt_b"], meta["strength"]) == ("tight", "", "0.5")
    assert meta["input_a"] == f"input_from_audio.wav@{_upload_sha256(snare, tmp_path)}"
    assert meta["input_b"] == f"input_to_audio.wav@{_upload_sha256(kick, tmp_path)}"


@pytest.mark.parametrize("ends", [{"from_audio": "", "to_audio": ""}, {"from_audio": "", "to_audio": None}])
def test_morph_with_empty_clips_is_a_422_not_a_prompt_morph(make_client, ends: dict) -> None:
    r = make_client(start=False).post("/v1/morph", json={**ends, **FAST})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "from_audio"], r.text


@pytest.mark.parametrize(("ends", "blank"), [
    ({"from_prompt": "", "to_prompt": "snare"}, ["from_prompt"]),
    ({"from_prompt": "kick", "to_prompt": "   "}, ["to_prompt"]),
    ({"from_prompt": " \t", "to_prompt": "\n"}, ["from_prompt", "to_prompt"]),
    ({"to_prompt": "snare"}, ["from_prompt"]),
    ({}, ["from_prompt", "to_prompt"]),
])
def test_a_prompt_morph_needs_both_prompts(make_client, ends: dict, blank: list) -> None:
    """Each end of a morph without clips is made from its prompt, as /v1/generate makes it: that refuses an empty
    prompt, so does the morph (with clips the prompts only steer them, as vary's, and may be empty)."""
    client = make_client(start=False)
    r = client.post("/v1/morph", json={**ends, **FAST})
    assert r.status_code == 422 and [d["loc"] for d in r.json()["detail"]] == [["body", f] for f in blank], r.text
    said = client.post("/v1/generate", json={"prompt": "  "}).json()["detail"][0]
    assert {(d["msg"], d["type"]) for d in r.json()["detail"]} == {(said["msg"], said["type"])}
    assert client.get("/v1/health").json()["queue"]["queued"] == 0


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/kit", {"pieces": ["kick"]}), ("/v1/kit/pad", {"piece": "kick", "seed": 1}),
])
@pytest.mark.parametrize("prompt", ["", "   "])
def test_a_kit_prompt_may_be_empty(make_client, path: str, body: dict, prompt: str) -> None:
    """A kit's prompt is its character ('dusty 808'); each piece adds its own words ('kick'): a plain kit needs none."""
    r = make_client(start=False).post(path, json={**body, "prompt": prompt, **FAST})
    assert r.status_code == 202 and r.json()["prompt"] == "", r.text


def test_pads_and_the_kit_zip_hold_the_same_sounds(make_client, wait_job, tmp_path: Path) -> None:
    client = make_client()
    pads = {}
    for piece in ("kick", "open_hat"):
        job = run(client, "/v1/kit/pad", {"prompt": "dusty 808", "piece": piece, "seed": 11, "format": "wav24",
                                          **FAST}, wait_job)
        pads[piece] = job["results"][0]
    assert pads["kick"]["note"] == 36 and pads["kick"]["prompt"] == "kick dusty 808"
    assert pads["kick"]["kit_seed"] == 11 and pads["kick"]["name"] == "kick.wav"
    rerolled = run(client, "/v1/kit/pad", {"prompt": "dusty 808", "piece": "kick", "seed": 11,
                                           "pad_seed": pads["kick"]["pad_seed"] + 1, **FAST}, wait_job)
    assert client.get(rerolled["results"][0]["url"]).content != client.get(pads["kick"]["url"]).content
    kit = run(client, "/v1/kit", {"prompt": "dusty 808", "pieces": ["kick", "open_hat"], "seed": 11,
                                  "pad_seeds": {p: v["pad_seed"] for p, v in pads.items()}, **FAST}, wait_job)
    assert [(r["piece"], r["name"]) for r in kit["results"]] == [("kick", "kick.wav"), ("open_hat", "open_hat.wav")]
    r = client.get(kit["urls"]["pack"])
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert 'filename="dusty_808.zip"' in r.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        names = sorted(z.namelist())
        assert names == sorted(f"dusty_808/{n}" for n in ("kick.wav", "open_hat.wav", "kit.sfz", "kit.dspreset",
                                                          "drumkit.xml", "gm_map.csv", "kit.json"))
        z.extractall(tmp_path)
    for piece, pad in pads.items():
        pad_wav, _, _ = audio_of(client, pad, tmp_path / "pads")
        kit_wav, _ = sf.read(str(tmp_path / "dusty_808" / f"{piece}.wav"), dtype="float32")
        n = min(len(pad_wav), len(kit_wav))
        assert abs(len(pad_wav) - len(kit_wav)) <= 1 and np.abs(pad_wav[:n] - kit_wav[:n]).max() < 1e-3
        in_kit = next(r for r in kit["results"] if r["piece"] == piece)
        assert client.get(in_kit["url"]).content == (tmp_path / "dusty_808" / f"{piece}.wav").read_bytes()


def _kit_names(files: dict[str, bytes]) -> dict[str, str]:
    """The kit name each preset of a kit folder ({file name: bytes}) says."""
    import xml.etree.ElementTree as ET

    hydrogen = ET.fromstring(files["drumkit.xml"])
    label = ET.fromstring(files["kit.dspreset"]).find("ui/tab/label")
    assert label is not None
    return {"kit.json": json.loads(files["kit.json"])["name"],
            "drumkit.xml": hydrogen.findtext("{http://www.hydrogen-music.org/drumkit}name") or "",
            "kit.dspreset": label.get("text", "").split(" (", 1)[0],
            "kit.sfz": files["kit.sfz"].decode().splitlines()[0].removeprefix("// ").split(": prompt", 1)[0]}


def test_a_kit_keeps_its_name_and_only_its_folder_is_file_name_safe(make_client, generator, wait_job,
                                                                    tmp_path: Path) -> None:
    """As `sampleforge kit --name "Dusty Kit"` and make_kit(name="Dusty Kit"): every preset, kit.json and each
    sample say "Dusty Kit"; the job's kit folder, the zip's root folder and its download name are dusty_kit."""
    from sampleforge.workflow import make_kit

    client = make_client()
    body = {"name": "Dusty Kit", "prompt": "dusty 808", "pieces": ["kick"], "seed": 5, "format": "wav16", **FAST}
    job = run(client, "/v1/kit", body, wait_job)
    r = client.get(job["urls"]["pack"])
    assert 'filename="dusty_kit.zip"' in r.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        assert {n.split("/", 1)[0] for n in z.namelist()} == {"dusty_kit"}
        files = {n.split("/", 1)[1]: z.read(n) for n in z.namelist()}
    assert _kit_names(files) == dict.fromkeys(("kit.json", "drumkit.xml", "kit.dspreset", "kit.sfz"), "Dusty Kit")
    _, meta, _ = audio_of(client, job["results"][0], tmp_path)
    assert meta["kit"] == "Dusty Kit"
    stored = tmp_path / "storage" / "results" / job["job_id"] / "kit"
    assert [p.name for p in stored.iterdir()] == ["dusty_kit"]
    cli = make_kit(tmp_path / "cli", generator=generator, name="Dusty Kit", prompt="dusty 808", pieces="kick", seed=5,
                   format="wav16", steps=2, warn=lambda line: None)
    assert _kit_names({n: (cli / n).read_bytes() for n in files if not n.endswith(".wav")}) == _kit_names(files)


def test_a_kit_name_never_makes_a_path_outside_the_job(make_client, wait_job, tmp_path: Path) -> None:
    client = make_client()
    job = run(client, "/v1/kit", {"name": "../../Escape/..", "pieces": ["kick"], "seed": 5, **FAST}, wait_job)
    folder = tmp_path / "storage" / "results" / job["job_id"]
    assert [p.name for p in (folder / "kit").iterdir()] == ["escape"]
    assert [p for p in tmp_path.rglob("*") if "scape" in p.name.lower()] == [folder / "kit" / "escape"]
    with zipfile.ZipFile(io.BytesIO(client.get(job["urls"]["pack"]).content)) as z:
        assert {n.split("/", 1)[0] for n in z.namelist()} == {"escape"}
        assert json.loads(z.read("escape/kit.json"))["name"] == "../../Escape/.."
    r = client.post("/v1/kit", json={"name": "Dusty\nKit", "pieces": ["kick"], **FAST})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "name"], r.text


def test_kits_and_pads_take_candidates(make_client, wait_job, generator, monkeypatch, tmp_path: Path) -> None:
    """A pad says which candidate it kept, and its file too; a kit's kit.json says it for each sample."""
    from tests.judges import judge

    monkeypatch.setattr(generator, "_judges", (judge("kick"),))
    client = make_client()
    pad = run(client, "/v1/kit/pad", {"piece": "kick", "seed": 4, "candidates": 2, **FAST}, wait_job)
    assert pad["results"][0]["candidate"] == 0
    wav = tmp_path / "pad.wav"
    wav.write_bytes(client.get(pad["results"][0]["url"]).content)
    assert read_metadata(wav)["candidate"] == "0" and read_metadata(wav)["candidates"] == "2"
    kit = run(client, "/v1/kit", {"pieces": ["kick", "snare"], "seed": 4, "candidates": 2, **FAST}, wait_job)
    assert any("of 'snare' none of 2 candidates" in w for w in kit["warnings"]), kit["warnings"]
    with zipfile.ZipFile(io.BytesIO(client.get(kit["urls"]["pack"]).content)) as z:
        (made,) = [json.loads(z.read(n)) for n in z.namelist() if n.endswith("kit.json")]
    assert [(s["piece"], s["candidate"]) for s in made["samples"]] == [("kick", 0), ("snare", None)]
    assert client.post("/v1/kit", json={"pieces": ["kick"], "candidates": 9}).status_code == 422


def test_kits_and_pads_keep_their_own_defaults(make_client, wait_job, tmp_path: Path) -> None:
    """A kit left without format or length is 24-bit PCM at each sound's natural length, a pad 16-bit: not the
    generate defaults (32-bit float, the model's 2 s)."""
    client = make_client()
    pad = run(client, "/v1/kit/pad", {"prompt": "dusty 808", "piece": "closed_hat", "seed": 11, **FAST}, wait_job)
    wav, _, subtype = audio_of(client, pad["results"][0], tmp_path / "pad")
    assert subtype == "PCM_16" and len(wav) < 2 * 44100
    kit = run(client, "/v1/kit", {"prompt": "dusty 808", "pieces": ["closed_hat"], "seed": 11, **FAST}, wait_job)
    wav, _, subtype = audio_of(client, kit["results"][0], tmp_path / "kit")
    assert subtype == "PCM_24" and len(wav) < 2 * 44100


@pytest.mark.parametrize("body, field", [
    ({"piece": "gong"}, "piece"),
    ({"seed": -1}, "seed"),
    ({"relatedness": 3}, "relatedness"),
])
def test_pad_bad_input(make_client, body: dict, field: str) -> None:
    client = make_client(start=False)
    r = client.post("/v1/kit/pad", json={"piece": "kick", "seed": 1, **FAST, **body})
    assert r.status_code == 422 and field in r.text


def test_kit_bad_input(make_client) -> None:
    client = make_client(start=False)
    r = client.post("/v1/kit", json={"pieces": ["kick", "gong"], **FAST})
    assert r.status_code == 422 and "gong" in r.text
    r = client.post("/v1/kit", json={"pieces": ["kick"], "pad_seeds": {"snare": 1}, **FAST})
    assert r.status_code == 422 and "pad_seeds" in r.text
    r = client.post("/v1/kit", json={"pieces": ["kick"], "pad_seeds": {"kick": -3}, **FAST})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "pad_seeds"], r.text
    r = client.post("/v1/kit", json={"pieces": ["kick"], "pad_seeds": {"kick": "7"}, **FAST})
    assert r.status_code == 422 and "pad_seeds" in r.text
    r = client.post("/v1/kit", json={"round_robins": 8, "velocity_layers": 5, **FAST})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "pieces"], r.text
    assert "round_robins x velocity_layers" in r.text
    r = client.post("/v1/morph", json={"from_prompt": "kick", "to_prompt": "snare", "morph_steps": 1000, **FAST})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "morph_steps"], r.text


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/v1/kit/pad", {"seed": "1"}, "seed"), ("/v1/kit/pad", {"seed": True}, "seed"),
    ("/v1/kit/pad", {"pad_seed": "2"}, "pad_seed"), ("/v1/kit/pad", {"length": True}, "length"),
    ("/v1/morph", {"from_seed": "1"}, "from_seed"), ("/v1/morph", {"from_seed": 1.0}, "from_seed"),
    ("/v1/morph", {"to_seed": True}, "to_seed"), ("/v1/kit", {"name": 5}, "name"),
])
def test_workflow_routes_coerce_no_types(make_client, path: str, body: dict, field: str) -> None:
    client = make_client(start=False)
    base = {"piece": "kick", "seed": 1} if path == "/v1/kit/pad" else {"pieces": ["kick"]} if path == "/v1/kit" else {}
    r = client.post(path, json={**base, **FAST, **body})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][:2] == ["body", field], r.text


def test_workflow_whole_numbers_are_still_numbers(make_client) -> None:
    client = make_client(start=False)
    r = client.post("/v1/kit/pad", json={"piece": "kick", "seed": 1, "length": 1, "relatedness": 1, **FAST})
    assert r.status_code == 202, r.text


def test_token_protects_the_workflow_routes(make_client, generator) -> None:
    client = make_client(start=False, token="s3cret")
    assert client.post("/v1/kit/pad", json={"piece": "kick", "seed": 1, **FAST}).status_code == 401
    ok = client.post("/v1/kit/pad", json={"piece": "kick", "seed": 1, **FAST},
                     headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 202


@pytest.mark.parametrize(("fmt", "subtype"), [("wav16", "PCM_16"), ("wav24", "PCM_24"), ("flac", "PCM_24")])
def test_generate_jobs_write_every_format(make_client, wait_job, fmt: str, subtype: str) -> None:
    client = make_client()
    assert fmt in client.get("/v1/models").json()["models"][0]["formats"]
    r = client.post("/v1/generate", json={"prompt": "kick", "format": fmt, **FAST})
    assert r.status_code == 202, r.text
    job = wait_job(client, r.json()["job_id"])
    assert job["state"] == "succeeded", job
    clip = client.get(f"/v1/jobs/{job['job_id']}/audio/0")
    ext = "flac" if fmt == "flac" else "wav"
    assert clip.headers["content-type"] == f"audio/{ext}" and f'_0.{ext}"' in clip.headers["content-disposition"]
    assert sf.info(io.BytesIO(clip.content)).subtype == subtype


def test_an_unknown_format_is_a_422_naming_it(make_client) -> None:
    r = make_client(start=False).post("/v1/generate", json={"prompt": "kick", "format": "mp3"})
    assert r.status_code == 422 and "format" in r.text


class _ForeignModel:
    """Another backend's model as the service sees it: it generates, but has no latents to vary or morph."""

    from sampleforge.backends.base import ParamSpace

    name = "foreign"
    kind = "diffusers"
    sample_rate = 44100
    samplers = ("euler",)
    space = ParamSpace(samplers=("euler",), min_duration=0.5, max_duration=4.0, default_duration=2.0,
                       default_steps=8, default_cfg=3.0)

    def check_prompt(self, prompt: str) -> list[str]:
        return []


def test_workflow_routes_run_on_the_named_sampleforge_model(tmp_path: Path, generator) -> None:
    from fastapi.testclient import TestClient

    from sampleforge.serve.app import create_app
    from sampleforge.serve.config import ServeConfig
    from sampleforge.serve.service import Service

    service = Service(ServeConfig(storage=tmp_path / "storage", model=str(generator.name)),
                      {"foreign": _ForeignModel(), str(generator.name): generator})
    with TestClient(create_app(service, manage_service=False)) as client:
        ends = {"from_prompt": "kick", "to_prompt": "snare"}
        ok = client.post("/v1/morph", json={"model": str(generator.name), "morph_steps": 2, **ends, **FAST})
        assert ok.status_code == 202, ok.text
        assert ok.json()["model"] == str(generator.name)
        for body in ({}, {"model": "foreign"}):  # the default (first) model is the foreign one
            r = client.post("/v1/morph", json={"morph_steps": 2, **ends, **FAST, **body})
            assert r.status_code == 422, r.text
            assert "model" in json.dumps(r.json()) and "sampleforge model" in r.text


def test_workflow_jobs_survive_a_restart(make_service, generator, wait_job, tmp_path: Path) -> None:
    """Accepted by one server, run by the next: queued ones, and one that was running when the first died."""
    from fastapi.testclient import TestClient

    from sampleforge.serve.app import create_app

    bodies = {"vary": ("/v1/vary", {"audio": clip_b64(generator), "prompt": "snare", "count": 2, "strength": 0.5}),
              "morph": ("/v1/morph", {"from_prompt": "kick", "to_prompt": "snare", "morph_steps": 3}),
              "pad": ("/v1/kit/pad", {"prompt": "dusty", "piece": "snare", "seed": 7}),
              "kit": ("/v1/kit", {"prompt": "dusty", "pieces": "kick,rim", "format": "flac"})}
    first = make_service()
    with TestClient(create_app(first, manage_service=False)) as client:  # no workers: everything stays queued
        queued = {op: client.post(path, json={**body, **FAST}).json() for op, (path, body) in bodies.items()}
    ids = {op: view["job_id"] for op, view in queued.items()}
    assert all(view["state"] == "queued" for view in queued.values()), queued
    assert (tmp_path / "storage" / "results" / ids["vary"] / "input_audio.wav").is_file()
    died = first.store.claim("thread@gone:1:x", 1, 60.0, leader=ids["morph"])  # running when the server died
    assert [j.state for j in died] == ["running"]
    first.store.close()

    with TestClient(create_app(make_service())) as client:  # a new server on the same storage
        jobs = {op: wait_job(client, job_id) for op, job_id in ids.items()}
        assert {op: j["state"] for op, j in jobs.items()} == dict.fromkeys(bodies, "succeeded"), jobs
        assert jobs["morph"]["attempts"] == 2 and jobs["vary"]["attempts"] == 1
        seed = queued["vary"]["request"]["settings"]["seed"]  # fixed when accepted: the run keeps it
        assert [r["seed"] for r in jobs["vary"]["results"]] == [seed, seed + 1]
        wav, _, _ = audio_of(client, jobs["vary"]["results"][1], tmp_path)
        direct = generator.vary(generator.generate("snare", steps=2, seed=3).numpy()[0], prompt="snare", count=2,
                                strength=0.5, seed=seed, steps=2).audio.numpy()[1]
        assert np.abs(wav - direct).max() < 1e-4
        assert [r["t"] for r in jobs["morph"]["results"]] == [0.0, 0.5, 1.0]
        assert jobs["pad"]["results"][0]["piece"] == "snare" and client.get(jobs["pad"]["urls"]["pack"]).status_code == 200
        with zipfile.ZipFile(io.BytesIO(client.get(jobs["kit"]["urls"]["pack"]).content)) as z:
            assert {"dusty/kick.flac", "dusty/rim.flac", "dusty/kit.sfz"} <= set(z.namelist())
        assert [r["url"].rsplit("/", 1)[1] for r in jobs["kit"]["results"]] == ["0.flac", "1.flac"]


def test_workflow_jobs_are_cancelled_and_deleted_like_any_job(make_client, generator, tmp_path: Path) -> None:
    client = make_client(start=False, max_queue=1)
    job = client.post("/v1/vary", json={"audio": clip_b64(generator), **FAST}).json()
    folder = tmp_path / "storage" / "results" / job["job_id"]
    assert (folder / "input_audio.wav").is_file()
    full = client.post("/v1/morph", json={"from_audio": clip_b64(generator), "to_audio": clip_b64(generator), **FAST})
    assert full.status_code == 429 and int(full.headers["retry-after"]) >= 1
    assert sorted(p.name for p in (tmp_path / "storage" / "results").iterdir()) == [job["job_id"]]  # no stray input
    assert client.delete(f"/v1/jobs/{job['job_id']}").json()["state"] == "cancelled"
    assert not folder.exists()
    assert client.get(f"/v1/jobs/{job['job_id']}/audio/0").status_code == 409


def test_a_request_naming_no_steps_gets_the_models_own_within_max_steps(make_client, generator) -> None:
    """A server whose --max-steps is below the model's own steps gives that many to every request that names none
    (generation and the workflow alike), and refuses more only when a request asks for them."""
    from sampleforge.params import GenerationParams

    own = generator.resolve(GenerationParams(seed=0)).steps
    limit = min(own - 1, 3)
    client = make_client(start=False, max_steps=limit)
    assert client.get("/v1/models").json()["models"][0]["defaults"]["steps"] == limit
    job = client.post("/v1/generate", json={"prompt": "kick", "duration": 0.5})
    assert job.status_code == 202 and job.json()["params"]["steps"] == limit, job.text
    vary = client.post("/v1/vary", json={"audio": clip_b64(generator), "count": 1})
    assert vary.status_code == 202 and vary.json()["params"]["steps"] == limit, vary.text
    kit = client.post("/v1/kit", json={"prompt": "dusty", "pieces": ["kick"]})
    assert kit.status_code == 202 and kit.json()["params"]["steps"] == limit, kit.text
    over = client.post("/v1/generate", json={"prompt": "kick", "steps": limit + 1})
    assert over.status_code == 422 and over.json()["detail"][0]["loc"] == ["body", "steps"]
    morph = client.post("/v1/morph", json={"from_prompt": "kick", "to_prompt": "snare", "steps": limit + 1})
    assert morph.status_code == 422 and "steps" in morph.text


def test_a_morph_between_two_guidance_scales_records_each_clips(knob_model: Path, tmp_path: Path, wait_job) -> None:
    """Ends guided at 4.5 ("kick") and 3 ("long kick"): each file says the scale it was rendered at."""
    from fastapi.testclient import TestClient

    from sampleforge.pipeline import Generator
    from sampleforge.serve.app import create_app
    from sampleforge.serve.config import ServeConfig
    from sampleforge.serve.service import Service
    from tests.model_folders import edited_copy

    firm = edited_copy(knob_model, tmp_path / "firm", lambda c: c["diffusion"].update(cfg_scale_no_knobs=4.5))
    gen = Generator.from_pretrained(firm, device="cpu")
    with TestClient(create_app(Service(ServeConfig(storage=tmp_path / "storage", model=str(gen.name)), gen))) as client:
        job = run(client, "/v1/morph", {"from_prompt": "kick", "to_prompt": "long kick", "from_seed": 3, "to_seed": 4,
                                        "morph_steps": 3, **FAST}, wait_job)
        scales = [audio_of(client, r, tmp_path / "got")[1]["cfg_scale"] for r in job["results"]]
    assert scales == ["4.5", "3.75", "3.0"]
