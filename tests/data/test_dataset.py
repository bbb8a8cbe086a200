"""data/dataset.py: fixed-length loading, the content-hash cache, deterministic augmentation, collate."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from sampleforge.audio.finish import detect_onset
from sampleforge.data.corpus import Clip, scan
from sampleforge.data.dataset import AugmentConfig, DrumDataset, WaveCache, augment, collate, load_fixed
from sampleforge.taxonomy import CATEGORIES

from .conftest import SR, hit


def test_load_fixed_is_aligned_normalised_and_fixed_length(tmp_path):
    p = tmp_path / "late.wav"
    sf.write(p, hit(1, seconds=0.3, delay=0.25, sr=48000), 48000, subtype="PCM_24")
    y = load_fixed(p, duration=2.0, sample_rate=SR)
    assert y.shape == (88200,) and y.dtype == np.float32
    assert abs(int(detect_onset(y)) - round(1.5e-3 * SR)) <= 2
    assert np.abs(y).max() == pytest.approx(0.95, abs=1e-6)
    assert np.all(y[int(0.5 * SR) :] == 0)  # the tail after the sound is silence


def test_cache_hits_and_content_hash(tmp_path):
    a = tmp_path / "a.wav"
    sf.write(a, hit(1), SR)
    cache = WaveCache(tmp_path / "cache")
    first = cache.get(a)
    assert (cache.hits, cache.misses) == (0, 1)
    again = WaveCache(tmp_path / "cache").get(a)  # a new process: hit from disk
    np.testing.assert_array_equal(first, again)
    second = WaveCache(tmp_path / "cache")
    second.get(a)
    assert (second.hits, second.misses) == (1, 0)
    renamed = tmp_path / "renamed.wav"
    renamed.write_bytes(a.read_bytes())
    second.get(renamed)
    assert second.hits == 2  # same bytes, same entry
    key_before = second.key(a, 2.0, SR)
    sf.write(a, hit(2), SR)  # the file changes: new key, a miss, new content
    assert second.key(a, 2.0, SR) != key_before
    changed = second.get(a)
    assert second.misses == 1 and not np.array_equal(changed, first)
    assert second.key(a, 1.0, SR) != second.key(a, 2.0, SR)  # parameters are part of the key
    assert len(list((tmp_path / "cache" / "fixed").glob("*.npy"))) == 2


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMPLEFORGE_CACHE", str(tmp_path / "envcache"))
    a = tmp_path / "a.wav"
    sf.write(a, hit(3), SR)
    WaveCache().get(a)
    assert len(list((tmp_path / "envcache" / "fixed").glob("*.npy"))) == 1


def test_damaged_cache_entry_is_recomputed(tmp_path):
    a = tmp_path / "a.wav"
    sf.write(a, hit(1), SR)
    cache = WaveCache(tmp_path / "c")
    good = cache.get(a)
    (cache.dir / f"{cache.key(a, 2.0, SR)}.npy").write_bytes(b"garbage")
    np.testing.assert_array_equal(WaveCache(tmp_path / "c").get(a), good)


def test_items_and_collate(kits_dir, tmp_path):
    clips = scan([kits_dir]).clips
    ds = DrumDataset(clips, cache_dir=tmp_path / "cache")
    item = ds[0]
    assert item["wav"].shape == (88200,) and item["wav"].dtype == torch.float32
    assert item["mel"].shape == (128, 173)
    assert CATEGORIES[item["category"]] == clips[0].category and item["keywords"] == list(clips[0].keywords)
    batch = collate([ds[i] for i in range(3)])
    assert batch["wav"].shape == (3, 88200) and batch["mel"].shape == (3, 128, 173)
    assert batch["category"].dtype == torch.long and batch["index"].tolist() == [0, 1, 2]
    assert len(batch["keywords"]) == 3 and isinstance(batch["keywords"][0], list)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=collate)
    assert sum(b["wav"].shape[0] for b in loader) == len(ds)
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_augmentation_is_deterministic_per_seed_epoch_index(kits_dir, tmp_path):
    clips = scan([kits_dir]).clips[:3]
    cfg = AugmentConfig()
    a = DrumDataset(clips, cache_dir=tmp_path / "c", augment=cfg, seed=7)
    b = DrumDataset(clips, cache_dir=tmp_path / "c", augment=cfg, seed=7)
    a.set_epoch(3)
    b.set_epoch(3)
    x = a[1]["wav"]
    _ = b[0], b[2]  # access order does not matter
    assert torch.equal(x, b[1]["wav"])
    b.set_epoch(4)
    assert not torch.equal(x, b[1]["wav"])
    c = DrumDataset(clips, cache_dir=tmp_path / "c", augment=cfg, seed=8)
    c.set_epoch(3)
    assert not torch.equal(x, c[1]["wav"])
    plain = DrumDataset(clips, cache_dir=tmp_path / "c")
    assert not torch.equal(x, plain[1]["wav"])
    assert x.abs().max() <= 0.95 + 1e-6 and torch.isfinite(x).all()


def test_augment_effects():
    rng_state = np.random.default_rng(0)
    x = np.zeros(SR, np.float32)
    t = np.arange(SR // 2) / SR
    x[66 : 66 + SR // 2] = 0.95 * np.sin(2 * np.pi * 1000 * t) * np.exp(-t / 0.2)
    only_pitch = AugmentConfig(gain_db=0, pitch_semitones=2.0, tilt_db=0)
    rng = np.random.default_rng(1)
    semis = rng.uniform(-1, 1, 3)[0] * 2.0
    y = augment(x, only_pitch, np.random.default_rng(1), SR)
    peak_hz = np.argmax(np.abs(np.fft.rfft(y))) * SR / len(y)
    assert peak_hz == pytest.approx(1000 * 2 ** (semis / 12), rel=0.01)
    only_gain = AugmentConfig(gain_db=6.0, pitch_semitones=0, tilt_db=0)
    g = augment(x, only_gain, rng_state, SR)
    assert 0.95 * 10 ** (-6 / 20) - 1e-6 <= np.abs(g).max() <= 0.95 + 1e-6


def test_clip_category_index_matches_taxonomy(tmp_path):
    p = tmp_path / "x.wav"
    sf.write(p, hit(0), SR)
    clip = Clip(p, "ride", ("ride",), "k", None, "x")
    assert DrumDataset([clip], cache_dir=tmp_path / "c")[0]["category"] == CATEGORIES.index("ride")
