"""One server serves a model and that model with another vocoder (``MODEL+VOCODER``) side by side: each under its
own name in /v1/models, and a job naming the '+' model is made with its vocoder."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf
from fastapi.testclient import TestClient

from sampleforge.audio.io import read_metadata
from sampleforge.cli import main
from sampleforge.serve.app import create_app
from sampleforge.serve.commands import load_generator
from sampleforge.serve.config import ServeConfig
from sampleforge.serve.service import Service

FAST = {"steps": 2, "duration": 0.5}


def test_a_server_serves_a_model_and_the_model_with_other_vocoders(debug_model: Path, model_without_vocoder: Path,
                                                                    debug_vocoder: Path, tmp_path: Path,
                                                                    wait_job) -> None:
    specs = [str(debug_model), f"{debug_model}+griffin-lim", f"{model_without_vocoder}+{debug_vocoder}"]
    gens = [load_generator(s) for s in specs]  # as `serve --model A --model B ...` loads them
    names = [g.name for g in gens]
    assert names == ["debug", "debug+griffin-lim", "debug+a-vocoder"]
    service = Service(ServeConfig(storage=tmp_path / "storage", model=specs[0]), {g.name: g for g in gens})
    with TestClient(create_app(service)) as client:
        listed = client.get("/v1/models").json()
        assert listed["default"] == "debug" and [m["name"] for m in listed["models"]] == names
        assert client.get("/v1/vocab", params={"model": "debug+griffin-lim"}).json()["model"] == "debug+griffin-lim"
        raw = client.get("/v1/vocab?model=debug+griffin-lim")  # a raw '+' is a space in a query: no name has one
        assert raw.status_code == 200 and raw.json()["model"] == "debug+griffin-lim", raw.text
        assert client.get("/v1/vocab?model=debug+nothing").status_code == 422
        clips = {}
        for name in names:
            job = wait_job(client, client.post("/v1/generate", json={"prompt": "kick", "seed": 5, "model": name,
                                                                     **FAST}).json()["job_id"])
            assert job["state"] == "succeeded" and job["model"] == name, job
            audio = client.get(job["results"][0]["url"]).content
            clips[name] = sf.read(io.BytesIO(audio), dtype="float32")[0]
            (tmp_path / f"{name}.wav").write_bytes(audio)
            assert read_metadata(tmp_path / f"{name}.wav")["model"] == gens[names.index(name)].id  # with its hash
        assert not np.allclose(clips["debug"], clips["debug+griffin-lim"])  # Griffin-Lim, not the model's vocoder
        # the debug model without its vocoder, given it back from a vocoder folder, is the debug model
        np.testing.assert_allclose(clips["debug+a-vocoder"], clips["debug"], atol=1e-5)
        morph = client.post("/v1/morph", json={"model": "debug+griffin-lim", "morph_steps": 2, "steps": 2,
                                               "from_prompt": "kick", "to_prompt": "snare"})
        assert morph.status_code == 202, morph.text
        assert wait_job(client, morph.json()["job_id"])["state"] == "succeeded"


def test_serve_names_each_model_plus_vocoder_apart(make_service, debug_model: Path, tmp_path: Path, capsys,
                                                   port: str) -> None:
    """`serve --model M --model M+griffin-lim` loads both under their own names (it gets as far as the storage, here
    in use); two spellings of one spec are one name twice, refused naming it."""
    running = make_service(storage=tmp_path / "busy")
    running.start()
    common = ["--storage", str(tmp_path / "busy"), "--port", port]
    try:
        code = main(["serve", "--model", str(debug_model), "--model", f"{debug_model}+griffin-lim", *common])
        err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("{")]  # minus JSON logs
        assert code == 2 and len(err) == 1 and "used by another `sampleforge serve`" in err[0]
        code = main(["serve", "--model", str(debug_model), "--model", f"{debug_model}+griffin-lim",
                     "--model", f"{debug_model}/+griffin-lim", *common])
        err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("{")]
        assert code == 2 and len(err) == 1 and "two models are both called 'debug+griffin-lim'" in err[0]
    finally:
        running.stop()
