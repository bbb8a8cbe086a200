"""A tiny random-weight model with the sizes of ``configs/debug.json``, for tests and benchmarks.

It runs end to end on a CPU in well under a second. It reads ``configs/debug.json`` of a source checkout.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from sampleforge.bundle import REPO_ROOT, Bundle, build_modules, save_bundle
from sampleforge.model_config import ModelConfig
from sampleforge.text.keywords import Vocabulary

DEBUG_WORDS = ("kick", "snare", "closed", "open", "hat", "clap", "tom", "crash", "808", "punchy", "deep")


def debug_config() -> ModelConfig:
    """The model section of configs/debug.json."""
    file = REPO_ROOT / "configs" / "debug.json"
    data = json.loads(file.read_text())
    return ModelConfig.from_dict(data["model"], str(file))


def make_debug_bundle(out_dir: str | os.PathLike[str], seed: int = 0, vocab_words: list[str] | None = None) -> Path:
    """Write a debug model folder with random weights (seeded) and a small vocabulary; returns its path."""
    cfg = debug_config()
    vocab = Vocabulary({w: 10 for w in vocab_words or DEBUG_WORDS})
    cfg.text.vocab_size = max(cfg.text.vocab_size, len(vocab) + 1)
    torch.manual_seed(seed)
    mods = build_modules(cfg)
    bundle = Bundle(config=cfg, vocab=vocab, card="# debug model\n\nRandom weights, for tests.\n", **mods)  # type: ignore[arg-type]
    return save_bundle(bundle, out_dir)
