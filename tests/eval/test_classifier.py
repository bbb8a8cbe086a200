"""The drum classifier: shapes, save/load, the shipped weights, and a tiny training run that must learn."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sampleforge.errors import CheckpointError
from sampleforge.eval import classifier as C
from sampleforge.eval.classifier_train import (
    TrainSettings,
    accuracy_by_class,
    augment_mel,
    augment_wav,
    eval_classes,
    fit,
    kit_folds,
)

SR = 44100


def test_shapes_and_embedding() -> None:
    cfg = C.ClassifierConfig(classes=["kick", "snare", "tom"])
    m = C.DrumClassifier(cfg).eval()
    lm = torch.randn(3, 128, 173)
    assert m(lm).shape == (3, 3)
    assert m.embed(lm).shape == (3, cfg.embed_dim)
    assert 100_000 < sum(p.numel() for p in m.parameters()) < 750_000
    with pytest.raises(ValueError, match="log-mel"):
        m(torch.randn(2, 64, 173))
    emb, prob = C.embed_and_classify(m, np.random.default_rng(0).standard_normal((2, SR)).astype(np.float32))
    assert emb.shape == (2, cfg.embed_dim) and prob.shape == (2, 3)
    assert np.allclose(prob.sum(1), 1.0, atol=1e-5)


def test_clip_logmels_is_level_invariant_and_pads() -> None:
    cfg = C.ClassifierConfig()
    x = np.random.default_rng(1).standard_normal(SR).astype(np.float32) * 0.1
    a, b = C.clip_logmels(x, cfg), C.clip_logmels(x * 0.01, cfg)
    assert a.shape == (1, 128, 173)  # 1 s padded to 2 s
    assert torch.allclose(a, b, atol=1e-3)


def test_save_load_round_trip_and_errors(tmp_path: Path) -> None:
    cfg = C.ClassifierConfig(classes=["kick", "cymbal"], class_map={"crash": "cymbal"})
    m = C.DrumClassifier(cfg).eval()
    C.save_classifier(m, tmp_path / "c", "# card\n")
    m2 = C.load_classifier(tmp_path / "c")
    lm = torch.randn(2, 128, 173)
    assert torch.equal(m(lm), m2(lm))
    assert m2.cfg.judged_class("crash") == "cymbal" and m2.cfg.judged_class("perc") is None
    with pytest.raises(CheckpointError, match="missing"):
        C.load_classifier(tmp_path / "nowhere")
    bad = json.loads((tmp_path / "c" / "config.json").read_text())
    bad["embed_dim"] = 64
    (tmp_path / "c" / "config.json").write_text(json.dumps(bad))
    with pytest.raises(CheckpointError, match="shape"):
        C.load_classifier(tmp_path / "c")
    bad["bogus"] = 1
    (tmp_path / "c" / "config.json").write_text(json.dumps(bad))
    with pytest.raises(CheckpointError, match="bogus"):
        C.load_classifier(tmp_path / "c")


def test_shipped_classifier_loads_and_is_small() -> None:
    folder = C.DEFAULT_CLASSIFIER
    m = C.load_classifier()
    classes, class_map = eval_classes()
    assert m.cfg.classes == classes and m.cfg.class_map == class_map
    assert (folder / "model.safetensors").stat().st_size < 3_000_000
    card = (folder / "README.md").read_text()
    assert "Held-out accuracy" in card and "| kick |" in card
    assert m(torch.full((1, 128, 173), -11.5)).shape == (1, len(classes))


def _synth(kind: str, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(SR // 2) / SR
    if kind == "kick":
        f = rng.uniform(45, 70)
        return (np.sin(2 * np.pi * f * t) * np.exp(-t * rng.uniform(6, 12))).astype(np.float32)
    noise = rng.standard_normal(t.size)
    hp = np.diff(noise, prepend=0.0)
    return (hp * np.exp(-t * rng.uniform(30, 60))).astype(np.float32)


def test_a_tiny_training_run_learns_kick_vs_hat() -> None:
    rng = np.random.default_rng(0)
    kinds = ["kick", "closed_hat"] * 12
    wav = np.stack([_synth(k, rng) for k in kinds])
    labels = np.array([0 if k == "kick" else 1 for k in kinds])
    cfg = C.ClassifierConfig(
        classes=["kick", "closed_hat"], channels=[8, 16, 16, 32, 32], embed_dim=32, duration=0.5
    )
    model = fit(
        wav, labels, cfg, TrainSettings(epochs=3, samples_per_epoch=48, batch_size=8, lr=5e-3), log=False
    )
    test_kinds = ["kick", "closed_hat"] * 5
    test = torch.from_numpy(np.stack([_synth(k, rng) for k in test_kinds]))
    per_class, conf = accuracy_by_class(model, C.clip_logmels(test, cfg), torch.tensor([0, 1] * 5))
    assert conf.sum() == 10
    assert per_class["kick"]["accuracy"] >= 0.8 and per_class["closed_hat"]["accuracy"] >= 0.8, conf


def test_augmentations_keep_shape_and_are_finite() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, SR) * 0.1
    y = augment_wav(x, SR, g)
    assert y.shape == x.shape and torch.isfinite(y).all() and not torch.equal(x, y)
    lm = torch.randn(4, 128, 173)
    assert augment_mel(lm, g).shape == lm.shape


def test_kit_folds_cover_every_kit_once() -> None:
    kits = ["a"] * 5 + ["b"] * 3 + ["c"] * 2 + ["d"]
    folds = kit_folds(kits, 2)
    assert sorted(k for f in folds for k in f) == ["a", "b", "c", "d"]
    assert folds == [["a", "c"], ["b", "d"]]
