"""Every recipe shipped under configs/ loads (strict: an unknown key or a bad value fails here, not hours into
a training), and builds its networks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sampleforge.models.unet import LatentUNet, UNetConfig
from sampleforge.models.vae import MelVAE, VAEConfig
from sampleforge.strict import ConfigError
from sampleforge.train.recipe import load_recipe

CONFIGS = sorted((Path(__file__).parents[2] / "configs").rglob("*.json"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_recipe_loads_and_builds(path: Path) -> None:
    recipe = load_recipe(path)
    vae = MelVAE(recipe.model.vae)
    unet = LatentUNet(recipe.model.unet)
    c, w = recipe.model.vae.latent_shape(173)
    assert c == recipe.model.unet.in_channels and w >= 173 // vae.cfg.factor
    assert sum(p.numel() for p in unet.parameters()) > 0


def test_all_three_recipes_are_found() -> None:
    assert {p.name for p in CONFIGS} >= {"default.json", "debug.json", "vae-div4.json"}


def test_timbre_features_version_is_checked_and_defaults_to_the_shipped_one() -> None:
    from sampleforge.strict import ConfigError
    from sampleforge.train.recipe import RecipeConfig

    assert RecipeConfig().timbre_features == 1
    assert RecipeConfig(timbre_features=2).timbre_features == 2
    with pytest.raises(ConfigError, match="recipe.timbre_features must be one of 1, 2"):
        RecipeConfig(timbre_features=3)


def test_a_recipe_extends_another_key_by_key(tmp_path: Path) -> None:
    import json

    from sampleforge.strict import ConfigError

    base = {"model": {"name": "base", "unet": {"channels": [32, 48]}},
            "train": {"diffusion": {"max_steps": 100, "lr": 0.001}}, "data": {"synth_stages": ["vae", "diffusion"]}}
    (tmp_path / "base.json").write_text(json.dumps(base))
    (tmp_path / "sub").mkdir()
    child = {"extends": "../base.json", "train": {"diffusion": {"max_steps": 40}}, "data": {"synth_stages": ["vae"]},
             "recipe": {"class_prompt_dropout": 0.2}}
    (tmp_path / "sub" / "child.json").write_text(json.dumps(child))
    recipe = load_recipe(tmp_path / "sub" / "child.json")
    assert recipe.model.name == "base" and recipe.model.unet.channels == [32, 48]
    assert recipe.train["diffusion"].max_steps == 40 and recipe.train["diffusion"].lr == 0.001  # merged
    assert recipe.data.synth_stages == ["vae"] and recipe.recipe.class_prompt_dropout == 0.2  # lists replace
    (tmp_path / "loop.json").write_text(json.dumps({"extends": "loop2.json"}))
    (tmp_path / "loop2.json").write_text(json.dumps({"extends": "loop.json"}))
    with pytest.raises(ConfigError, match="extends itself"):
        load_recipe(tmp_path / "loop.json")
    (tmp_path / "orphan.json").write_text(json.dumps({"extends": "nowhere.json"}))
    with pytest.raises(ConfigError, match="orphan.json: extends .*nowhere.json, which does not exist"):
        load_recipe(tmp_path / "orphan.json")
    (tmp_path / "typo.json").write_text(json.dumps({"extend": "base.json"}))
    with pytest.raises(ConfigError, match="unknown key 'extend'"):
        load_recipe(tmp_path / "typo.json")


def test_the_finetune_recipe_is_the_first_run_with_its_changes() -> None:
    root = Path(__file__).parents[2] / "configs"
    first, tune = load_recipe(root / "drums-v2.json"), load_recipe(root / "drums-v2-finetune.json")
    assert tune.model == first.model and tune.data.held_out_kits == first.data.held_out_kits
    assert tune.recipe.stages == ["diffusion"] and tune.recipe.init == {"diffusion": "runs/drums-v2/model"}


def test_the_shipped_vocoder_is_what_its_recipe_builds() -> None:
    """weights/drums-vocoder-v1 is the model folder `make train-vocoder` copies: its recipe's config, and the mel
    front end of the models it is the vocoder of."""
    from sampleforge.model_config import read_config

    repo = Path(__file__).parents[2]
    recipe = load_recipe(repo / "configs" / "drums-vocoder-v1.json")
    shipped = read_config(repo / "weights" / "drums-vocoder-v1")
    assert shipped == recipe.model
    assert shipped.vocoder is not None and shipped.vocoder.refine_start == "onset"
    for model in ("drums-v1", "drums-v2"):
        assert read_config(repo / "weights" / model).mel == shipped.mel


DEBUG = Path(__file__).parents[2] / "configs" / "debug.json"

# (section, key, value, what the error must say): each of these built a network that failed with a torch
# traceback (a shape or group mismatch) once training started, or trained a model that could not load
BAD_MODEL_VALUES = [
    ("unet", "channels", [], r"unet\.channels must be a non-empty list"),
    ("unet", "channels", [16, 0], r"unet\.channels must be a non-empty list"),
    ("unet", "attention_heads", 5, r"unet\.attention_heads \(5\) must divide the last of unet\.channels \(32\)"),
    ("unet", "attention_heads", 0, r"unet\.attention_heads must be >= 1"),
    ("unet", "time_dim", 7, r"unet\.time_dim must be even"),
    ("unet", "in_channels", 8, r"model: unet\.in_channels \(8\) != vae\.latent_channels \(4\)"),
    ("vae", "kernel_size", 4, r"vae\.kernel_size must be odd"),
    ("vae", "latent_channels", 0, r"vae\.latent_channels must be >= 1"),
    ("vae", "mel_std", 0.0, r"vae\.mel_std and vae\.scale_factor must be > 0"),
    ("mel", "hop_length", 4096, r"mel\.hop_length \(4096\) must not exceed mel\.n_fft \(2048\)"),
    ("mel", "f_max", 30000.0, r"f_min < f_max <= sample_rate / 2"),
    ("mel", "sample_rate", 22050, r"model: sample_rate \(44100\) != mel\.sample_rate \(22050\)"),
    ("vocoder", "kernel_size", 4, r"vocoder\.kernel_size must be odd"),
    ("vocoder", "dim", 0, r"vocoder\.dim must be >= 1"),  # was "... does not match VocoderConfig | None"
]


# the data and recipe sections: values that crashed a training (a duration of 0) or were taken silently
BAD_RECIPE_VALUES = [
    ("data", "duration", 0.0, r"data\.duration must be between 0\.1 and 600 seconds"),
    ("data", "min_count", -1, r"data\.min_count must be >= 0"),
    ("data", "synth_per_class", -2, r"data\.synth_per_class must be >= 0"),
    ("data", "synth_stages", ["diffusoin"], r"data\.synth_stages: unknown stage 'diffusoin'"),
    ("recipe", "latent_variants", 0, r"recipe\.latent_variants must be >= 1"),
    ("recipe", "keyword_dropout", 1.5, r"recipe\.keyword_dropout must be in \[0, 1\]"),
    ("recipe", "kl_weight", -1e-4, r"recipe\.kl_weight must be >= 0"),
]


@pytest.mark.parametrize("section, key, value, message", BAD_MODEL_VALUES + BAD_RECIPE_VALUES,
                         ids=[f"{s}.{k}={v}" for s, k, v, _ in BAD_MODEL_VALUES + BAD_RECIPE_VALUES])
def test_a_section_that_cannot_build_or_train_is_refused_when_the_recipe_loads(
        tmp_path: Path, section: str, key: str, value: object, message: str) -> None:
    raw = json.loads(DEBUG.read_text())
    (raw.setdefault(section, {}) if section in ("data", "recipe") else raw["model"].setdefault(section, {}))[key] = value
    path = tmp_path / "recipe.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match=message):
        load_recipe(path)


def test_any_channel_count_builds_its_group_norms() -> None:
    """24 channels do not divide into GroupNorm's 16 groups: they get 12, and the state dict is the one any group
    count gives; the usual multiples of 16 keep their 16 groups."""
    vae = MelVAE(VAEConfig(channels=[24, 24, 24], latent_channels=4, kernel_size=3))
    z = vae.encode(torch.randn(1, 128, 20) - 5)
    assert z.shape == (1, 4, 3) and torch.isfinite(z).all()
    norms = [m for m in vae.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and {m.num_groups for m in norms} == {12}
    unet = LatentUNet(UNetConfig(in_channels=4, channels=[128, 192], cond_dim=16, time_dim=16))
    assert {m.num_groups for m in unet.modules() if isinstance(m, torch.nn.GroupNorm)} == {16}
