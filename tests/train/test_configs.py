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
