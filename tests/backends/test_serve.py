"""The service runs several models at once: /v1/models lists them, a request names one, and a foreign
model's clip equals the direct library call for the same seed."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import soundfile as sf
import torch
from fastapi.testclient import TestClient

from sampleforge.backends import BackendOptions, load_backend
from sampleforge.eval.metrics import peak_correlation
from sampleforge.serve.app import create_app
from sampleforge.serve.config import ServeConfig
from sampleforge.serve.service import Service


def test_one_server_serves_two_models(sa_dir: Path, debug_model: Path, tmp_path: Path, wait_job: Callable) -> None:
    import diffusers

    sa = load_backend(sa_dir, BackendOptions(device="cpu"))
    ours = load_backend(debug_model, BackendOptions(device="cpu"))
    service = Service(ServeConfig(storage=tmp_path / "storage", max_duration=4.0), {sa.name: sa, ours.name: ours})
    with TestClient(create_app(service)) as client:
        listed = client.get("/v1/models").json()
        assert listed["default"] == sa.name
        by_name = {m["name"]: m for m in listed["models"]}
        assert set(by_name) == {sa.name, ours.name}
        assert by_name[sa.name]["samplers"][0] == "native" and by_name[sa.name]["kind"] == "diffusers"
        assert "ddim" in by_name[ours.name]["samplers"]

        body = {"prompt": "kick drum", "steps": 4, "cfg_scale": 3, "seed": 7, "duration": 1, "model": sa.name}
        job = wait_job(client, client.post("/v1/generate", json=body).json()["job_id"], timeout=120)
        assert job["state"] == "succeeded", job
        wav, sr = sf.read(io.BytesIO(client.get(job["results"][0]["url"]).content), dtype="float32", always_2d=True)
        pipe = diffusers.StableAudioPipeline.from_pretrained(sa_dir)
        pipe.set_progress_bar_config(disable=True)
        ref = pipe("kick drum", num_inference_steps=4, guidance_scale=3.0, audio_end_in_s=1.0,
                   generator=torch.Generator().manual_seed(7)).audios[0]
        assert sr == 512 and wav.T.shape == tuple(ref.shape) and peak_correlation(wav.T, ref) > 0.99

        job2 = wait_job(client, client.post("/v1/generate", json={"prompt": "kick", "steps": 2, "seed": 1,
                                                                "duration": 0.5, "model": ours.name}).json()["job_id"], timeout=120)
        assert job2["state"] == "succeeded" and job2["model"] == ours.name

        # each model's own keywords; an unknown model is a 422 naming the query field
        assert client.get("/v1/vocab").json()["model"] == sa.name
        ours_vocab = client.get("/v1/vocab", params={"model": ours.name}).json()
        assert ours_vocab["model"] == ours.name
        assert {k["word"]: k["count"] for k in ours_vocab["keywords"]} == ours.vocab() != sa.vocab()
        unknown = client.get("/v1/vocab", params={"model": "nope"})
        assert unknown.status_code == 422 and unknown.json()["detail"][0]["loc"] == ["query", "model"]

        bad = client.post("/v1/generate", json={**body, "model": "nope"})
        assert bad.status_code == 422 and "model" in bad.json()["error"] and "nope" in bad.json()["error"]
        wrong = client.post("/v1/generate", json={**body, "sampler": "ddim"})  # not one of this model's
        assert wrong.status_code == 422 and "sampler" in wrong.json()["error"]
