"""data/synth.py: determinism, sane levels, keywords that change the sound, a kit the corpus labels."""

from __future__ import annotations

import numpy as np
import pytest

from sampleforge.audio.finish import detect_onset, tail_end
from sampleforge.audio.io import read_metadata
from sampleforge.data.corpus import DESCRIPTORS
from sampleforge.data.synth import MODIFIERS, random_keywords, render_kit, synthesize
from sampleforge.errors import UserInputError
from sampleforge.taxonomy import CATEGORIES, CATEGORY_WORDS
from sampleforge.text.keywords import tokenize

SR = 44100


def _centroid(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x))
    f = np.fft.rfftfreq(len(x), 1 / SR)
    return float((spec * f).sum() / spec.sum())


@pytest.mark.parametrize("category", CATEGORIES)
def test_every_class_is_deterministic_and_sane(category):
    rng = np.random.default_rng(0)
    kw = random_keywords(category, rng)
    a = synthesize(category, kw, seed=11)
    assert np.array_equal(a, synthesize(category, kw, seed=11))
    assert not np.array_equal(a, synthesize(category, kw, seed=12))
    assert a.shape == (88200,) and a.dtype == np.float32
    assert np.isfinite(a).all()
    assert np.abs(a).max() == pytest.approx(0.95, abs=1e-6) and (np.abs(a) > 0.95).sum() == 0
    assert abs(int(detect_onset(a)) - round(1.5e-3 * SR)) <= 2
    rms = float(np.sqrt(np.mean(a[: SR // 10] ** 2)))
    assert 0.01 < rms < 0.8  # audible first 100 ms, not a square wall


def test_keywords_change_the_sound():
    long_, short = synthesize("kick", ["kick", "long"], 1), synthesize("kick", ["kick", "short"], 1)
    assert tail_end(long_, -40.0) > 1.5 * tail_end(short, -40.0)
    k808, k909 = synthesize("kick", ["kick", "808"], 1), synthesize("kick", ["kick", "909"], 1)
    assert tail_end(k808, -40.0) > tail_end(k909, -40.0)
    bright, dark = synthesize("snare", ["snare", "bright"], 2), synthesize("snare", ["snare", "dark"], 2)
    assert _centroid(bright) > 1.2 * _centroid(dark)
    closed, open_ = synthesize("closed_hat", ["closed", "hat"], 3), synthesize("open_hat", ["open", "hat"], 3)
    assert tail_end(open_, -40.0) > 3 * tail_end(closed, -40.0)
    deep, plain = synthesize("tom", ["tom", "deep"], 4), synthesize("tom", ["tom"], 4)
    assert _centroid(deep) < _centroid(plain)


def test_random_keywords():
    rng = np.random.default_rng(5)
    seen = set()
    for _ in range(200):
        cat = CATEGORIES[int(rng.integers(len(CATEGORIES)))]
        kw = random_keywords(cat, rng)
        assert kw[: len(CATEGORY_WORDS[cat])] == list(CATEGORY_WORDS[cat])
        mods = set(kw) & set(MODIFIERS)
        assert (
            not {"long", "short"} <= mods and not {"bright", "dark"} <= mods and not {"soft", "hard"} <= mods
        )
        assert tokenize(" ".join(kw)) == kw  # normalised words the vocabulary keeps
        assert set(kw) - set(CATEGORY_WORDS[cat]) <= DESCRIPTORS
        seen |= mods
    assert seen == set(MODIFIERS)
    a = random_keywords("kick", np.random.default_rng(1))
    assert a == random_keywords("kick", np.random.default_rng(1))
    with pytest.raises(UserInputError, match="valid"):
        random_keywords("gong", rng)


def test_render_kit_is_labelled_by_the_corpus_scan(tmp_path):
    clips = render_kit(tmp_path / "synth", n_per_category=2, seed=3)
    assert len(clips) == 2 * len(CATEGORIES)
    assert {c.category for c in clips} == set(CATEGORIES)
    assert all(c.kit == "synth" and c.licence == "generated" for c in clips)
    for c in clips:
        meta = read_metadata(c.path)
        assert meta["category"] == c.category
        assert set(c.keywords) == set(meta["keywords"].split()) | {"synth"}  # tagged apart from recordings
    again = render_kit(tmp_path / "again", n_per_category=2, seed=3)
    assert [c.path.read_bytes() for c in clips] == [c.path.read_bytes() for c in again]
    with pytest.raises(UserInputError):
        render_kit(tmp_path / "x", n_per_category=0)


def test_render_kit_refuses_a_folder_of_other_files_and_a_seed_that_would_wrap(tmp_path):
    """The Python API (and a recipe's synth clips) get the same protection as `data synth --out`: nothing is written
    into a folder holding another kit; a seed outside 0..2**32-1 is an error (it wrapped onto another's clips)."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "kit.json").write_text('{"name": "synth"}')  # a kit named synth, but not the synth's
    with pytest.raises(UserInputError, match=f"^{mine} holds another kit .*; nothing written"):
        render_kit(mine, n_per_category=1)
    assert [p.name for p in mine.iterdir()] == ["kit.json"]
    for seed in (-1, 2**32):
        with pytest.raises(UserInputError, match=rf"^seed must be an integer from 0 to 4294967295, got {seed}"):
            render_kit(tmp_path / "s", n_per_category=1, seed=seed)
        with pytest.raises(UserInputError, match="^seed must be"):
            synthesize("kick", ["kick"], seed)
    assert not (tmp_path / "s").exists()
    top = render_kit(tmp_path / "top", n_per_category=1, seed=2**32 - 1)
    assert [c.path.read_bytes() for c in top] != [c.path.read_bytes() for c in render_kit(tmp_path / "z", 1, 0)]
