"""sampleforge's output equals the direct library call for the same seed, for every backend, through the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sampleforge.cli import main
from sampleforge.eval.metrics import peak_correlation as correlation

PROMPT = "kick drum"
ARGS = {"steps": 4, "cfg_scale": 3.0, "seed": 7, "duration": 1.0}


def _cli(model: Path | str, out: Path, *extra: str) -> np.ndarray:
    code = main(["generate", "--model", str(model), "--prompt", PROMPT, "--steps", "4", "--cfg-scale", "3",
                 "--seed", "7", "--duration", "1", "--output", str(out), "--quiet", *extra])
    assert code == 0
    wav, _ = sf.read(out, dtype="float32", always_2d=True)
    return wav.T  # (C, T)


def test_stable_audio_cli_equals_pipeline(sa_dir: Path, tmp_path: Path) -> None:
    import diffusers

    pipe = diffusers.StableAudioPipeline.from_pretrained(sa_dir)
    pipe.set_progress_bar_config(disable=True)
    ref = pipe(PROMPT, num_inference_steps=4, guidance_scale=3.0, audio_end_in_s=1.0,
               generator=torch.Generator().manual_seed(7)).audios[0]
    wav = _cli(sa_dir, tmp_path / "x.wav")
    assert wav.shape == tuple(ref.shape) == (2, 512)  # stereo kept
    assert correlation(wav, ref) > 0.99
    mono = _cli(sa_dir, tmp_path / "m.wav", "--channels", "mono")
    assert mono.shape == (1, 512) and correlation(mono[0], ref.mean(0)) > 0.99


def test_audioldm2_cli_equals_pipeline(ldm_dir: Path, tmp_path: Path) -> None:
    import diffusers

    pipe = diffusers.AudioLDM2Pipeline.from_pretrained(ldm_dir)
    pipe.set_progress_bar_config(disable=True)
    ref = pipe(PROMPT, num_inference_steps=4, guidance_scale=3.0, audio_length_in_s=1.0,
               generator=torch.Generator().manual_seed(7)).audios[0]
    wav = _cli(ldm_dir, tmp_path / "x.wav")
    assert wav.shape == (1, ref.shape[-1]) and correlation(wav[0], ref) > 0.99


def test_stable_audio_3_cli_equals_pipeline(sa3_dir: Path, tmp_path: Path) -> None:
    import diffusers

    pipe = diffusers.StableAudio3Pipeline.from_pretrained(sa3_dir)
    pipe.set_progress_bar_config(disable=True)
    ref = pipe(PROMPT, num_inference_steps=4, guidance_scale=3.0, duration=1.0,
               generator=torch.Generator().manual_seed(7)).audios[0]
    wav = _cli(sa3_dir, tmp_path / "x.wav")
    assert wav.shape == tuple(ref.shape) and correlation(wav, ref) > 0.99


def test_stable_audio_3_audio_to_audio_and_inpaint_equal_their_pipelines(sa3_dir: Path, tmp_path: Path) -> None:
    import diffusers

    from sampleforge.backends import BackendOptions, load_backend
    from sampleforge.errors import UserInputError

    backend = load_backend(sa3_dir, BackendOptions(device="cpu"))
    init = torch.sin(torch.linspace(0, 200, 64))
    sf.write(tmp_path / "init.wav", init.numpy(), 64, subtype="FLOAT")  # the tiny VAE's rate: no resampling
    init_audio = init.expand(1, 2, 64).contiguous()
    a2a = diffusers.StableAudio3AudioToAudioPipeline.from_pretrained(sa3_dir)
    inp = diffusers.StableAudio3InpaintPipeline.from_pretrained(sa3_dir)
    for pipe, settings, extra in (
        (a2a, {"init_noise": 0.6}, {"init_noise_level": 0.6}),
        (inp, {"mask_start": 0.25, "mask_end": 0.75}, {"mask_start_seconds": 0.25, "mask_end_seconds": 0.75}),
    ):
        pipe.set_progress_bar_config(disable=True)
        ref = pipe(PROMPT, audio=init_audio, num_inference_steps=4, duration=1.0,
                   generator=torch.Generator().manual_seed(7), **extra).audios[0]
        got = backend.generate_full(PROMPT, steps=4, cfg_scale=1.0, seed=7, duration=1.0,
                                    init_audio=str(tmp_path / "init.wav"), **settings)
        assert correlation(got.raw[0], ref) > 0.99
    with pytest.raises(UserInputError, match="init_audio"):
        backend.generate_full(PROMPT, **ARGS, mask_start=0.1)


def test_models_refuse_settings_they_do_not_take(debug_model: Path, sa_dir: Path, tmp_path: Path) -> None:
    from sampleforge.backends import BackendOptions, load_backend
    from sampleforge.errors import UserInputError

    for model in (debug_model, sa_dir):
        backend = load_backend(model, BackendOptions(device="cpu"))
        with pytest.raises(UserInputError, match="init_audio"):
            backend.generate_full(PROMPT, steps=1, seed=1, duration=0.5, init_audio=str(tmp_path / "x.wav"))


def test_adp_checkpoint_with_our_sampler_equals_the_library_sampler(adp_ckpt: Path, tmp_path: Path) -> None:
    import json

    from sampleforge.backends.adp import build_model, read_state

    unet = json.loads(adp_ckpt.with_suffix(".json").read_text())
    model = build_model(unet)
    model.load_state_dict(read_state(adp_ckpt, list(model.state_dict())))
    length = 44112  # 1 s rounded up to a multiple of the tiny U-Net's downsampling (16)
    noise = torch.randn(2, length, generator=torch.Generator().manual_seed(7))[None]
    ref = model.sample(noise, num_steps=4)[0, :, :44100]
    wav = _cli(adp_ckpt, tmp_path / "x.wav")
    assert wav.shape == tuple(ref.shape) and correlation(wav, ref) > 0.99
