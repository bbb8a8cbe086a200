"""Steps and cfg scale left unset take each model's own defaults (its pipeline's ``__call__`` defaults, or its
authors' for stable-audio-tools models); sampleforge's own models take 50 and 3, or the cfg scale their
config names. Through the Python API, the CLI (with --verbose and the file's metadata) and HTTP."""

from __future__ import annotations

import inspect
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
from fastapi.testclient import TestClient

from sampleforge.audio.io import read_metadata
from sampleforge.backends import BackendOptions, load_backend
from sampleforge.cli import main
from sampleforge.params import GenerationParams
from sampleforge.serve.app import create_app
from sampleforge.serve.config import ServeConfig
from sampleforge.serve.service import Service

CPU = BackendOptions(device="cpu")


def _call_defaults(cls_name: str) -> tuple[Any, Any]:
    import diffusers

    params = inspect.signature(getattr(diffusers, cls_name).__call__).parameters
    return params["num_inference_steps"].default, params["guidance_scale"].default


@pytest.mark.parametrize(("fixture", "pipeline", "expected"), [
    ("sa_dir", "StableAudioPipeline", (100, 7.0)),
    ("ldm_dir", "AudioLDM2Pipeline", (200, 3.5)),
    ("sa3_dir", "StableAudio3Pipeline", (8, 1.0)),  # steps: None in __call__, 8 for a ping-pong scheduler
])
def test_diffusers_backends_take_their_pipelines_defaults(fixture: str, pipeline: str, expected: tuple,
                                                          request: pytest.FixtureRequest) -> None:
    backend = load_backend(request.getfixturevalue(fixture), CPU)
    p = backend.resolve(GenerationParams())
    steps, cfg = _call_defaults(pipeline)
    assert (p.steps, p.cfg_scale) == expected
    assert cfg == expected[1] and steps in (expected[0], None)
    assert backend.resolve(GenerationParams(steps=3, cfg_scale=2.5)).steps == 3  # what the user sets wins
    assert backend.resolve(GenerationParams(steps=3, cfg_scale=2.5)).cfg_scale == 2.5


def test_own_and_stable_audio_tools_defaults(debug_model: Path, sat_small: tuple[Path, dict, dict]) -> None:
    ours = load_backend(debug_model, CPU).resolve(GenerationParams())
    assert (ours.steps, ours.cfg_scale) == (50, 3.0)
    small = load_backend(sat_small[0], CPU)
    p = small.resolve(GenerationParams())
    assert (p.steps, p.cfg_scale, p.sampler) == (8, 1.0, "pingpong")
    assert small.space.as_dict()["default_steps"] == 8


def test_cli_reports_and_records_the_model_defaults(sat_small: tuple[Path, dict, dict], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    folder = sat_small[0]
    base = ["generate", "--model", str(folder), "--prompt", "kick drum", "--seed", "7", "--duration", "1", "--quiet"]
    assert main([*base, "--output", str(tmp_path / "own.wav"), "--verbose"]) == 0
    assert "pingpong, 8 steps, cfg 1, 1 s" in capsys.readouterr().err
    meta = read_metadata(tmp_path / "own.wav")
    assert (meta["steps"], meta["cfg_scale"], meta["sampler"]) == ("8", "1.0", "pingpong")
    assert main([*base, "--output", str(tmp_path / "said.wav"), "--steps", "8", "--cfg-scale", "1"]) == 0
    a, b = sf.read(tmp_path / "own.wav")[0], sf.read(tmp_path / "said.wav")[0]
    assert (a == b).all()  # the defaults are exactly what the model's own settings give
    assert main([*base, "--output", str(tmp_path / "four.wav"), "--steps", "4"]) == 0
    assert read_metadata(tmp_path / "four.wav")["steps"] == "4"


def test_http_requests_without_steps_take_the_named_models_defaults(
        sat_small: tuple[Path, dict, dict], debug_model: Path, tmp_path: Path, wait_job: Callable) -> None:
    small = load_backend(sat_small[0], CPU)
    ours = load_backend(debug_model, CPU)
    service = Service(ServeConfig(storage=tmp_path / "storage", max_duration=4.0, max_steps=60),
                      {small.name: small, ours.name: ours})
    with TestClient(create_app(service)) as client:
        models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
        assert models[small.name]["defaults"] == {"steps": 8, "cfg_scale": 1.0}
        assert models[ours.name]["defaults"] == {"steps": 50, "cfg_scale": 3.0}
        for name, steps, cfg in ((small.name, 8, 1.0), (ours.name, 50, 3.0)):
            body = {"prompt": "kick drum", "seed": 7, "duration": 1, "model": name}
            job = wait_job(client, client.post("/v1/generate", json=body).json()["job_id"], timeout=120)
            assert job["state"] == "succeeded", job
            assert (job["params"]["steps"], job["params"]["cfg_scale"]) == (steps, cfg)
            wav = client.get(job["results"][0]["url"]).content
            meta = read_metadata_bytes(wav, tmp_path / f"{steps}.wav")
            assert (meta["steps"], meta["cfg_scale"]) == (str(steps), str(cfg))
        said = wait_job(client, client.post("/v1/generate", json={"prompt": "kick", "seed": 1, "duration": 1,
                                                               "steps": 3, "model": small.name}).json()["job_id"], timeout=120)
        assert said["params"]["steps"] == 3 and said["params"]["cfg_scale"] == 1.0


def test_http_caps_a_model_default_above_the_server_limit(sa_dir: Path, tmp_path: Path) -> None:
    """A request that names no steps gets the model's own, at most --max-steps; one that asks for more is refused."""
    sa = load_backend(sa_dir, CPU)  # Stable Audio Open 1.0's own default: 100 steps
    service = Service(ServeConfig(storage=tmp_path / "storage", max_duration=4.0, max_steps=60), {sa.name: sa})
    with TestClient(create_app(service)) as client:
        capped = client.post("/v1/generate", json={"prompt": "kick", "duration": 1})
        assert capped.status_code == 202 and capped.json()["params"]["steps"] == 60, capped.text
        bad = client.post("/v1/generate", json={"prompt": "kick", "duration": 1, "steps": 61})
        assert bad.status_code == 422 and "steps" in bad.json()["error"]
        ok = client.post("/v1/generate", json={"prompt": "kick", "duration": 1, "steps": 2})
        assert ok.status_code in (200, 202), ok.text


def read_metadata_bytes(data: bytes, path: Path) -> dict[str, str]:
    path.write_bytes(data)
    assert sf.read(io.BytesIO(data))[1] > 0
    return read_metadata(path)


def test_a_sampleforge_model_config_can_name_its_own_guidance_scale(debug_model: Path, tmp_path: Path) -> None:
    import json
    import shutil

    from sampleforge.strict import ConfigError

    own = tmp_path / "own-cfg"
    shutil.copytree(debug_model, own)
    cfg = json.loads((own / "config.json").read_text())
    cfg["diffusion"]["cfg_scale"] = 5.5
    (own / "config.json").write_text(json.dumps(cfg))
    gen = load_backend(own, CPU)
    assert gen.resolve(GenerationParams(prompt="kick")).cfg_scale == 5.5
    assert gen.resolve(GenerationParams(prompt="kick", cfg_scale=2.0)).cfg_scale == 2.0
    assert load_backend(debug_model, CPU).resolve(GenerationParams(prompt="kick")).cfg_scale == 3.0
    cfg["diffusion"]["cfg_scale"] = 40
    (own / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="diffusion.cfg_scale"):
        load_backend(own, CPU)
