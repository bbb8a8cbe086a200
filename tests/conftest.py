"""Shared test set-up: one torch thread (the machine is shared), the slow-test switch, and loggers restored after
each test (``sampleforge serve`` run in-process configures them)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.model_folders import edited_copy, vocoder_folder

torch.set_num_threads(1)


SERVER_LOGGERS = ("sampleforge", "uvicorn", "uvicorn.error", "uvicorn.access", "asyncio", "celery")


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Undo what ``sampleforge serve`` run in-process (configure_logging) does to the loggers, so later
    tests do not write to a captured stream that pytest has closed."""
    saved = {n: (lg.handlers[:], lg.filters[:], lg.level, lg.propagate)
             for n in SERVER_LOGGERS for lg in [logging.getLogger(n)]}
    yield
    for name, (handlers, filters, level, propagate) in saved.items():
        lg = logging.getLogger(name)
        lg.handlers[:], lg.filters[:], lg.level, lg.propagate = handlers, filters, level, propagate


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


@pytest.fixture(scope="session")
def listening_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The debug model with its zero-initialised layers drawn at random, so that its clips follow the prompt."""
    from sampleforge.bundle import load_bundle, save_bundle
    from sampleforge.debug_model import make_debug_bundle

    bundle = load_bundle(make_debug_bundle(tmp_path_factory.mktemp("models") / "debug", seed=0))
    torch.manual_seed(1)
    with torch.no_grad():
        for p in bundle.unet.parameters():
            if not p.abs().max():
                p.normal_(0.0, 0.2)
    return save_bundle(bundle, tmp_path_factory.mktemp("models") / "listening")


@pytest.fixture(scope="session")
def model_without_vocoder(debug_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The debug model with no vocoder section and no vocoder weights, as drums-v2 ships."""
    out = edited_copy(debug_model, tmp_path_factory.mktemp("models") / "no-vocoder", lambda c: c.update(vocoder=None))
    (out / "vocoder.safetensors").unlink()
    return out


@pytest.fixture(scope="session")
def debug_vocoder(debug_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The debug model's vocoder shipped alone, as drums-vocoder-v1 is: a vocoder folder named a-vocoder."""
    return vocoder_folder(debug_model, tmp_path_factory.mktemp("vocoders") / "a-vocoder")


@pytest.fixture(scope="session")
def knob_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight model folder conditioned on the four timbre knobs, with a few keywords and no timbre.json."""
    from sampleforge.bundle import Bundle, build_modules, save_bundle
    from sampleforge.debug_model import debug_config
    from sampleforge.text.keywords import Vocabulary
    from sampleforge.timbre import KNOBS

    cfg = debug_config()
    cfg.text.knobs = list(KNOBS)
    vocab = Vocabulary({w: 10 for w in ["kick", "snare", "long", "short", "808", "909"]})
    cfg.text.vocab_size = max(cfg.text.vocab_size, len(vocab) + 1)
    torch.manual_seed(0)
    bundle = Bundle(config=cfg, vocab=vocab, card="# debug\n", **build_modules(cfg))  # type: ignore[arg-type]
    return save_bundle(bundle, tmp_path_factory.mktemp("models") / "knobs")


TERMINAL = ("succeeded", "failed", "cancelled")  # job states after which nothing changes


def _wait_job(
    client: Any,
    job_id: str,
    timeout: float = 60.0,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Poll ``GET /v1/jobs/{id}`` (an httpx client or a TestClient) until the job is finished; fail the test on
    timeout."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
        if job.get("state") in TERMINAL:
            return job
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} still {job.get('state')} after {timeout} s")
        time.sleep(0.05)


@pytest.fixture
def wait_job() -> Callable[..., dict[str, Any]]:
    """``wait_job(client, job_id, timeout=60)`` -> the finished job's JSON."""
    return _wait_job
