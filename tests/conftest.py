"""Shared test set-up: one torch thread (the machine is shared), and the slow-test switch."""

from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(1)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="also run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow") or os.environ.get("SAMPLEFORGE_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow or SAMPLEFORGE_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def debug_model(tmp_path_factory: pytest.TempPathFactory):
    """A random-weight model folder with configs/debug.json sizes (runs end to end in well under a second)."""
    from sampleforge.debug_model import make_debug_bundle

    return make_debug_bundle(tmp_path_factory.mktemp("models") / "debug", seed=0)
