"""Generation API: format, determinism per seed, batch == one by one, Griffin-Lim path, errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import sampleforge
from sampleforge.api import auto_name
from sampleforge.audio.io import read_metadata
from sampleforge.errors import ParamError, UserInputError
from sampleforge.pipeline import Generator


@pytest.fixture(scope="module")
def gen(debug_model: Path) -> Generator:
    return Generator.from_pretrained(debug_model, device="cpu")


def test_output_shape_and_peak(gen: Generator) -> None:
    audio = gen.generate(["kick", "snare"], n=2, steps=3, seed=1)
    assert audio.shape == (4, 88200) and audio.dtype == torch.float32
    assert torch.isfinite(audio).all()
    peaks = audio.abs().amax(dim=1)
    torch.testing.assert_close(peaks, torch.full((4,), 0.95), atol=1e-4, rtol=0)


def test_same_seed_same_audio_and_batch_equals_single(gen: Generator) -> None:
    a = gen.generate("kick", n=3, steps=4, seed=7)
    b = gen.generate("kick", n=3, steps=4, seed=7)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    third = gen.generate("kick", n=1, steps=4, seed=9)  # clip k of a batch uses seed + k
    torch.testing.assert_close(a[2:3], third, atol=1e-4, rtol=0)
    assert not torch.allclose(a[0], a[1])


def test_duration(gen: Generator) -> None:
    assert gen.generate("kick", steps=2, seed=0, duration=0.5).shape == (1, 22050)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"steps": 0}, "steps"),
        ({"steps": -5}, "steps"),
        ({"cfg_scale": math.nan}, "cfg_scale"),
        ({"cfg_scale": math.inf}, "cfg_scale"),
        ({"n": 0}, "n must be"),
        ({"count": 0}, "count must be"),
        ({"eta": 1.5}, "eta"),
        ({"flow_shift": 0.0}, "flow_shift"),
        ({"steps_offset": -1}, "steps_offset"),
        ({"bogus": 1}, "unknown generation setting 'bogus'"),
        ({"duration": 0.0}, "duration"),
        ({"duration": 99.0}, "duration"),
        ({"sampler": "nope"}, "sampler"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_values(gen: Generator, kwargs: dict, field: str) -> None:
    with pytest.raises(UserInputError, match=field):
        gen.generate("kick", **{"steps": 2, **kwargs})


def test_unknown_keywords_are_warned(gen: Generator) -> None:
    warnings = gen.check_prompt("kick zorblax")
    assert len(warnings) == 1 and "zorblax" in warnings[0]
    assert gen.generate_full("kick zorblax", steps=2, seed=0).warnings == warnings
    assert gen.check_prompt("kick") == []


def test_reference_api_writes_wav(debug_model: Path, tmp_path: Path) -> None:
    out = sampleforge.generate(
        diffusion_checkpoint=debug_model,
        vae_checkpoint=debug_model,
        vocoder_checkpoint=debug_model,
        prompt="punchy kick",
        cfg_scale=3.0,
        ddim_steps=3,
        output_path=tmp_path / "k.wav",
        seed=42,
    )
    assert out == tmp_path / "k.wav"
    info = sf.info(str(out))
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (44100, 1, 88200, "FLOAT")
    wav, _ = sf.read(str(out), dtype="float32")
    assert abs(float(np.abs(wav).max()) - 0.95) < 1e-4
    meta = read_metadata(out)
    assert meta["prompt"] == "punchy kick" and meta["seed"] == "42"
    again = sampleforge.generate(
        diffusion_checkpoint=debug_model,
        vae_checkpoint=debug_model,
        vocoder_checkpoint=debug_model,
        prompt="punchy kick",
        ddim_steps=3,
        output_path=tmp_path / "k2.wav",
        seed=42,
    )
    np.testing.assert_array_equal(wav, sf.read(str(again), dtype="float32")[0])


def test_reference_api_none_vocoder_is_griffin_lim(debug_model: Path, tmp_path: Path) -> None:
    kw = dict(
        diffusion_checkpoint=debug_model, vae_checkpoint=debug_model, prompt="kick", ddim_steps=3, seed=1
    )
    gl = sampleforge.generate(vocoder_checkpoint=None, output_path=tmp_path / "gl.wav", **kw)
    voc = sampleforge.generate(vocoder_checkpoint=debug_model, output_path=tmp_path / "voc.wav", **kw)
    a, b = sf.read(str(gl))[0], sf.read(str(voc))[0]
    assert a.shape == b.shape == (88200,)
    assert not np.allclose(a, b)
    # False and True, as make_kit's, vary's and morph's vocoder=: Griffin-Lim and the model's own
    off = sampleforge.generate(vocoder_checkpoint=False, output_path=tmp_path / "off.wav", **kw)
    on = sampleforge.generate(vocoder_checkpoint=True, output_path=tmp_path / "on.wav", **kw)
    assert np.array_equal(sf.read(str(off))[0], a) and np.array_equal(sf.read(str(on))[0], b)


@pytest.mark.parametrize(("kwargs", "field"), [({"vocoder_checkpoint": 5}, "vocoder_checkpoint"),
                                               ({"diffusion_checkpoint": 123}, "diffusion_checkpoint"),
                                               ({"vae_checkpoint": ""}, "vae_checkpoint"),
                                               ({"output_path": 123}, "output_path")])
def test_reference_api_names_a_checkpoint_or_path_of_the_wrong_type(kwargs: dict, field: str, tmp_path: Path) -> None:
    with pytest.raises(ParamError, match=f"^{field}: ") as err:
        sampleforge.generate(prompt="kick", ddim_steps=2, **kwargs)
    assert err.value.name == field


def test_a_vocoder_setting_that_is_not_true_or_false_is_refused(gen: Generator) -> None:
    with pytest.raises(ParamError, match="vocoder: True .* or False .*drums-vocoder-v1"):
        gen.generate("kick", steps=2, seed=1, vocoder="drums-vocoder-v1")  # type: ignore[arg-type]
    with pytest.raises(ParamError, match="vocoder: True"):
        gen.generate_full("kick", steps=2, seed=1, candidates=2, vocoder="x")  # type: ignore[arg-type]


def test_reference_api_auto_name(debug_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = sampleforge.generate(
        diffusion_checkpoint=debug_model, prompt="Punchy 808 Kick", ddim_steps=2, seed=3
    )
    assert out.parent == Path("generations") and out.suffix == ".wav"
    assert out.name.startswith("kick_punchy_808_") and len(out.stem.split("_")[-1]) == 8
    assert (tmp_path / out).is_file()


def test_auto_name_without_class() -> None:
    assert auto_name("deep", 1, "m", 50, 3.0).name.startswith("drum_deep_")
    assert auto_name("closed hh", 1, "m", 50, 3.0).name.startswith("closed_hat_")


def test_reference_api_unwritable(debug_model: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserInputError, match=f"{blocker} is a file, not a folder"):
        sampleforge.generate(
            diffusion_checkpoint=debug_model,
            prompt="kick",
            ddim_steps=2,
            output_path=blocker / "sub" / "x.wav",
        )


def test_griffin_lim_settings_come_from_the_model_config(debug_model: Path, tmp_path: Path) -> None:
    import json
    import shutil

    model = tmp_path / "model"
    shutil.copytree(debug_model, model)
    cfg = json.loads((model / "config.json").read_text())
    cfg["griffin_lim"] = {"n_iter": 3, "init": "zeros"}
    (model / "config.json").write_text(json.dumps(cfg))
    gl = Generator.from_pretrained(model, device="cpu").griffin_lim
    assert (gl.n_iter, gl.init) == (3, "zeros")
    assert Generator.from_pretrained(debug_model, device="cpu").griffin_lim.n_iter == 32


@pytest.fixture(scope="module")
def lively(gen: Generator) -> Generator:
    """The debug model with random U-Net weights (its output conv starts at zero, so it predicts nothing)."""
    import copy

    bundle = copy.deepcopy(gen.bundle)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in bundle.unet.parameters():
            p.normal_(0.0, 0.05)
    return Generator(bundle, device="cpu")


def test_bf16_precision_is_close_to_fp32_and_deterministic(lively: Generator) -> None:
    gen = lively
    a = gen.generate_full("kick", steps=4, seed=3)
    b = gen.generate_full("kick", steps=4, seed=3, precision="bf16")
    c = gen.generate_full("kick", steps=4, seed=3, precision="bf16")
    assert b.latents.dtype == torch.float32
    torch.testing.assert_close(b.latents, c.latents, rtol=0, atol=0)  # same seed, same precision: same clip
    rel = float((a.latents - b.latents).norm() / a.latents.norm())
    assert 0 < rel < 0.05  # bfloat16 differs, a little
    with pytest.raises(UserInputError, match="precision"):
        gen.generate_full("kick", steps=2, seed=0, precision="fp8")
    with pytest.raises(UserInputError, match="precision"):
        Generator(gen.bundle, device="cpu", precision="half")


def test_sampler_knobs_are_reachable(lively: Generator) -> None:
    gen = lively
    base = gen.generate_full("kick", steps=3, seed=0).latents
    assert not torch.equal(base, gen.generate_full("kick", steps=3, seed=0, eta=1.0).latents)
    with pytest.raises(UserInputError, match=r"steps_offset applies to the 'uniform' \(leading\) spacing"):
        gen.generate("kick", steps=3, seed=0, steps_offset=1)  # the debug model samples "trailing"
    with pytest.raises(UserInputError, match="flow_shift applies to flow models"):
        gen.generate("kick", steps=3, seed=0, flow_shift=2.0)
    assert torch.equal(base, gen.generate_full("kick", steps=3, seed=0, eta=0.0).latents)  # ddim's default


def test_settings_left_to_the_model_are_filled_in(gen: Generator) -> None:
    g = gen.generate_full("kick", steps=2, seed=5)
    assert g.params.sampler == gen.samplers[0] == "ddim" and g.params.duration == gen.bundle.config.duration
    assert g.params.precision == "fp32" and g.params.seed == 5
    with pytest.raises(UserInputError, match="flow_euler"):
        gen.generate("kick", steps=2, seed=0, sampler="flow_euler")
