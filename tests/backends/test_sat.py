"""stable-audio-tools folders (Stable Audio Open Small's format): the key mapping onto diffusers modules checked
against stable-audio-tools' own networks, and the whole generation against its own sampling code."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sampleforge.backends import BackendOptions, load_backend
from sampleforge.backends.sat import Conditioning, rf_times
from sampleforge.cli import main
from sampleforge.errors import CheckpointError
from sampleforge.eval.metrics import peak_correlation as correlation
from tests.backends import sat_reference as ref

PROMPT = "kick drum"


@pytest.fixture
def small(sat_small: tuple[Path, dict, dict]) -> tuple[Path, dict, dict]:
    return sat_small


@pytest.mark.parametrize(("qk_norm", "project"), [("ln", False), ("none", True)])
def test_dit_and_decoder_equal_stable_audio_tools_modules(tmp_path: Path, qk_norm: str, project: bool) -> None:
    cfg = ref.tiny_config(qk_norm=qk_norm, project_cond_tokens=project)
    nets = ref.build_networks(cfg, seed=1)
    backend = load_backend(ref.write_model(tmp_path / "m", cfg, nets), BackendOptions(device="cpu"))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 128, generator=g)
    t = torch.tensor([0.9, 0.3])
    cross = torch.randn(2, 13, 64, generator=g)
    glob = torch.randn(2, 64, generator=g)
    with torch.inference_mode():
        for scale in (1.0, 3.0):
            want = nets["dit"](x, t, cross_attn_cond=cross, global_embed=glob, cfg_scale=scale)
            got = backend.velocity(x, t, Conditioning(cross, glob[:, None], scale))
            assert want.abs().mean() > 0.1  # no branch is empty
            torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)
        z = torch.randn(2, 4, 16, generator=g)
        want = nets["decoder"](z)
        torch.testing.assert_close(backend.decode(z), want, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(backend.numbers["seconds_total"](torch.tensor([3.0, 200.0])),
                                   nets["seconds_total"](torch.tensor([3.0, 200.0]) / 256).unsqueeze(1))


def test_checkpoint_keys_are_stable_audio_tools_own(small: tuple[Path, dict, dict]) -> None:
    """Every DiT, decoder and conditioner tensor of the checkpoint is used, under the names its modules give."""
    from safetensors.torch import load_file

    from sampleforge.backends.sat import convert_decoder, convert_dit

    folder, _, nets = small
    state = load_file(str(folder / "model.safetensors"))
    assert set(state) == set(ref.state_dict(nets))
    dit, inv_freq = convert_dit(state)
    backend = load_backend(folder, BackendOptions(device="cpu"))
    assert set(dit) == set(backend.dit.state_dict()) and inv_freq is not None
    assert len(dit) == len([k for k in state if k.startswith("model.model.")]) - 1 + 2 * 2 + 2  # qkv, kv split
    assert set(convert_decoder(state, 2)) == set(backend.decoder.state_dict())


def test_cli_equals_stable_audio_tools_sampling(small: tuple[Path, dict, dict], tmp_path: Path) -> None:
    folder, cfg, nets = small
    wants = {}
    for steps, scale in ((8, 1.0), (4, 3.0)):
        out = tmp_path / f"x{steps}.wav"
        assert main(["generate", "--model", str(folder), "--prompt", PROMPT, "--steps", str(steps), "--cfg-scale",
                     str(scale), "--seed", "7", "--duration", "1", "--output", str(out), "--quiet"]) == 0
        wav, sr = sf.read(out, dtype="float32", always_2d=True)
        want = ref.generate(folder, cfg, nets, PROMPT, seed=7, steps=steps, cfg_scale=scale, seconds=1.0)
        assert sr == 512 and wav.T.shape == tuple(want.shape) == (2, 512)
        assert correlation(wav.T, want.numpy()) > 0.99
        wants[steps] = want
    other = tmp_path / "seed8.wav"
    assert main(["generate", "--model", str(folder), "--prompt", PROMPT, "--seed", "8", "--duration", "1",
                 "--output", str(other), "--quiet"]) == 0
    assert correlation(sf.read(other, dtype="float32")[0].T, wants[8].numpy()) < 0.99  # (its own 8 steps, cfg 1)


def test_pingpong_equals_stable_audio_tools_sampler() -> None:
    from sampleforge.diffusion.denoiser import FlowDenoiser
    from sampleforge.diffusion.samplers import get_sampler

    sat = ref.load()

    def velocity(x: torch.Tensor, t: torch.Tensor, cond: object = None) -> torch.Tensor:
        return torch.sin(3 * x) * t.reshape(-1, 1, 1) + 0.5 * x

    x = torch.randn(1, 3, 10, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(5)
    want = sat.sampling.sample_flow_pingpong(velocity, x.clone(), sigmas=rf_times(6))
    got = get_sampler("pingpong")(FlowDenoiser(velocity, time_scale=1.0), x, rf_times(6),
                                  generator=[torch.Generator().manual_seed(5)])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_rf_times_are_stable_audio_tools_schedule() -> None:
    t = rf_times(8)
    assert t[0] == 1 and t[-1] == 0 and bool((t[1:] < t[:-1]).all())
    assert float(t[1]) == pytest.approx(1 / (1 + np.exp(-5)), rel=1e-6)  # log-SNR -6 + 8/8 = -5


def test_a_lightning_ckpt_loads_weights_only(small: tuple[Path, dict, dict], tmp_path: Path) -> None:
    folder, cfg, nets = small
    ck = ref.write_model(tmp_path / "ck", cfg, nets, ckpt=True)
    assert not list(ck.glob("*.safetensors"))
    a = load_backend(ck, BackendOptions(device="cpu")).generate(PROMPT, seed=3, duration=1.0)
    b = load_backend(folder, BackendOptions(device="cpu")).generate(PROMPT, seed=3, duration=1.0)
    torch.testing.assert_close(a, b)


def test_bad_folders_name_the_problem(small: tuple[Path, dict, dict], tmp_path: Path) -> None:
    folder, cfg, nets = small
    bad = tmp_path / "v-model"
    v_cfg = json.loads(json.dumps(cfg))
    v_cfg["model"]["diffusion"]["diffusion_objective"] = "v"
    ref.write_model(bad, v_cfg, nets)
    with pytest.raises(CheckpointError, match="diffusion_objective 'v' is not supported"):
        load_backend(bad)
    deep = tmp_path / "deep"
    d_cfg = json.loads(json.dumps(cfg))
    d_cfg["model"]["diffusion"]["config"]["depth"] = 3
    ref.write_model(deep, d_cfg, nets)
    with pytest.raises(CheckpointError, match=r"DiT weights do not match .*missing transformer_blocks\.2\."):
        load_backend(deep)
    no_t5 = tmp_path / "no-t5"
    ref.write_model(no_t5, cfg, nets)
    import shutil

    shutil.rmtree(no_t5 / "text_encoder")
    with pytest.raises(CheckpointError, match=r"hf download google-t5/t5-base"):
        load_backend(no_t5)
    assert main(["generate", "--model", str(bad), "--prompt", PROMPT, "--output", str(tmp_path / "x.wav")]) != 0


def test_inspect_and_doctor_read_a_stable_audio_tools_folder(small: tuple[Path, dict, dict],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from sampleforge.eval import doctor

    folder, _, nets = small
    assert main(["inspect", str(folder)]) == 0
    out = capsys.readouterr().out
    dit_params = sum(p.numel() for p in nets["dit"].state_dict().values())
    assert "rf_denoiser DiT: 2 layers x 128 wide" in out and "seconds_total (number)" in out
    assert f"{dit_params:,} params" in out and "pingpong" in out and "defaults 8 steps, cfg 1" in out
    check = doctor.check_model(str(folder))
    assert check.status == "ok" and "stable-audio-tools" in check.detail
