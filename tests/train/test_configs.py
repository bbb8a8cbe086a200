"""Every recipe shipped under configs/ loads (strict: an unknown key or a bad value fails here, not hours into
a training), and builds its networks."""

from __future__ import annotations

from pathlib import Path

import pytest

from sampleforge.models.unet import LatentUNet
from sampleforge.models.vae import MelVAE
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
