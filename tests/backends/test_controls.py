"""Memory and speed controls, sampler mapping, per-stage statistics, and errors on bad models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from sampleforge.backends import BackendOptions, load_backend, resolve
from sampleforge.cli import main
from sampleforge.errors import CheckpointError, UserInputError
from sampleforge.eval.metrics import peak_correlation
from tests.backends import decode_peak

CALL = {"steps": 4, "cfg_scale": 3.0, "seed": 7, "duration": 1.0}


def test_chunked_decode_equals_full_decode_and_lowers_peak_memory() -> None:
    vae, z = decode_peak.build_vae(), decode_peak.latents()
    full, chunked = decode_peak.decode(vae, z, "full"), decode_peak.decode(vae, z, "chunked")
    assert chunked.shape == full.shape == (1, 2, 64000)
    assert peak_correlation(chunked, full) > 0.999
    assert float((chunked - full).abs().max()) < 0.05 * float(full.abs().max())
    peaks = {mode: decode_peak.measure(mode) for mode in decode_peak.MODES}  # each in a fresh process
    if peaks["full"] is None:
        pytest.skip("peak memory is not measurable on this platform")
    assert peaks["full"] > 8 * 2**20, peaks  # the full decode's activations are tens of MiB: it was measured
    assert peaks["chunked"] is not None and peaks["chunked"] < 0.6 * peaks["full"], peaks


def test_decode_chunk_option_keeps_the_audio(sa_dir: Path, ldm_dir: Path) -> None:
    for folder in (sa_dir, ldm_dir):
        full = load_backend(folder, BackendOptions(device="cpu")).generate_full("kick", **CALL)
        chunked = load_backend(folder, BackendOptions(device="cpu", decode_chunk=0.25)).generate_full("kick", **CALL)
        assert torch.equal(chunked.latents, full.latents)  # the same sampling; only the decoding differs
        assert peak_correlation(chunked.raw, full.raw) > 0.99


def test_precision_quantisation_and_offload(sa_dir: Path) -> None:
    base = load_backend(sa_dir, BackendOptions(device="cpu")).generate_full("kick", **CALL)
    bf16 = load_backend(sa_dir, BackendOptions(device="cpu", precision="bf16"))
    assert next(bf16.pipe.transformer.parameters()).dtype == torch.bfloat16
    g = bf16.generate_full("kick", **CALL)
    assert torch.isfinite(g.raw).all() and g.raw.shape == base.raw.shape
    int8 = load_backend(sa_dir, BackendOptions(device="cpu", quantize="int8"))
    mods = list(int8.pipe.transformer.modules())
    assert any("quantized.dynamic" in type(m).__module__ for m in mods)
    assert not any(type(m) is torch.nn.Linear for m in mods)
    assert torch.isfinite(int8.generate_full("kick", **CALL).raw).all()
    with pytest.raises(UserInputError, match="fp32"):
        load_backend(sa_dir, BackendOptions(device="cpu", quantize="int8", precision="bf16"))
    offload = load_backend(sa_dir, BackendOptions(device="cpu", offload="model")).generate_full("kick", **CALL)
    assert any("CUDA" in w for w in offload.warnings)
    assert torch.equal(offload.raw, base.raw)


def test_samplers_map_onto_the_pipelines_schedulers(ldm_dir: Path, sa_dir: Path) -> None:
    ldm = load_backend(ldm_dir, BackendOptions(device="cpu"))
    assert ldm.space.samplers[0] == "native" and {"ddim", "dpmpp_2m", "heun"} <= set(ldm.space.samplers)
    native = ldm.generate_full("kick", **CALL)
    ddim = ldm.generate_full("kick", **CALL, sampler="ddim")  # the tiny pipeline was saved with DDIM
    assert peak_correlation(native.raw, ddim.raw) > 0.999
    assert type(ldm.pipe.scheduler).__name__ == "DDIMScheduler"  # put back after the call
    sa = load_backend(sa_dir, BackendOptions(device="cpu"))
    euler = sa.generate_full("kick", **CALL, sampler="euler")
    assert torch.isfinite(euler.raw).all()
    assert "EDMEulerScheduler" in sa.describe()["samplers"]["euler"]
    with pytest.raises(UserInputError, match="unknown sampler 'flow_euler'.*native"):
        sa.generate_full("kick", **CALL, sampler="flow_euler")
    with pytest.raises(UserInputError, match="duration"):
        sa.generate_full("kick", steps=4, duration=60.0)  # the tiny DiT holds 4 s


def test_sweep_reports_stage_statistics_on_a_foreign_backend(sa_dir: Path, tmp_path: Path) -> None:
    code = main(["sweep", "--model", str(sa_dir), "--prompt", "kick", "--cfg-scale", "1,3", "--steps", "2",
                 "--duration", "0.5", "--device", "cpu", "--out", str(tmp_path)])
    assert code == 0
    result = json.loads((tmp_path / "sweep.json").read_text())
    assert result["samplers"] == ["native", "euler", "dpmpp_2m"] and len(result["cells"]) == 6
    for cell in result["cells"]:
        assert cell["latent_std"] > 0 and cell["raw_audio_std"] > 0 and cell["nan_count"] == 0
        assert 0 <= cell["raw_clipping_percent"] <= 100 and cell["sample_s"] > 0 and cell["decode_s"] >= 0
    assert "kick" in (tmp_path / "sweep.html").read_text()


def test_bad_folders_and_missing_hub_ids_are_one_line_errors(sa_dir: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(sa_dir, broken)
    (broken / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    args = ["generate", "--prompt", "kick", "--output", str(tmp_path / "x.wav"), "--model"]
    assert main([*args, str(broken)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "vae/diffusion_pytorch_model.safetensors" in err[0]
    shutil.rmtree(broken / "text_encoder")
    assert main([*args, str(broken)]) == 2
    assert "missing text_encoder/" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([*args, str(tmp_path / "empty")]) == 2
    assert "model_index.json" in capsys.readouterr().err
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert main([*args, "hf:stabilityai/stable-audio-open-1.0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "hf download stabilityai/stable-audio-open-1.0" in err[0]
    assert not (tmp_path / "x.wav").exists()


def test_hf_ids_resolve_through_the_local_cache(sa_dir: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    repo = tmp_path / "hub" / "models--acme--tiny-audio"
    shutil.copytree(sa_dir, repo / "snapshots" / ("a" * 40))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    ref = resolve("hf:acme/tiny-audio")
    assert ref.format == "diffusers" and ref.path == repo / "snapshots" / ("a" * 40)
    model = load_backend("hf:acme/tiny-audio", BackendOptions(device="cpu"))
    assert model.name == "acme/tiny-audio" and model.sample_rate == 512


def test_adp_checkpoints_are_read_without_unpickling(adp_ckpt: Path, tmp_path: Path) -> None:
    from collections import OrderedDict

    state = torch.load(adp_ckpt, weights_only=True)
    evil = tmp_path / "evil.ckpt"
    torch.save({**state, "hyper_parameters": OrderedDict(model=torch.nn.Linear(1, 1))}, evil)
    shutil.copy(adp_ckpt.with_suffix(".json"), evil.with_suffix(".json"))
    with pytest.raises(CheckpointError, match="cannot be read safely"):
        load_backend(evil)
    (tmp_path / "wrong.ckpt").write_bytes(adp_ckpt.read_bytes())  # no sidecar: the drum config does not fit
    with pytest.raises(CheckpointError, match="missing model.net"):
        load_backend(tmp_path / "wrong.ckpt")


def test_inspect_and_doctor_read_a_diffusers_folder(sa_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(sa_dir)]) == 0
    out = capsys.readouterr().out
    assert "StableAudioPipeline" in out and "AutoencoderOobleck" in out and "EDMEulerScheduler" in out
    from sampleforge.eval import doctor

    check = doctor.check_model(str(sa_dir))
    assert check.status == "ok" and "StableAudioPipeline" in check.detail and "loads in" in check.detail


def test_stable_audio_tools_folders_without_weights_or_config_are_refused_with_the_reason(tmp_path: Path) -> None:
    folder = tmp_path / "sao-small"
    folder.mkdir()
    (folder / "model_config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="missing model.safetensors"):
        load_backend(folder)
    (folder / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="model_type None is not supported"):
        load_backend(folder)


def test_in_chunks_runs_encoders_too_and_refuses_chunks_off_the_hop() -> None:
    from sampleforge.backends.memory import in_chunks

    x = torch.randn(1, 2, 96)
    pool = lambda t: torch.nn.functional.avg_pool1d(t, 4)  # noqa: E731  (an "encoder": 4 samples a frame)
    assert torch.equal(in_chunks(pool, x, chunk=16, overlap=8), pool(x))
    with pytest.raises(ValueError, match="multiples"):
        in_chunks(pool, x, chunk=10, overlap=8)


def test_backends_benchmark_decodes_in_chunks() -> None:
    # `python -m benchmarks.backends` (the README's memory figures): its chunked decode runs on memory.in_chunks
    from benchmarks import backends as bench

    res = bench.bench_decode(seconds=1.0, channels=4, chunk_s=0.25)
    assert res["rel_l2"] < 0.05 and res["correlation"] > 0.99
