"""The reference API (``sampleforge.generate``) and a loaded model's ``generate`` take what they are given or say
why not: the file's format and length as asked, the model asked for, warnings where Python shows them, and
settings that cannot apply refused naming them (they were recorded and did nothing)."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from safetensors.torch import load_file, save_file

import sampleforge
from sampleforge.api import load_generator
from sampleforge.audio.io import read_metadata
from sampleforge.errors import GenerationWarning, ParamError, UserInputError
from sampleforge.pipeline import Generator

FAST = {"ddim_steps": 2, "seed": 1}


def test_generate_writes_the_format_and_length_asked(debug_model: Path, tmp_path: Path) -> None:
    flac = sampleforge.generate(model=str(debug_model), prompt="kick", output_path=tmp_path / "a.flac", **FAST)
    assert sf.info(str(flac)).format == "FLAC" and read_metadata(flac)["format"] == "flac"
    pcm = sampleforge.generate(model=str(debug_model), prompt="kick", output_path=tmp_path / "b.wav",
                               format="wav16", **FAST)
    assert sf.info(str(pcm)).subtype == "PCM_16"
    full = sampleforge.generate(model=str(debug_model), prompt="kick", output_path=tmp_path / "c.wav", **FAST)
    short = sampleforge.generate(model=str(debug_model), prompt="kick", output_path=tmp_path / "d.wav",
                                 length=0.5, **FAST)
    assert sf.info(str(full)).frames == 88200 and sf.info(str(short)).frames == 22050
    assert read_metadata(short)["length"] == "0.5"
    auto = sampleforge.generate(model=str(debug_model), prompt="kick", format="flac", **FAST)
    assert auto.suffix == ".flac" and sf.info(str(auto)).format == "FLAC"
    auto.unlink()


@pytest.mark.parametrize("name, settings, needle", [
    ("x.mp3", {}, "output_path x.mp3: sampleforge writes .wav or .flac files (see format); e.g. output_path='x.wav'"),
    ("x.flac", {"format": "wav16"}, "output_path x.flac and format='wav16' disagree"),
    (".wav", {}, "give the file a name before its suffix"),
    ("new/", {}, "output_path: new/ names a folder"),
    ("x" * 300 + ".wav", {}, "File name too long"),
])
def test_generate_refuses_an_output_path_no_clip_can_have(debug_model: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch, name: str,
                                                          settings: dict[str, str], needle: str) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ParamError, match="^output_path") as err:
        sampleforge.generate(model=str(debug_model), prompt="kick", output_path=name, **settings, **FAST)
    assert needle in str(err.value)
    assert [p for p in tmp_path.iterdir() if not p.name.startswith(".")] == []


@pytest.mark.parametrize("setting", [{"strength": 0.9}, {"input": "my.wav"}, {"morph_steps": 9}, {"pieces": "kick"},
                                     {"fit_steps": 0}])
def test_generate_refuses_the_settings_of_a_variation_morph_or_kit(debug_model: Path, setting: dict) -> None:
    (name,) = setting
    with pytest.raises(ParamError, match=f"^{name}: generate\\(\\) makes a clip from a prompt"):
        sampleforge.generate(model=str(debug_model), prompt="kick", **setting, **FAST)


@pytest.mark.parametrize("setting", [{"strength": 0.9}, {"input": "my.wav"}, {"morph_steps": 9}, {"pieces": "kick"},
                                     {"count": 2}])
def test_generate_refuses_a_params_object_of_another_operation(debug_model: Path, setting: dict) -> None:
    """A params object's settings of a variation, morph or kit did nothing (a fresh clip from the prompt)."""
    from sampleforge.params import GenerationParams

    (name,) = setting
    base = GenerationParams(prompt="kick", model=str(debug_model), **setting)
    with pytest.raises(ParamError, match=f"^params.{name}: generate\\(\\) makes"):
        sampleforge.generate(params=base, **FAST)


@pytest.mark.parametrize("setting, needle", [
    ({"model": "drums-v1"}, "model: this model is loaded already"),
    ({"prompt": "snare"}, "prompt: give the prompts as the first argument"),
    ({"quantize": "int8"}, "quantize: applies when the model loads"),
    ({"format": "flac"}, "format: a file's setting"),
    ({"length": "auto"}, "length: a file's setting"),
    ({"strength": 0.9}, "strength: a variation's"),
    ({"round_robins": 3}, "round_robins: a kit's"),
])
def test_a_loaded_model_refuses_settings_a_call_cannot_apply(debug_model: Path, setting: dict, needle: str) -> None:
    gen = Generator.from_pretrained(debug_model, device="cpu")
    with pytest.raises(ParamError) as err:
        gen.generate("kick", steps=2, seed=1, **setting)
    assert str(err.value).startswith(needle)
    assert gen.generate("kick", steps=2, seed=1, format="wav", quantize="none").shape == (1, 88200)  # the defaults
    with pytest.raises(UserInputError, match="^params: a GenerationParams, got dict"):
        gen.generate("kick", params={"steps": 2})  # type: ignore[arg-type]


def test_warnings_reach_python(debug_model: Path, tmp_path: Path) -> None:
    with pytest.warns(GenerationWarning, match="unknown keyword 'kik'"):
        sampleforge.generate(model=str(debug_model), prompt="kik", output_path=tmp_path / "k.wav", **FAST)
    gen = Generator.from_pretrained(debug_model, device="cpu")
    with pytest.warns(GenerationWarning, match="kik"):
        gen.generate("kik", steps=2, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", message=".* still rings")  # the random model's clips ring to their end
        gen.generate("kick", steps=2, seed=1)  # nothing else to warn of, no warning
        assert gen.generate_full("kik", steps=2, seed=1).warnings  # generate_full returns them, warns of none


def test_checkpoint_arguments_replace_what_they_name(debug_model: Path, tmp_path: Path) -> None:
    other = shutil.copytree(debug_model, tmp_path / "other")
    with pytest.raises(UserInputError, match="both name the model"):
        load_generator(diffusion_checkpoint=str(other), model=str(debug_model))
    gen, _ = load_generator(vae_checkpoint=str(other), model=str(debug_model))
    assert gen.id.startswith("debug@")  # the model asked for, with the other folder's VAE
    with pytest.raises(ParamError, match="^vae_checkpoint: "):
        load_generator(vae_checkpoint="no-such-model")
    with pytest.raises(ParamError, match=r"^diffusion_checkpoint: unknown model 'kick'.*the prompt goes as prompt="):
        sampleforge.generate("kick")
    no_voc = shutil.copytree(debug_model, tmp_path / "plain")
    (no_voc / "vocoder.safetensors").unlink()
    with pytest.raises(ParamError, match=f"^vocoder_checkpoint: {no_voc} has no vocoder"):
        load_generator(model=str(debug_model), vocoder_checkpoint=str(no_voc))


def test_a_model_folder_written_again_is_loaded_again(listening_model: Path, tmp_path: Path) -> None:
    folder = shutil.copytree(listening_model, tmp_path / "run-model")
    first = sampleforge.generate(model=folder, prompt="kick", output_path=tmp_path / "1.wav", **FAST)  # a Path
    weights = load_file(folder / "unet.safetensors")
    save_file({k: v * 1.5 if v.is_floating_point() else v for k, v in weights.items()}, folder / "unet.safetensors")
    second = sampleforge.generate(model=folder, prompt="kick", output_path=tmp_path / "2.wav", **FAST)
    assert read_metadata(first)["model"] != read_metadata(second)["model"]
    assert not np.array_equal(sf.read(first)[0], sf.read(second)[0])


def test_generate_starts_from_a_generation_params(debug_model: Path, tmp_path: Path) -> None:
    from sampleforge.params import GenerationParams

    base = GenerationParams(prompt="snare", steps=2, seed=4, model=str(debug_model))
    path = sampleforge.generate(params=base, output_path=tmp_path / "a.wav")
    meta = read_metadata(path)
    assert (meta["prompt"], meta["steps"], meta["seed"]) == ("snare", "2", "4")
    over = sampleforge.generate(params=base, prompt="kick", ddim_steps=3, output_path=tmp_path / "b.wav")
    assert (read_metadata(over)["prompt"], read_metadata(over)["steps"]) == ("kick", "3")
    with pytest.raises(ParamError, match="^params: a GenerationParams, got dict"):
        sampleforge.generate(params={"steps": 2})


def test_a_loaded_models_vary_and_morph_refuse_what_they_cannot_apply(debug_model: Path) -> None:
    from sampleforge.pipeline import MorphEnd

    gen = Generator.from_pretrained(debug_model, device="cpu")
    clip = gen.generate("snare", steps=2, seed=1)[0]
    with pytest.raises(ParamError, match="^model: this model is loaded already"):
        gen.vary(clip, steps=2, model="drums-v1")
    with pytest.raises(ParamError, match="^morph_steps: a morph's"):
        gen.vary(clip, steps=2, morph_steps=4)
    with pytest.raises(ParamError, match="^format: a file's setting"):
        gen.morph(MorphEnd("kick", 1), MorphEnd("snare", 2), steps=2, format="flac")
    assert gen.vary(clip, steps=2, strength=0.5, count=1).audio.shape[0] == 1  # its own settings
    assert gen.morph(MorphEnd("kick", 1), MorphEnd("snare", 2), steps=2, morph_steps=3).audio.shape[0] == 3
