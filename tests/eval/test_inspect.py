"""sampleforge inspect on a debug model folder and on a legacy .pt built here."""

from __future__ import annotations

import datetime
import json
import shutil
from pathlib import Path

import pytest
import torch

from sampleforge.cli import main
from sampleforge.errors import CheckpointError
from sampleforge.eval.inspect import format_inspect, inspect_path


def test_inspect_model_folder_text_and_json(debug_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    info = inspect_path(debug_model)
    assert info["kind"] == "bundle"
    comps = info["components"]
    assert {"vae", "unet", "text"} <= set(comps)
    for c in comps.values():
        assert c["parameters"] > 0 and len(c["sha256"]) == 64 and c["dtypes"] == ["float32"]
    text = format_inspect(info)
    total = sum(c["parameters"] for c in comps.values())
    assert f"total parameters: {total:,}" in text
    assert "unet.safetensors" in text and "vocabulary:" in text and "kick (10)" in text
    assert "diffusion:" in text and "sample_rate=44100" in text

    assert main(["inspect", str(debug_model), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["components"]["unet"]["sha256"] == comps["unet"]["sha256"]


def test_inspect_says_a_model_folder_that_cannot_load(debug_model: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert inspect_path(debug_model)["missing"] == []
    broken = tmp_path / "broken"
    shutil.copytree(debug_model, broken)
    (broken / "vae.safetensors").unlink()
    assert main(["inspect", str(broken)]) == 1
    assert "MISSING: vae.safetensors: this model cannot load" in capsys.readouterr().out


def test_inspect_says_what_else_stops_a_model_folder_from_loading(debug_model: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """Not only missing files: a timbre.json that is not JSON, sections of the config that disagree."""
    assert inspect_path(debug_model)["problems"] == []
    broken = tmp_path / "broken"
    shutil.copytree(debug_model, broken)
    (broken / "timbre.json").write_text("{not json")
    cfg = json.loads((broken / "config.json").read_text())
    cfg["sample_rate"] = 22050
    (broken / "config.json").write_text(json.dumps(cfg))
    assert main(["inspect", str(broken)]) == 1
    said = capsys.readouterr().out
    assert "PROBLEM: config.json: sample_rate (22050) != mel.sample_rate (44100): this model cannot load" in said
    assert f"PROBLEM: {broken / 'timbre.json'}: invalid JSON" in said


def test_inspect_names_a_classifier_and_reads_an_audio_diffusion_pytorch_folder(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sampleforge.bundle import resolve_model

    assert main(["inspect", "classifier-v2"]) == 2
    assert f"{resolve_model('classifier-v2')}: a drum classifier" in capsys.readouterr().err
    folder = tmp_path / "adp"
    folder.mkdir()
    torch.save({"state_dict": {"w": torch.zeros(2)}}, folder / "tiny-drums.ckpt")
    info = inspect_path(folder)  # the folder generate takes as an audio-diffusion-pytorch model: its checkpoint
    assert info["kind"] == "legacy_pt" and info["path"].endswith("tiny-drums.ckpt")


def test_inspect_legacy_pt_reads_weights_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pt = tmp_path / "kick_ckpt.pt"
    torch.save({
        "ema_state_dict": {"conv.weight": torch.zeros(8, 4, 3), "conv.bias": torch.zeros(8)},
        "text_enc_state_dict": {"emb.weight": torch.zeros(20, 16, dtype=torch.float16)},
        "vocab": ["kick", "808", "punchy"],
        "config": {"latent_dim": 4, "timesteps": 1000, "beta_start": 0.0001},
        "step": 1200,
    }, pt)
    info = inspect_path(pt)
    assert info["kind"] == "legacy_pt"
    assert info["keys"]["ema_state_dict"] == {"tensors": 2, "parameters": 104, "dtypes": ["float32"]}
    text = format_inspect(info)
    assert "total parameters: 424" in text  # 104 + 320
    assert "float16" in text and "latent_dim=4" in text and "808" in text and "1200" in text
    assert main(["inspect", str(pt)]) == 0
    assert "legacy checkpoint" in capsys.readouterr().out


def test_inspect_refuses_pickled_objects_and_unknown_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    evil = tmp_path / "evil.pt"
    torch.save({"obj": datetime.date(2020, 1, 1)}, evil)  # any object outside the weights_only allow-list
    with pytest.raises(CheckpointError, match="weights_only"):
        inspect_path(evil)
    txt = tmp_path / "notes.txt"
    txt.write_text("hi")
    with pytest.raises(CheckpointError, match="not a model folder"):
        inspect_path(txt)
    assert main(["inspect", str(tmp_path / "missing_model")]) == 2
    assert "error" in capsys.readouterr().err
