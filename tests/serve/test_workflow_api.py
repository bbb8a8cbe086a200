"""HTTP: POST /v1/vary, /v1/morph, /v1/kit/pad and /v1/kit on the debug model (in-process app)."""

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


def audio_of(clip: dict, tmp_path: Path) -> tuple[np.ndarray, dict[str, str], str]:
    path = tmp_path / clip["name"]
    path.write_bytes(base64.b64decode(clip["data"]))
    wav, _ = sf.read(str(path), dtype="float32")
    return wav, read_metadata(path), sf.info(str(path)).subtype


def test_vary_returns_variations_with_provenance(make_client, generator, tmp_path: Path) -> None:
    client = make_client(start=False)
    r = client.post("/v1/vary", json={"audio": clip_b64(generator), "prompt": "snare", "strength": 0.4, "count": 2,
                                      "seed": 9, "format": "wav16", "length": "auto", **FAST})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [c["seed"] for c in body["clips"]] == [9, 10] and body["strength"] == 0.4
    wav, meta, subtype = audio_of(body["clips"][0], tmp_path)
    assert subtype == "PCM_16" and 0 < wav.shape[0] <= 88200
    assert meta["operation"] == "vary" and meta["strength"] == "0.4" and meta["seed"] == "9"
    zero = client.post("/v1/vary", json={"audio": clip_b64(generator), "strength": 0.0, "count": 1, **FAST}).json()
    direct = generator.vary(generator.generate("snare", steps=2, seed=3).numpy()[0], strength=0.0, steps=2)
    got, _, _ = audio_of(zero["clips"][0], tmp_path)
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
])
def test_vary_bad_input_is_422_naming_the_field(make_client, generator, body: dict, field: str) -> None:
    client = make_client(start=False)
    payload = {"audio": clip_b64(generator), **FAST, **body}
    r = client.post("/v1/vary", json=payload)
    assert r.status_code == 422, r.text
    assert field in json.dumps(r.json())


def test_upload_limit_is_separate_from_the_json_limit(make_client, generator) -> None:
    client = make_client(start=False, max_upload_bytes=10_000)
    r = client.post("/v1/vary", json={"audio": clip_b64(generator), **FAST})
    assert r.status_code == 413
    r = client.post("/v1/generate", json={"prompt": "kick " * 5000})
    assert r.status_code == 413  # the ordinary limit still holds elsewhere


def test_morph_endpoints_equal_the_sources(make_client, generator, tmp_path: Path) -> None:
    client = make_client(start=False)
    r = client.post("/v1/morph", json={"from_prompt": "kick", "to_prompt": "snare", "from_seed": 4,
                                       "morph_steps": 3, "format": "wav32f", **FAST})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["to_seed"] == 5 and [c["t"] for c in body["clips"]] == [0.0, 0.5, 1.0]
    first, meta, _ = audio_of(body["clips"][0], tmp_path)
    np.testing.assert_allclose(first, generator.generate("kick", steps=2, seed=4).numpy()[0], atol=1e-4)
    assert meta["operation"] == "morph" and meta["t"] == "0.0000"
    clips = client.post("/v1/morph", json={"from_audio": clip_b64(generator), "to_audio": clip_b64(generator,
                                           "kick", 1), "strength": 0.0, "morph_steps": 2, **FAST})
    assert clips.status_code == 200 and len(clips.json()["clips"]) == 2
    r = client.post("/v1/morph", json={"from_audio": clip_b64(generator), **FAST})
    assert r.status_code == 422 and "to_audio" in r.text


def test_pads_and_the_kit_zip_hold_the_same_sounds(make_client, tmp_path: Path) -> None:
    client = make_client(start=False)
    pads = {}
    for piece in ("kick", "open_hat"):
        r = client.post("/v1/kit/pad", json={"prompt": "dusty 808", "piece": piece, "seed": 11, "format": "wav24",
                                             **FAST})
        assert r.status_code == 200, r.text
        pads[piece] = r.json()
    assert pads["kick"]["note"] == 36 and pads["kick"]["prompt"] == "kick dusty 808"
    rerolled = client.post("/v1/kit/pad", json={"prompt": "dusty 808", "piece": "kick", "seed": 11,
                                                "pad_seed": pads["kick"]["pad_seed"] + 1, **FAST}).json()
    assert rerolled["data"] != pads["kick"]["data"]
    r = client.post("/v1/kit", json={"prompt": "dusty 808", "pieces": ["kick", "open_hat"], "seed": 11,
                                     "pad_seeds": {p: v["pad_seed"] for p, v in pads.items()}, **FAST})
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:
        names = sorted(z.namelist())
        assert names == sorted(f"dusty_808/{n}" for n in ("kick.wav", "open_hat.wav", "kit.sfz", "kit.dspreset",
                                                          "drumkit.xml", "gm_map.csv", "kit.json"))
        z.extractall(tmp_path)
    for piece, pad in pads.items():
        pad_wav, _, _ = audio_of(pad, tmp_path)
        kit_wav, _ = sf.read(str(tmp_path / "dusty_808" / f"{piece}.wav"), dtype="float32")
        n = min(len(pad_wav), len(kit_wav))
        assert abs(len(pad_wav) - len(kit_wav)) <= 1 and np.abs(pad_wav[:n] - kit_wav[:n]).max() < 1e-3


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
    r = client.post("/v1/kit", json={"round_robins": 8, "velocity_layers": 5, **FAST})
    assert r.status_code == 422 and "count" in r.text


def test_token_protects_the_workflow_routes(make_client, generator) -> None:
    client = make_client(start=False, token="s3cret")
    assert client.post("/v1/kit/pad", json={"piece": "kick", "seed": 1, **FAST}).status_code == 401
    ok = client.post("/v1/kit/pad", json={"piece": "kick", "seed": 1, **FAST},
                     headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200


def test_jobs_narrow_the_formats_to_what_they_store(make_client) -> None:
    client = make_client(start=False)
    r = client.post("/v1/generate", json={"prompt": "kick", "format": "wav16"})
    assert r.status_code == 422 and "format" in r.text
    assert client.post("/v1/generate", json={"prompt": "kick", "format": "flac"}).status_code == 202


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
        ok = client.post("/v1/morph", json={"model": str(generator.name), "morph_steps": 2, **FAST})
        assert ok.status_code == 200, ok.text
        assert ok.json()["model"] == generator.id
        for body in ({}, {"model": "foreign"}):  # the default (first) model is the foreign one
            r = client.post("/v1/morph", json={"morph_steps": 2, **FAST, **body})
            assert r.status_code == 422, r.text
            assert "model" in json.dumps(r.json()) and "sampleforge model" in r.text
