"""Bad recipes and bad `sampleforge train` flags: each is refused with one line naming the file and the field, or the
flag, before anything trains; and what a run reads (its clips, its first weights) is what the user meant."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from sampleforge.cli import build_parser, main
from sampleforge.errors import UserInputError
from sampleforge.model_config import DiffusionConfig, ModelConfig, read_config
from sampleforge.strict import ConfigError, require_at_least
from sampleforge.train.loop import TrainConfig
from sampleforge.train.recipe import DataConfig, RecipeConfig, load_recipe, training_clips

REPO = Path(__file__).resolve().parents[2]
DEBUG = REPO / "configs" / "debug.json"


def recipe_file(tmp_path: Path, edit: dict[str, Any] | None = None, name: str = "recipe.json") -> Path:
    """configs/debug.json with the sections of ``edit`` laid over it (key by key, through ``extends``)."""
    path = tmp_path / name
    path.write_text(json.dumps({"extends": str(DEBUG), **(edit or {})}))
    return path


def at(path: Path) -> str:
    """``path`` as a regular expression that matches it."""
    return re.escape(str(path))


def write_clips(folder: Path, names: list[str], kit: str | None = None) -> None:
    """Short decaying tones, one per name (``kick_1.wav``...), in ``folder`` (with a kit.json naming ``kit``)."""
    folder.mkdir(parents=True, exist_ok=True)
    if kit is not None:
        (folder / "kit.json").write_text(json.dumps({"name": kit}))
    t = np.arange(int(0.3 * 44100)) / 44100
    for i, name in enumerate(names):
        wav = 0.8 * np.sin(2 * np.pi * (60 + 40 * i) * t) * np.exp(-t / 0.05)
        sf.write(str(folder / name), wav.astype(np.float32), 44100)


# ---- files that are not a recipe's JSON ----

def test_a_recipe_that_is_not_utf8_text_is_refused_naming_the_file(tmp_path: Path) -> None:
    wav, latin1 = tmp_path / "sample.json", tmp_path / "latin1.json"
    sf.write(str(wav), np.zeros(100, dtype=np.float32), 44100, format="WAV")
    latin1.write_bytes('{"model": {"name": "caf\u00e9"}}'.encode("latin-1"))
    for path in (wav, latin1):
        with pytest.raises(ConfigError, match=f"{at(path)}: not UTF-8 text"):
            load_recipe(path)
    parent = tmp_path / "child.json"
    parent.write_text(json.dumps({"extends": "latin1.json"}))
    with pytest.raises(ConfigError, match="latin1.json: not UTF-8 text"):  # the file that is wrong, not its child
        load_recipe(parent)


@pytest.mark.parametrize("value", [5, ["vae"], "vae", None], ids=["number", "list", "string", "null"])
def test_a_train_section_that_is_not_an_object_is_refused(tmp_path: Path, value: object) -> None:
    """A string was taken stage by stage, letter by letter ("unknown stage 'a'"); a number or list crashed."""
    path = recipe_file(tmp_path, {"train": value})
    with pytest.raises(ConfigError, match=rf"{at(path)}: train must be an object of stage sections \(vae, .*\), "
                                          rf"got {re.escape(json.dumps(value))}$"):
        load_recipe(path)


def test_a_config_that_names_a_folder_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "adir.json").mkdir()
    with pytest.raises(UserInputError, match="--config: .*adir.json is a folder, not a recipe file"):
        load_recipe(tmp_path / "adir.json")
    child = tmp_path / "child.json"
    child.write_text(json.dumps({"extends": "adir.json"}))
    with pytest.raises(ConfigError, match="child.json: extends .*adir.json, which is a folder"):
        load_recipe(child)
    assert main(["train", "vae", "--config", str(tmp_path / "adir.json"), "--out", str(tmp_path / "run"),
                 "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a folder, not a recipe file" in err[0] and "does not exist" not in err[0]


# ---- values: NaN, Infinity, types, ranges ----

NON_FINITE = [
    ("train", "vae", "lr", math.inf),
    ("train", "vocoder", "grad_clip", math.inf),
    ("train", "diffusion", "checkpoint_minutes", math.inf),
    ("train", "vae", "betas", [0.9, math.nan]),
    ("recipe", None, "class_balance", math.nan),
    ("recipe", None, "kl_weight", math.inf),
    ("data", None, "duration", math.nan),
    ("model", "diffusion", "beta_end", math.inf),
    ("model", "diffusion", "cfg_scale", math.nan),
    ("model", "vae", "mel_std", math.inf),
    ("model", "griffin_lim", "momentum", math.nan),
]


@pytest.mark.parametrize("section, sub, key, value", NON_FINITE,
                         ids=[".".join(filter(None, (s, b, k))) + f"={v}" for s, b, k, v in NON_FINITE])
def test_nan_and_infinity_are_refused_naming_the_file_and_field(
        tmp_path: Path, section: str, sub: str | None, key: str, value: object) -> None:
    """JSON's NaN and Infinity passed checks such as ``lr > 0`` (a run installed a model of NaNs) or ``x < 0``."""
    edit: dict[str, Any] = {key: value} if sub is None else {sub: {key: value}}
    path = recipe_file(tmp_path, {section: edit})
    field = ".".join(filter(None, (section, sub, key)))
    with pytest.raises(ConfigError, match=rf"{at(path)}: {field}(\[1\])?: expected a finite number"):
        load_recipe(path)


def test_the_configs_refuse_nan_and_infinity_when_built_in_python() -> None:
    with pytest.raises(ConfigError, match=r"train\.lr must be a finite number, got inf"):
        TrainConfig(lr=math.inf)
    with pytest.raises(ConfigError, match=r"train\.betas must be a finite number"):
        TrainConfig(betas=(0.9, math.nan))
    with pytest.raises(ConfigError, match=r"recipe\.class_balance must be a finite number"):
        RecipeConfig(class_balance=math.nan)
    with pytest.raises(ConfigError, match=r"diffusion\.beta_start must be a finite number"):
        DiffusionConfig(beta_start=math.nan)
    with pytest.raises(ConfigError, match=r"data\.duration must be between"):
        DataConfig(duration=math.inf)


def test_a_lower_bound_refuses_nan() -> None:
    with pytest.raises(ConfigError, match=r"s\.x must be >= 0, got nan"):
        require_at_least("s", SimpleNamespace(x=math.nan), ("x",), minimum=0)


@pytest.mark.parametrize("key, value, message", [
    ("init", {"diffusion": 5}, r"recipe\.init\.diffusion: expected a string, got 5"),
    ("init", {"vocoder": ["a"]}, r"recipe\.init\.vocoder: expected a string"),
    ("export_dtypes", {"vae": 16}, r"recipe\.export_dtypes\.vae: expected a string, got 16"),
])
def test_the_values_of_a_mapping_are_type_checked(tmp_path: Path, key: str, value: object, message: str) -> None:
    """``"init": {"diffusion": 5}`` loaded, then crashed the diffusion stage with a TypeError."""
    path = recipe_file(tmp_path, {"recipe": {key: value}})
    with pytest.raises(ConfigError, match=rf"{at(path)}: {message}"):
        load_recipe(path)


def test_an_error_of_a_train_section_names_the_file_and_the_stage(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """`train vae` with a bad train.vocoder said only "train.lr: must be > 0"."""
    path = recipe_file(tmp_path, {"train": {"vocoder": {"lr": 0}}})
    with pytest.raises(ConfigError, match=rf"^{at(path)}: train\.vocoder\.lr: must be > 0, got 0\.0$"):
        load_recipe(path)
    path = recipe_file(tmp_path, {"train": {"diffusion": {"lr_schedule": "linear"}}})
    with pytest.raises(ConfigError, match=rf"^{at(path)}: train\.diffusion\.lr_schedule: must be 'constant' or"):
        load_recipe(path)
    path = recipe_file(tmp_path, {"data": {"min_count": -1}, "train": {}})  # the other sections name it too
    with pytest.raises(ConfigError, match=rf"^{at(path)}: data\.min_count must be >= 0"):
        load_recipe(path)
    path = recipe_file(tmp_path, {"model": {"unet": {"time_dim": 7}}})
    with pytest.raises(ConfigError, match=rf"^{at(path)}: model\.unet\.time_dim must be even"):
        load_recipe(path)
    path = recipe_file(tmp_path, {"train": {"vae": {"batch_size": 0}}})
    assert main(["train", "vae", "--config", str(path), "--out", str(tmp_path / "run"), "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{path}: train.vae.batch_size: must be >= 1" in err[0], err


def test_synth_per_class_names_its_field_and_range(tmp_path: Path) -> None:
    path = recipe_file(tmp_path, {"data": {"synth_per_class": 100000}})
    with pytest.raises(ConfigError, match=rf"{at(path)}: data\.synth_per_class must be between 0 and 9999, got 100000"):
        load_recipe(path)
    assert load_recipe(recipe_file(tmp_path, {"data": {"synth_per_class": 9999}})).data.synth_per_class == 9999


def test_the_model_duration_is_checked(tmp_path: Path) -> None:
    """A model section's `duration: 0` was written into the model's config.json."""
    for value in (0, -1, math.nan, 601):
        path = recipe_file(tmp_path, {"model": {"duration": value}})
        with pytest.raises(ConfigError, match=rf"{at(path)}: model\.duration"):
            load_recipe(path)
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({**ModelConfig().to_dict(), "duration": 0.0}))
    with pytest.raises(ConfigError, match=r"config\.json: model\.duration must be between 0\.1 and 600 seconds"):
        read_config(folder)
    assert ModelConfig(duration=0.37).duration == 0.37


# ---- flags ----

@pytest.mark.parametrize("flag", ["--out", "--data", "--cache", "--config"])
def test_an_empty_path_flag_is_refused(tmp_path: Path, flag: str, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """`--out ""` wrote the run into the working folder; `--data ""` trained on everything below it."""
    monkeypatch.chdir(tmp_path)
    argv = {"--out": str(tmp_path / "run"), "--data": str(tmp_path / "data"), "--config": str(DEBUG),
            "--cache": str(tmp_path / "cache"), flag: ""}
    assert main(["train", "vae", *[x for kv in argv.items() for x in kv]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"argument {flag}: empty" in err[0], err
    assert list(tmp_path.iterdir()) == []


def test_the_cache_help_names_where_synthesized_clips_go() -> None:
    parser = build_parser("train")
    sub = next(a for a in parser._actions if a.dest == "command").choices["train"]  # type: ignore[attr-defined]
    text = " ".join(sub.format_help().split())
    assert "OUT/cache/synth" in text and "~/.cache/sampleforge" in text


# ---- what a run trains on ----

def test_the_run_and_cache_folders_inside_a_data_folder_are_not_training_clips(tmp_path: Path) -> None:
    """A run kept inside its --data folder trained its next stage on its own previews."""
    data = tmp_path / "data"
    write_clips(data / "kit", ["kick_1.wav", "snare_1.wav"])
    write_clips(data / "run" / "diffusion" / "previews" / "step_4", ["kick_0.wav", "clap_0.wav"])
    write_clips(data / "cache" / "synth", ["tom_synth_0000.wav"])
    clips, held = training_clips([data], DataConfig(), data / "cache", "vocoder", exclude=[data / "run"])
    assert sorted(c.path.name for c in clips) == ["kick_1.wav", "snare_1.wav"] and held == []
    # a data folder inside the run folder is the user's data
    clips, _ = training_clips([data / "run" / "diffusion"], DataConfig(), data / "cache", exclude=[data / "run"])
    assert sorted(c.path.name for c in clips) == ["clap_0.wav", "kick_0.wav"]
    with pytest.raises(UserInputError, match="every clip found in .* is inside the run or cache folder"):
        training_clips([data / "run"], DataConfig(), data / "run" / "cache", exclude=[data / "run"])


def test_train_leaves_out_the_run_folder_inside_its_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    write_clips(data / "kit", [f"{c}_{i}.wav" for c in ("kick", "snare") for i in range(2)])
    write_clips(data / "run" / "vae" / "previews" / "step_2", ["kick_0.wav", "snare_0.wav"])
    assert main(["train", "vae", "--data", str(data), "--out", str(data / "run"), "--config", str(DEBUG),
                 "--cache", str(tmp_path / "cache"), "--max-steps", "1", "--no-progress"]) == 0
    assert "vae: 4 training clips" in capsys.readouterr().out


def test_holding_out_every_kit_says_so(tmp_path: Path) -> None:
    write_clips(tmp_path / "mine", ["kick_1.wav", "snare_1.wav"], kit="mine")
    with pytest.raises(UserInputError, match=r"--data: all 2 clips found in .* belong to kits held out by "
                                             r"data\.held_out_kits \(mine\); none is left to train on"):
        training_clips([tmp_path], DataConfig(held_out_kits=["mine", "other"]), tmp_path / "cache")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match="no usable drum clips found in"):
        training_clips([tmp_path / "empty"], DataConfig(held_out_kits=["mine"]), tmp_path / "cache")


def test_two_fresh_runs_of_one_recipe_and_seed_give_the_same_weights(tmp_path: Path) -> None:
    """The networks were built from torch's unseeded RNG: the same command gave another model each time."""
    write_clips(tmp_path / "data", [f"{c}_{i}.wav" for c in ("kick", "snare") for i in range(4)])
    recipe = recipe_file(tmp_path, {"train": {"vae": {"preview_every": None}}})
    common = ["--data", str(tmp_path / "data"), "--config", str(recipe), "--cache", str(tmp_path / "cache"),
              "--max-steps", "1", "--no-progress"]
    assert main(["train", "vae", *common, "--out", str(tmp_path / "a")]) == 0
    assert main(["train", "vae", *common, "--out", str(tmp_path / "b")]) == 0
    a, b = (load_file(str(tmp_path / run / "model" / "vae.safetensors")) for run in ("a", "b"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # (the header's order may differ)
