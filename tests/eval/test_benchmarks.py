"""benchmarks.speed on the debug model, and the peer network's configuration."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import peers, speed  # noqa: E402


def test_speed_runs_on_a_debug_model(debug_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    code = speed.main(["--model", str(debug_model), "--threads", "1", "--batches", "1,2", "--steps", "2",
                       "--fast", "euler:1", "--repeats", "1", "--no-peer", "--gl-iters", "4", "--json", str(out)])
    assert code == 0
    res = json.loads(out.read_text())
    assert res["vocoder"] == "neural vocoder; U-Net fp32"  # the debug model has one; --gl-iters only matters without
    assert [(r["batch"], r["sampler"], r["steps"]) for r in res["ours"]] == [
        (1, "ddim", 2), (1, "euler", 1), (2, "ddim", 2), (2, "euler", 1)]
    for r in res["ours"]:
        assert r["seconds_per_clip"] > 0 and r["realtime_factor"] > 0 and r["clip_seconds"] == pytest.approx(2.0)
        # decode and vocoder are re-timed on their own and the U-Net's share is what is left of the whole (at
        # least 0): how the parts add up depends on the machine's load, a timing and not a property to assert here
        assert r["decode_seconds_per_clip"] > 0 and r["vocoder_seconds_per_clip"] > 0
        assert 0 <= r["unet_seconds_per_clip"] <= r["seconds_per_clip"]
    assert res["peak_rss_mb"] > 50
    text = capsys.readouterr().out
    assert "s/clip" in text and "peak RSS" in text and "peer" not in text


def test_speed_vocoders_only(debug_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "voc.json"
    code = speed.main(["--model", str(debug_model), "--vocoders", "--threads", "1", "--batches", "1",
                       "--repeats", "2", "--json", str(out)])
    assert code == 0
    (row,) = json.loads(out.read_text())["vocoders"]
    assert row["batch"] == 1 and row["threads"] == 1 and row["griffin_lim_iters"] == 32
    assert row["vocoder_seconds_per_clip"] > 0 and row["griffin_lim_seconds_per_clip"] > 0
    assert row["ratio"] == pytest.approx(row["vocoder_seconds_per_clip"] / row["griffin_lim_seconds_per_clip"])
    assert "Griffin-Lim 32" in capsys.readouterr().out


def test_speed_vocoders_puts_another_folders_vocoder_on_the_model(debug_model: Path, model_without_vocoder: Path,
                                                                   tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """``--vocoder``: a training run's vocoder timed on a model that has none (as drums-v2 ships)."""
    out = tmp_path / "voc.json"
    args = ["--model", str(model_without_vocoder), "--vocoders", "--threads", "1", "--batches", "1", "--repeats", "2"]
    assert speed.main([*args, "--vocoder", str(debug_model), "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())["vocoders"]
    assert row["vocoder_seconds_per_clip"] > 0 and "neural vocoder" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        speed.main([*args, "--vocoder", str(tmp_path / "nothing")])
    assert exc.value.code == 2 and "--vocoder: " in capsys.readouterr().err


def test_speed_pairs_two_models_in_one_run(debug_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "pair.json"
    code = speed.main(["--model", str(debug_model), "--vs", str(debug_model), "--threads", "1", "--steps", "2",
                       "--fast", "euler:1", "--repeats", "3", "--json", str(out)])
    assert code == 0
    rows = json.loads(out.read_text())["paired"]
    assert [(r["sampler"], r["steps"], r["pairs"]) for r in rows] == [("ddim", 2, 3), ("euler", 1, 3)]
    for r in rows:
        assert r["a_seconds"] > 0 and r["b_seconds"] > 0
        assert r["ratio_quartiles"][0] <= r["ratio"] <= r["ratio_quartiles"][1]
        assert 0.2 < r["ratio"] < 5  # the same model against itself
    assert "ratio" in capsys.readouterr().out


def test_peer_lengths() -> None:
    assert peers.PEER_LENGTH == 2**15
    assert peers.peer_length(2.0) == 88320 and peers.peer_length(2.0) % peers.PEER_DOWNSAMPLE == 0


@pytest.mark.skipif(importlib.util.find_spec("audio_diffusion_pytorch") is None, reason="bench extra not installed")
def test_peer_is_tiny_audio_diffusion_drum_config() -> None:
    torch.manual_seed(0)
    model = peers.build_peer()
    assert peers.n_params(model) == pytest.approx(31.57e6, rel=0.01)
    assert peers.n_params(peers.build_peer()) == peers.n_params(model)  # building twice works (torchaudio stand-in)
    x = torch.randn(1, 2, 1024)
    with torch.inference_mode():
        y = model.net(x, torch.tensor([0.5]))
    assert y.shape == x.shape
    wall, cpu = peers.time_forward(model, 1024, repeats=1)
    assert wall > 0 and cpu > 0


def test_speed_without_steps_times_the_models_own_defaults(debug_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    code = speed.main(["--model", str(debug_model), "--threads", "1", "--batches", "1", "--fast", "euler:1",
                       "--repeats", "1", "--no-peer", "--json", str(out)])
    assert code == 0
    res = json.loads(out.read_text())
    assert [(r["sampler"], r["steps"]) for r in res["ours"]] == [("ddim", 50), ("euler", 1)]
