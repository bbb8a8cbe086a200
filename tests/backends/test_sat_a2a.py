"""Audio-to-audio on stable-audio-tools folders: the Oobleck encoder's mapping checked against stable-audio-tools'
own encoder and VAE pretransform, the CLI's output against its generate_diffusion_cond path, and the errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sampleforge.backends import BackendOptions, load_backend
from sampleforge.backends.sat import ENCODER, convert_encoder
from sampleforge.cli import main
from sampleforge.errors import CheckpointError, UserInputError
from sampleforge.eval.metrics import peak_correlation as correlation
from tests.backends import sat_reference as ref

PROMPT = "kick drum"
SR = 512  # the tiny models' sample rate


def init_signal(sample_rate: int, seconds: float = 1.5) -> np.ndarray:
    """A decaying two-tone hit (T,), band-limited well below 256 Hz so that it resamples cleanly."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    return (0.8 * np.exp(-3 * t) * (np.sin(2 * np.pi * 31 * t) + 0.5 * np.sin(2 * np.pi * 73 * t))).astype(np.float32)


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    """A tiny folder whose pretransform scales its latents (scale 2) and whose encoder is as wide as its output.

    Its VAE is made to behave like a trained one, so that the init audio shows in the output: no biases (a
    random one's biases drown its input), latent means of unit scale, a narrow posterior (std ~1e-4)."""
    cfg = ref.tiny_config(encoder_channels=8, scale=2.0)
    nets = ref.build_networks(cfg, seed=4)
    with torch.no_grad():
        for name, param in [*nets["encoder"].named_parameters(), *nets["decoder"].named_parameters()]:
            if name.endswith("bias"):
                param.zero_()
        last = nets["encoder"].layers[-1]
        last.weight_g[:4] *= 12  # the posterior's mean half: std ~0.9 on the test clip
        last.bias[4:] = -10.0  # its scale half: softplus(-10) = 4.5e-5
    return ref.write_model(tmp_path_factory.mktemp("sat-a2a") / "scaled", cfg, nets), cfg, nets


@pytest.fixture(scope="module")
def init_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("init") / "hit.wav"
    sf.write(path, init_signal(SR), SR, subtype="FLOAT")
    return path


def test_encoder_keys_shapes_and_latents_equal_stable_audio_tools(sat_small: tuple[Path, dict, dict],
                                                                 scaled: tuple[Path, dict, dict]) -> None:
    from safetensors.torch import load_file

    for folder, cfg, nets in (sat_small, scaled):
        backend = load_backend(folder, BackendOptions(device="cpu"))
        assert backend.encoder is not None
        state = load_file(str(folder / "model.safetensors"))
        assert sum(k.startswith(ENCODER) for k in state) == len(nets["encoder"].state_dict())
        mapped = convert_encoder(state, len(cfg["model"]["pretransform"]["config"]["encoder"]["config"]["c_mults"]))
        ours = backend.encoder.state_dict()
        assert set(mapped) == set(ours)  # every encoder tensor used, none missing
        assert {k: tuple(v.shape) for k, v in mapped.items()} == {k: tuple(v.shape) for k, v in ours.items()}
        audio = torch.randn(1, 2, 1024, generator=torch.Generator().manual_seed(1)) * 0.5
        with torch.inference_mode():
            want_params = nets["encoder"](audio)
            torch.testing.assert_close(backend.encoder(audio), want_params, atol=1e-5, rtol=1e-4)
            torch.manual_seed(11)
            want = ref.pretransform(cfg, nets).encode(audio)  # VAE posterior draw from the global generator
        got = backend.encode(audio, [torch.Generator().manual_seed(11)])
        assert want.std() > 0.1 and got.shape == want.shape == (1, 4, 128)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(("init_noise", "steps", "cfg_scale"), [(0.7, 8, 1.0), (0.4, 4, 3.0)])
def test_cli_init_audio_equals_stable_audio_tools(scaled: tuple[Path, dict, dict], init_wav: Path, tmp_path: Path,
                                                  init_noise: float, steps: int, cfg_scale: float) -> None:
    folder, cfg, nets = scaled
    out = tmp_path / "a2a.wav"
    assert main(["generate", "--model", str(folder), "--prompt", PROMPT, "--init-audio", str(init_wav),
                 "--init-noise", str(init_noise), "--steps", str(steps), "--cfg-scale", str(cfg_scale),
                 "--seed", "7", "--duration", "1", "--output", str(out), "--quiet"]) == 0
    wav, sr = sf.read(out, dtype="float32", always_2d=True)
    audio = torch.from_numpy(sf.read(init_wav, dtype="float32")[0])[None]
    want = ref.generate(folder, cfg, nets, PROMPT, seed=7, steps=steps, cfg_scale=cfg_scale, seconds=1.0,
                        init_audio=(SR, audio), init_noise=init_noise)
    assert sr == SR and wav.T.shape == tuple(want.shape) == (2, SR)
    assert correlation(wav.T, want.numpy()) > 0.99
    # the init audio matters: none, or another clip, gives other audio for the same seed
    text_only = ref.generate(folder, cfg, nets, PROMPT, seed=7, steps=steps, cfg_scale=cfg_scale, seconds=1.0)
    assert correlation(wav.T, text_only.numpy()) < 0.99
    other = ref.generate(folder, cfg, nets, PROMPT, seed=7, steps=steps, cfg_scale=cfg_scale, seconds=1.0,
                         init_audio=(SR, audio.flip(-1)), init_noise=init_noise)
    assert correlation(wav.T, other.numpy()) < 0.99


def test_init_audio_is_resampled_and_init_noise_zero_keeps_it(scaled: tuple[Path, dict, dict], init_wav: Path,
                                                              tmp_path: Path) -> None:
    folder, cfg, nets = scaled
    model = load_backend(folder, BackendOptions(device="cpu"))
    call = {"seed": 3, "duration": 1.0, "init_noise": 0.0}
    kept = model.generate_full(PROMPT, init_audio=str(init_wav), **call)
    assert {"encode_s", "sample_s", "decode_s"} <= set(kept.stats)
    hi = tmp_path / "hit-2x.flac"
    sf.write(hi, init_signal(2 * SR), 2 * SR)  # the same hit at twice the rate, 24-bit
    assert correlation(model.generate_full(PROMPT, init_audio=str(hi), **call).raw, kept.raw) > 0.99
    reversed_hit = tmp_path / "reversed.wav"
    sf.write(reversed_hit, init_signal(SR)[::-1], SR)
    assert correlation(model.generate_full(PROMPT, init_audio=str(reversed_hit), **call).raw, kept.raw) < 0.9
    audio = torch.from_numpy(sf.read(init_wav, dtype="float32")[0])[None]
    sat = ref.load()
    with torch.inference_mode():
        torch.manual_seed(3)
        torch.randn(1, 4, 128)  # the starting noise, drawn before the posterior sample
        pre = ref.pretransform(cfg, nets)
        z = pre.encode(sat.utils.prepare_audio(audio, in_sr=SR, target_sr=SR, target_length=cfg["sample_size"],
                                               target_channels=2, device="cpu"))
        torch.testing.assert_close(kept.latents, z, atol=1e-5, rtol=1e-4)
        assert correlation(kept.raw, pre.decode(z)[..., :SR]) > 0.999


def test_default_init_noise_warns_that_nothing_is_kept(sat_small: tuple[Path, dict, dict], init_wav: Path) -> None:
    model = load_backend(sat_small[0], BackendOptions(device="cpu"))
    g = model.generate_full(PROMPT, seed=1, duration=1.0, init_audio=str(init_wav))
    assert any("init_noise 1" in w for w in g.warnings)
    assert not any("init_noise" in w for w in model.generate_full(PROMPT, seed=1, duration=1.0).warnings)
    assert model.describe()["space"]["settings"] == ["init_audio", "init_noise"]
    with pytest.raises(UserInputError, match="init_noise needs the audio"):
        model.generate_full(PROMPT, duration=1.0, init_noise=0.5)
    with pytest.raises(UserInputError, match="mask_start: this model does not take it"):
        model.generate_full(PROMPT, duration=1.0, init_audio=str(init_wav), mask_start=0.1, mask_end=0.5)


def test_bad_init_audio_and_missing_encoder_weights_are_one_line_errors(
        sat_small: tuple[Path, dict, dict], init_wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from safetensors.torch import load_file, save_file

    folder, cfg, nets = sat_small
    args = ["generate", "--prompt", PROMPT, "--duration", "1", "--output", str(tmp_path / "x.wav"), "--model"]
    broken = tmp_path / "broken.wav"
    broken.write_text("not audio")
    for bad, named in ((broken, "cannot read as audio"), (tmp_path / "absent.wav", "no such file")):
        assert main([*args, str(folder), "--init-audio", str(bad)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(bad) in err[0] and named in err[0], err
    capsys.readouterr()
    # a folder without the encoder's weights still generates from text; audio-to-audio names what is missing
    no_enc = ref.write_model(tmp_path / "no-encoder", cfg, nets)
    state = load_file(str(no_enc / "model.safetensors"))
    save_file({k: v for k, v in state.items() if not k.startswith(ENCODER)}, str(no_enc / "model.safetensors"))
    assert main([*args, str(no_enc), "--quiet"]) == 0
    (tmp_path / "x.wav").unlink()
    assert main([*args, str(no_enc), "--init-audio", str(init_wav), "--init-noise", "0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no Oobleck encoder weights (pretransform.model.encoder.*)" in err[0], err
    assert not (tmp_path / "x.wav").exists()
    assert load_backend(no_enc, BackendOptions(device="cpu")).describe()["space"]["settings"] == []
    # a damaged encoder (one tensor missing) is refused at load, naming the tensor
    dropped = next(k for k in state if k.startswith(ENCODER) and k.endswith("weight_v"))
    save_file({k: v for k, v in state.items() if k != dropped}, str(no_enc / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"encoder weights do not match .*missing "):
        load_backend(no_enc)
    # an encoder that is not a VAE's (latent_dim not twice the decoder's): text-to-audio only, with the reason
    odd = json.loads(json.dumps(cfg))
    odd["model"]["pretransform"]["config"]["encoder"]["config"]["latent_dim"] = 4
    (no_enc / "model_config.json").write_text(json.dumps(odd))
    save_file(state, str(no_enc / "model.safetensors"))
    with pytest.raises(UserInputError, match="latent_dim 4 is not twice the decoder's 4"):
        load_backend(no_enc, BackendOptions(device="cpu")).generate_full(PROMPT, init_audio=str(init_wav))


def test_init_audio_encodes_in_chunks_with_the_same_latents(scaled: tuple[Path, dict, dict], init_wav: Path) -> None:
    """decode_chunk also chunks the init audio's encode (whole latent frames, with context): the same latents."""
    folder, _, _ = scaled
    model = load_backend(folder, BackendOptions(device="cpu"))
    audio = torch.from_numpy(init_signal(SR, 2.0))[None, None].expand(1, 2, -1).contiguous()
    whole = model.encode(audio, [torch.Generator().manual_seed(5)])
    pieces = model.encode(audio, [torch.Generator().manual_seed(5)], chunk_s=0.25)  # 16 frames a chunk, 8 chunks
    assert pieces.shape == whole.shape == (1, 4, 128)
    torch.testing.assert_close(pieces, whole, atol=1e-3 * float(whole.abs().max()), rtol=0)
    call = {"seed": 3, "duration": 1.0, "init_noise": 0.0, "init_audio": str(init_wav)}
    kept, chunked = model.generate_full(PROMPT, **call), model.generate_full(PROMPT, decode_chunk=0.25, **call)
    assert correlation(chunked.raw, kept.raw) > 0.999 and torch.allclose(chunked.latents, kept.latents, atol=1e-3)
