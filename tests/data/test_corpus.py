"""data/corpus.py: labels, the name/file conflict rule, exclusions, errors, order, licences, split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sampleforge.data import corpus
from sampleforge.data.corpus import (
    DEFAULT_HELD_OUT_KITS,
    HYDROGEN_DIRS,
    MIN_SECONDS,
    Clip,
    classify,
    resolve_category,
    scan,
    split_by_kit,
    words_of,
)
from sampleforge.data.dataset import load_fixed
from sampleforge.errors import UserInputError
from sampleforge.taxonomy import CATEGORIES
from sampleforge.text.keywords import tokenize

from .conftest import SR, hit


def _by_file(result):
    return {c.path.name: c for c in result.clips}


def test_name_file_conflict_rule():
    # the instrument name wins across families...
    assert resolve_category("Hi Hat Opened", "HH2_01") == ("open_hat", "name")  # file "hh" is only a bare hat
    assert resolve_category("Kick", "86335__zgump__tom-0105") == ("kick", "name")
    assert resolve_category("Crash Left", "CB_03") == ("crash", "name")  # "cb" would read as cowbell
    # ...the file decides within a family when it is explicit, or when the name names no class
    assert resolve_category("Pedal HH", "hihat-semi-open-1") == ("open_hat", "file")
    assert resolve_category("crash16inch", "crash16i__ride_cup4") == ("ride", "file")
    assert resolve_category("Sample: beats_01.flac", "snare_01") == ("snare", "file")
    assert resolve_category("17", "emptySample") == (None, "file")


@pytest.mark.parametrize(
    "text,expected",
    [
        ("Hi-Hat Pedal", ("closed_hat", True)),
        ("HH2_01", ("closed_hat", False)),
        ("Sabian Hat Semi-Open", ("open_hat", True)),
        ("c3 - bass drum 1", ("kick", True)),
        ("Pearl Snare Rimshot", ("snare", True)),
        ("Rim Click", ("rim", True)),
        ("Paiste Bell", ("ride", True)),
        ("Sangban1 Bell Hit", ("cowbell", True)),
        ("Crash/Ride Bow", ("ride", True)),
        ("d#4 - cymbal 1", ("crash", False)),
        ("Tambourine", ("shaker", True)),
        ("Djembe1 Bass", ("perc", True)),
        ("Drum 2", ("perc", False)),
        ("Whistle", (None, False)),
    ],
)
def test_classify(text, expected):
    assert classify(words_of(text), text) == expected


def test_scan_fixture_labels(kits_dir):
    res = scan([kits_dir])
    clips = _by_file(res)
    assert clips["BD_01.wav"].category == "kick" and "soft" in clips["BD_01.wav"].keywords
    assert clips["BD_02.wav"].category == "kick" and "hard" in clips["BD_02.wav"].keywords
    assert clips["HH2_01.wav"].category == "open_hat"
    kick2 = clips["tom_low_dist.wav"]
    assert kick2.category == "kick" and "tom" not in kick2.keywords
    assert kick2.keywords[0] == "kick" and {"low", "distorted"} <= set(kick2.keywords)
    assert clips["hihat-open-1.wav"].category == "open_hat"
    assert clips["CB_01.wav"].category == "crash" and "cowbell" not in clips["CB_01.wav"].keywords
    assert "x_03.wav" not in clips  # "Sample: x_03.wav" names no class
    assert clips["k.flac"].category == "kick" and "808" in clips["k.flac"].keywords  # old <filename> format
    assert clips["s.flac"].category == "snare" and "rim" in clips["s.flac"].keywords
    assert clips["hard_01.wav"].category == "kick" and {"808", "hard"} <= set(clips["hard_01.wav"].keywords)
    assert clips["open_01.aiff"].category == "open_hat"
    assert clips["hh_02.wav"].category == "closed_hat"
    assert clips["BD_01.wav"].kit == "TinyKit" and clips["BD_01.wav"].licence == "CC0"
    assert clips["BD_01.wav"].name == "Kick" and clips["hard_01.wav"].name == "hard_01"
    assert clips["hard_01.wav"].kit == "MyPlain" and clips["hard_01.wav"].licence == "CC0"
    for c in res.clips:  # keywords are normalised vocabulary words, class words first
        assert c.category in CATEGORIES
        assert tokenize(" ".join(c.keywords)) == list(c.keywords)
        assert c.keywords[0] in (
            "kick",
            "snare",
            "rim",
            "clap",
            "closed",
            "open",
            "tom",
            "crash",
            "ride",
            "cowbell",
            "shaker",
            "perc",
        )


def test_scan_fixture_errors_and_exclusions(kits_dir):
    res = scan([kits_dir])
    errors = {p.name: why for p, why in res.errors}
    assert set(errors) == {"SN_corrupt.wav", "SN_missing.wav", "clap_silent.wav"}
    assert "unreadable" in errors["SN_corrupt.wav"] and errors["SN_missing.wav"] == "missing file"
    assert "silent" in errors["clap_silent.wav"]
    excluded = {}
    for p, why in res.excluded:
        excluded.setdefault(p.name, []).append(why)
    assert "not a drum (guitar, strum)" in excluded["strum_C.wav"][0]
    assert "names no drum class" in excluded["emptySample.wav"][0]
    assert "same file as 'Kick'" in excluded["BD_01.wav"][0]
    assert "not a one-shot" in excluded["RD_long.wav"][0]
    assert "not referenced" in excluded["extra_unused.wav"][0]
    assert "not a drum (chord, guitar)" in excluded["chord_a.wav"][0]
    assert "names no drum class" in excluded["thing.wav"][0]
    assert "x_03.wav" in excluded
    names = {c.path.name for c in res.clips}
    assert not names & set(errors) and not names & (set(excluded) - {"BD_01.wav"})


def test_scan_is_deterministic_and_sorted(kits_dir):
    a, b = scan([kits_dir]), scan([kits_dir, kits_dir / "TinyKit"])  # overlapping folders: no duplicates
    assert a.clips == b.clips
    assert a.clips == sorted(a.clips, key=lambda c: (c.kit, str(c.path)))
    assert list(a.kits) == sorted(a.kits)
    assert a.kits["TinyKit"].n_clips == sum(c.kit == "TinyKit" for c in a.clips) == 6
    assert a.kits["TinyKit"].author == "Test Author"


def test_check_audio_off_still_reports_missing(kits_dir):
    res = scan([kits_dir], check_audio=False)
    assert {p.name for p, _ in res.errors} == {"SN_missing.wav"}
    assert "SN_corrupt.wav" in {c.path.name for c in res.clips}


def test_missing_folder_is_an_error_not_a_crash(tmp_path):
    res = scan([tmp_path / "nope"])
    assert res.clips == [] and res.errors == [(tmp_path / "nope", "no such folder")]


def test_split_by_kit(kits_dir):
    clips = scan([kits_dir]).clips
    train, held = split_by_kit(clips, ["OldKit"])
    assert {c.kit for c in held} == {"OldKit"} and "OldKit" not in {c.kit for c in train}
    assert len(train) + len(held) == len(clips)
    with pytest.raises(UserInputError, match="NoSuchKit"):
        split_by_kit(clips, ["NoSuchKit"])
    assert split_by_kit(clips, ["NoSuchKit"], strict=False) == (clips, [])


def test_clip_is_frozen(kits_dir):
    clip: Clip = scan([kits_dir]).clips[0]
    with pytest.raises(AttributeError):
        clip.category = "kick"  # type: ignore[misc]


@pytest.mark.slow
def test_real_hydrogen_kits():
    if not HYDROGEN_DIRS[0].is_dir():
        pytest.skip("hydrogen-drumkits not installed (make data)")
    res = scan(HYDROGEN_DIRS)
    counts = res.category_counts()
    assert 550 <= len(res.clips) <= 800
    assert all(counts[c] >= 15 for c in CATEGORIES), counts
    assert res.kits["belofilms_GuitarStrums"].n_clips == 0  # guitar strums are excluded
    assert res.kits["VariBreaks"].n_clips == 16  # one-shots, kept
    assert all(res.kits[k].licence for k in res.kits), "every packaged kit has a licence"
    assert len(res.errors) <= 3  # Millo_MultiLayered2 names a missing misc_Cowbell.flac
    train, held = split_by_kit(res.clips, DEFAULT_HELD_OUT_KITS)
    held_cats = {c.category for c in held}
    assert {"kick", "snare", "closed_hat", "open_hat", "tom", "crash", "ride", "clap"} <= held_cats
    assert 0.05 < len(held) / len(res.clips) < 0.15


def test_nearly_empty_files_are_errors_not_silent_clips(tmp_path):
    """Files of a few samples (a header and 5 samples, 4 samples, 1 sample, 2 ms) are errors of the scan: they were
    clips that load_fixed turned into pure silence. A file just over MIN_SECONDS loads as a sound."""
    folder = tmp_path / "kicks"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for n in (1, 4, 5, 88):
        sf.write(folder / f"kick_{n}.wav", (0.5 * rng.standard_normal(n)).astype(np.float32), SR)
    sf.write(folder / "kick_8k.wav", hit(1, seconds=0.004, sr=8000), 8000)  # 32 samples: 4 ms
    n_ok = int(MIN_SECONDS * SR) + 1
    sf.write(folder / "kick_ok.wav", (0.5 * rng.standard_normal(n_ok)).astype(np.float32), SR)
    res = scan([folder])
    errors = {p.name: why for p, why in res.errors}
    assert set(errors) == {"kick_1.wav", "kick_4.wav", "kick_5.wav", "kick_88.wav", "kick_8k.wav"}
    assert errors["kick_4.wav"] == "nearly empty (4 samples, 0.1 ms; a one-shot needs 5 ms)"
    assert [c.path.name for c in res.clips] == ["kick_ok.wav"]
    assert np.abs(load_fixed(res.clips[0].path)).max() == pytest.approx(0.95)


def test_an_over_long_file_is_excluded_from_its_header_without_decoding_it(kits_dir, monkeypatch):
    """RD_long.wav (21 s) is told from sf.info: its samples are never read (the scan decoded a whole 30-minute
    file, 1.5 GB, just to exclude it)."""
    read: list[str] = []
    real_read = sf.read

    def spy(file, *args, **kwargs):
        read.append(Path(file).name)
        return real_read(file, *args, **kwargs)

    monkeypatch.setattr(corpus.sf, "read", spy)
    res = scan([kits_dir / "TinyKit"])
    excluded = dict((p.name, why) for p, why in res.excluded)
    assert excluded["RD_long.wav"] == "21.0 s long: a recording or loop, not a one-shot"
    assert "RD_long.wav" not in read and "BD_02.wav" in read


def test_mp3_is_read_and_other_audio_formats_are_listed(tmp_path):
    """An .mp3 is a clip that decodes to a sound (a folder of them scanned as 0 clips, 0 excluded); audio in a
    format libsndfile does not read is listed as excluded with the reason, not passed over."""
    folder = tmp_path / "mp3s"
    folder.mkdir()
    sf.write(folder / "snare_01.mp3", hit(3, seconds=0.3), SR, format="MP3", subtype="MPEG_LAYER_III")
    (folder / "kick_01.m4a").write_bytes(b"\0\0\0\x20ftypM4A ")
    res = scan([folder])
    assert [(c.path.name, c.category) for c in res.clips] == [("snare_01.mp3", "snare")]
    assert np.abs(load_fixed(res.clips[0].path)).max() == pytest.approx(0.95)
    assert res.excluded == [(folder / "kick_01.m4a", ".m4a: audio format not read (convert it to WAV or FLAC)")]


def test_symlinked_folders_are_followed_once(kits_dir, tmp_path):
    """A link to a kit folder is scanned (it was skipped in silence: 1 clip of 14 found); a link that loops back
    does not hang, and a folder reached two ways counts once."""
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "old").symlink_to(kits_dir / "OldKit", target_is_directory=True)
    (linked / "plain").symlink_to(kits_dir / "plain", target_is_directory=True)
    (linked / "loop").symlink_to(linked, target_is_directory=True)
    (kits_dir / "plain" / "again").symlink_to(kits_dir / "plain" / "Hats", target_is_directory=True)
    res = scan([linked])
    direct = scan([kits_dir / "OldKit", kits_dir / "plain"])
    assert sorted((c.path.relative_to(linked).parts[0], c.path.name, c.category) for c in res.clips) == sorted(
        (c.path.relative_to(kits_dir).parts[0].replace("OldKit", "old"), c.path.name, c.category)
        for c in direct.clips
    )
    assert len(res.clips) == 5 and len({c.path.name for c in res.clips}) == 5
    both = scan([kits_dir, linked])
    assert len(both.clips) == len(scan([kits_dir]).clips)
