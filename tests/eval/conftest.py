"""Fixtures for the eval tests (the debug model comes from tests/conftest.py): a random classifier, and a tiny labelled reference folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

SR = 44100


@pytest.fixture(scope="session")
def random_classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random-weight classifier with the real class list (tests must not depend on the shipped one)."""
    from sampleforge.eval.classifier import ClassifierConfig, DrumClassifier, save_classifier
    from sampleforge.eval.classifier_train import eval_classes

    classes, class_map = eval_classes()
    torch.manual_seed(0)
    cfg = ClassifierConfig(classes=classes, class_map=class_map, channels=[4, 8, 8, 16, 16], embed_dim=16)
    return save_classifier(DrumClassifier(cfg).eval(), tmp_path_factory.mktemp("clf") / "c", "# random\n")


def _hit(kind: str, rng: np.random.Generator, seconds: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    if kind in ("kick", "tom"):
        f = rng.uniform(50, 70) if kind == "kick" else rng.uniform(100, 200)
        x = np.sin(2 * np.pi * f * t) * np.exp(-t * 10)
    else:
        x = rng.standard_normal(t.size) * np.exp(-t * rng.uniform(8, 40))
    return (0.8 * x / np.abs(x).max()).astype(np.float32)


REFERENCE_COUNTS = {"kick": 3, "snare": 3, "closed_hat": 2, "clap": 2}
FILE_NAMES = {"kick": "kick", "snare": "snare", "closed_hat": "closed_hat", "clap": "clap"}


@pytest.fixture(scope="session")
def reference_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain folder of synthetic one-shots named by class (kick_0.wav ...): REFERENCE_COUNTS clips."""
    root = tmp_path_factory.mktemp("ref") / "kit"
    root.mkdir()
    rng = np.random.default_rng(0)
    for kind, n in REFERENCE_COUNTS.items():
        for i in range(n):
            sf.write(root / f"{FILE_NAMES[kind]}_{i}.wav", _hit(kind, rng), SR)
    return root
