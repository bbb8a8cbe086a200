"""The drum classifier: shapes, save/load, the shipped weights, and a tiny training run that must learn."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sampleforge.cli import main
from sampleforge.errors import CheckpointError, UserInputError
from sampleforge.eval import classifier as C
from sampleforge.eval.classifier_train import (
    accuracy_by_class,
    accuracy_table,
    augment_mel,
    augment_wav,
    eval_classes,
    fit,
    held_out_kits_from,
    kit_folds,
    train_classifier,
)
from sampleforge.eval.settings import ClassifierTraining

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
    assert folder.name == "classifier-v2" and C.shipped_classifier().name == "classifier-v2"
    m = C.load_classifier()
    classes, class_map = eval_classes()
    assert m.cfg.classes == classes and m.cfg.class_map == class_map
    assert (folder / "model.safetensors").stat().st_size < 3_000_000
    card = (folder / "README.md").read_text()
    assert "Held-out accuracy" in card and "| kick |" in card and "lmms-beats" in card
    assert m(torch.full((1, 128, 173), -11.5)).shape == (1, len(classes))


def test_the_earlier_judge_still_loads_by_path() -> None:
    folder = C.REPO_ROOT / "weights" / "classifier-v1"
    if not (folder / "model.safetensors").is_file():
        pytest.skip("weights/classifier-v1 is not in this checkout")
    m = C.load_classifier(folder)
    assert (m.cfg.classes, m.cfg.class_map) == eval_classes()


def test_held_out_kits_come_from_the_flag_or_a_recipe(tmp_path: Path) -> None:
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"data": {"held_out_kits": ["A", "B"]}}))
    assert held_out_kits_from(None, recipe) == ["A", "B"]
    assert held_out_kits_from(["C"], None) == ["C"]
    assert held_out_kits_from(None, None) == ["Millo_MultiLayered3", "HardElectro1"]
    repo_recipe = C.REPO_ROOT / "configs" / "drums-v2.json"
    assert held_out_kits_from(None, repo_recipe) == ["Millo_MultiLayered3", "HardElectro1", "lmms-beats"]
    with pytest.raises(UserInputError, match="not both"):
        held_out_kits_from(["C"], recipe)
    recipe.write_text(json.dumps({"data": {}}))
    with pytest.raises(UserInputError, match="holds out no kit"):
        held_out_kits_from(None, recipe)


def test_accuracy_table_gives_wilson_intervals_per_class_and_overall() -> None:
    a = {"kick": {"n": 10, "correct": 9, "accuracy": 0.9}, "snare": {"n": 4, "correct": 2, "accuracy": 0.5}}
    b = {"kick": {"n": 10, "correct": 5, "accuracy": 0.5}, "snare": {"n": 4, "correct": 4, "accuracy": 1.0}}
    lines = accuracy_table({"new": a, "old": b}, ["kick", "snare", "tom"])
    assert lines[0] == "| class | clips | new | old |"
    assert lines[2] == "| kick | 10 | 9/10 = 90% (60%-98%) | 5/10 = 50% (24%-76%) |"
    assert lines[4] == "| tom | 0 | - | - |"
    assert lines[5] == "| **all** | 14 | 11/14 = 79% (52%-92%) | 9/14 = 64% (39%-84%) |"


def _two_kits(reference_dir: Path, root: Path) -> Path:
    """The reference clips copied into two plain kits, "train" and "held" (kit.json names them)."""
    for kit in ("train", "held"):
        (root / kit).mkdir(parents=True)
        (root / kit / "kit.json").write_text(json.dumps({"name": kit, "licence": "CC0"}))
        for wav in sorted(reference_dir.glob("*.wav")):
            (root / kit / wav.name).write_bytes(wav.read_bytes())
    return root


def test_score_classifier_scores_judges_on_the_same_held_out_clips(
        reference_dir: Path, random_classifier: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _two_kits(reference_dir, tmp_path / "data")
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"data": {"held_out_kits": ["held"]}}))
    assert main(["eval", "score-classifier", "--classifier", str(random_classifier), str(random_classifier),
                 "--data", str(data), "--config", str(recipe)]) == 0
    out = capsys.readouterr().out
    assert "10 held-out clips from ['held']" in out  # the reference folder's 3 kicks, 3 snares, 2 hats, 2 claps
    assert f"| class | clips | c | {random_classifier} |" in out  # the same folder twice: the second by path
    assert "| kick | 3 | " in out and "| clap | 2 | " in out and "| tom | 0 | - | - |" in out
    assert main(["eval", "score-classifier", "--classifier", str(random_classifier), "--data", str(data),
                 "--held-out", "nowhere"]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_train_classifier_writes_a_card_that_compares_on_the_held_out_kit(
        reference_dir: Path, random_classifier: Path, tmp_path: Path) -> None:
    data = _two_kits(reference_dir, tmp_path / "data")
    settings = ClassifierTraining(epochs=1, samples_per_epoch=8, batch_size=8)
    model, held = train_classifier([data], tmp_path / "judge-x", settings, ["held"], compare=[random_classifier])
    assert {c: int(v["n"]) for c, v in held.items()} == {"kick": 3, "snare": 3, "closed_hat": 2, "clap": 2}
    card = (tmp_path / "judge-x" / "README.md").read_text()
    assert card.startswith("# judge-x: drum one-shot classifier")
    assert "Held-out kits (never trained on): held." in card and "| held | 10 | CC0 | held out |" in card
    assert "| class | clips | judge-x | c |" in card and "| **all** | 10 | " in card
    assert C.load_classifier(tmp_path / "judge-x").cfg.classes == model.cfg.classes


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
        wav, labels, cfg, ClassifierTraining(epochs=3, samples_per_epoch=48, batch_size=8, lr=5e-3), log=False
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
