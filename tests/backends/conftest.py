"""Tiny random-weight models of every foreign format, built once per session offline (nothing downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

@pytest.fixture(scope="session")
def sa_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sampleforge.backends import tiny

    return tiny.make_stable_audio(tmp_path_factory.mktemp("sa") / "tiny-stable-audio")


@pytest.fixture(scope="session")
def sa3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sampleforge.backends import tiny

    return tiny.make_stable_audio_3(tmp_path_factory.mktemp("sa3") / "tiny-stable-audio-3")


@pytest.fixture(scope="session")
def ldm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sampleforge.backends import tiny

    return tiny.make_audioldm2(tmp_path_factory.mktemp("ldm") / "tiny-audioldm2")


@pytest.fixture(scope="session")
def adp_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import importlib.util

    if importlib.util.find_spec("audio_diffusion_pytorch") is None:
        pytest.skip("audio-diffusion-pytorch is not installed (see pyproject's backends extra)")
    from sampleforge.backends import tiny

    return tiny.make_adp_checkpoint(tmp_path_factory.mktemp("adp") / "tiny-drums.ckpt")


@pytest.fixture(scope="session")
def sat_small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    """A tiny Stable Audio Open Small-shaped stable-audio-tools folder: (folder, config, the stable-audio-tools
    networks it was written from)."""
    from tests.backends import sat_reference as ref

    cfg = ref.tiny_config()
    nets = ref.build_networks(cfg, seed=0)
    return ref.write_model(tmp_path_factory.mktemp("sat") / "tiny-sao-small", cfg, nets), cfg, nets
