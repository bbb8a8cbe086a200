"""data/gm.py: the MIDI writer, the note tables against the corpus scan, the soundfont preset reader, the
render pipeline (dedupe, silence, cache, several soundfonts) with a fake fluidsynth, the real fluidsynth if
installed, errors."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sampleforge.audio.finish import detect_onset
from sampleforge.audio.io import read_metadata, write_wav
from sampleforge.cli import main
from sampleforge.data import gm
from sampleforge.data.corpus import DESCRIPTORS, scan, words_of
from sampleforge.data.gm import (
    AVL_SF2,
    DEFAULT_SF2,
    FLUIDR3,
    GM_NOTES,
    KITS,
    SOUNDFONTS,
    clip_name,
    kit_plan,
    midi_note_file,
    render_gm_kits,
    soundfont_presets,
)
from sampleforge.errors import UserInputError
from sampleforge.taxonomy import CATEGORIES, CATEGORY_WORDS

SR = 44100
HAVE_FLUIDSYNTH = shutil.which("fluidsynth") is not None and Path(DEFAULT_SF2).is_file()
HAVE_AVL = shutil.which("fluidsynth") is not None and all(Path(f).is_file() for f in AVL_SF2)
ALL_KITS = [k for spec in SOUNDFONTS.values() for k in spec.kits]


# ----------------------------------------------------------------------------------------------- helpers
def _parse_smf(data: bytes) -> tuple[int, list[tuple]]:
    """(ticks per quarter, [(tick, status or "meta", data...)]) of a format-0 file; asserts the framing."""
    assert data[:4] == b"MThd"
    hlen, fmt, ntracks, division = struct.unpack(">IHHH", data[4:14])
    assert (hlen, fmt, ntracks) == (6, 0, 1)
    assert data[14:18] == b"MTrk"
    (tlen,) = struct.unpack(">I", data[18:22])
    track = data[22:]
    assert len(track) == tlen  # the track length is exact and nothing follows the track
    events: list[tuple] = []
    i = t = 0
    while i < len(track):
        delta = 0
        while True:
            b = track[i]
            i += 1
            delta = (delta << 7) | (b & 0x7F)
            if b < 0x80:
                break
        t += delta
        status = track[i]
        if status == 0xFF:
            kind, length = track[i + 1], track[i + 2]
            events.append((t, "meta", kind, track[i + 3 : i + 3 + length]))
            i += 3 + length
        else:
            n = 2 if status & 0xF0 in (0xC0, 0xD0) else 3
            events.append((t, status, *track[i + 1 : i + n]))
            i += n
    return division, events


def _chunk(cid: bytes, data: bytes) -> bytes:
    return cid + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")


def _fake_sf2(path: Path, presets: list[tuple[str, int, int]]) -> Path:
    """A SoundFont 2 skeleton: INFO, an empty sample chunk and preset headers (name, program, bank)."""
    phdr = b"".join(
        struct.pack("<20sHHHIII", name.encode(), prog, bank, i, 0, 0, 0)
        for i, (name, prog, bank) in enumerate(presets)
    )
    phdr += struct.pack("<20sHHHIII", b"EOP", 0, 0, len(presets), 0, 0, 0)
    body = (
        b"sfbk"
        + _chunk(b"LIST", b"INFO" + _chunk(b"ifil", struct.pack("<HH", 2, 1)) + _chunk(b"INAM", b"fake\0"))
        + _chunk(b"LIST", b"sdta" + _chunk(b"smpl", b"\0" * 46))
        + _chunk(b"LIST", b"pdta" + _chunk(b"phdr", phdr) + _chunk(b"pbag", b"\0" * 8))
    )
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def _fake_render(soundfont: Path, midi: Path, wav: Path, gain: float, sample_rate: int) -> None:
    """Stands in for fluidsynth: a stereo render after 200 samples of silence. Note 36 is a kick whose sound
    depends on the program but is the same in programs 0 and 8 of the drum channel (10); on channel 1 it
    depends on the soundfont's file name; 38 changes with velocity; 39 is one waveform at every velocity
    (only the level changes); 56 is silent."""
    _, events = _parse_smf(midi.read_bytes())
    program_change = next(e for e in events if e[1] != "meta" and e[1] & 0xF0 == 0xC0)
    channel, program = program_change[1] & 0x0F, program_change[2]
    _, _, note, vel = next(e for e in events if e[1] == 0x90 | channel)
    if channel != 9:  # a kick of 81 or 82 Hz, by the file name's length
        program = 60 + len(soundfont.name)
    t = np.arange(3 * sample_rate) / sample_rate
    if note == 36:
        x = np.sin(2 * np.pi * (60 if program in (0, 8) else 45 if program < 60 else program) * t) * np.exp(-t / 0.3)
    elif note == 38:
        x = np.sin(2 * np.pi * 200 * t) * np.exp(-t / (0.05 + vel / 1000))
    elif note == 39:
        x = np.sign(np.sin(2 * np.pi * 1100 * t)) * np.exp(-t / 0.1)
    else:
        x = np.zeros_like(t)
    x = np.concatenate([np.zeros(200), gain * vel / 127 * x])
    sf.write(str(wav), np.stack([x, 0.8 * x], axis=1).astype(np.float32), sample_rate, subtype="FLOAT")


@pytest.fixture
def fake_fluidsynth(tmp_path, monkeypatch):
    """FluidR3_GM.sf2 with kits 0, 8 and 25 only (no 24), fluidsynth 'installed', renders from _fake_render."""
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(gm, "_run_fluidsynth", _fake_render)
    presets = [("Piano", 0, 0), ("Standard", 0, 128), ("Room", 8, 128), ("TR-808", 25, 128)]
    return _fake_sf2(tmp_path / "FluidR3_GM.sf2", presets)


# ----------------------------------------------------------------------------------------------- MIDI
def test_midi_note_file_parses():
    data = midi_note_file(39, 100, 25, hold=1.5, end=2.5)
    division, events = _parse_smf(data)
    per_second = division * 2  # 120 bpm
    assert events[0] == (0, "meta", 0x51, (500_000).to_bytes(3, "big"))
    assert events[1:4] == [(0, 0xB9, 0, 0), (0, 0xC9, 25), (0, 0x99, 39, 100)]  # channel 10
    assert events[4] == (int(1.5 * per_second), 0x89, 39, 0)  # a two-byte delta (1440 ticks)
    assert events[5] == (int(2.5 * per_second), "meta", 0x2F, b"")
    assert len(events) == 6
    assert _parse_smf(midi_note_file(36, 127, 0, hold=0.0))[1][4][0] == 0  # note-off at once
    for bad in (dict(note=128), dict(velocity=0), dict(program=-1)):
        args = {"note": 36, "velocity": 100, "program": 0, **bad}
        with pytest.raises(UserInputError, match="MIDI"):
            midi_note_file(args["note"], args["velocity"], args["program"])
    with pytest.raises(UserInputError, match="hold"):
        midi_note_file(36, 100, 0, hold=2.0, end=1.0)


# ----------------------------------------------------------------------------------------------- labels
def test_note_table_uses_valid_classes_and_keywords():
    for kit in KITS:
        assert list(kit.keywords) == [w for w in words_of(kit.name) if w in DESCRIPTORS]  # what the scan adds
        for note, dn in kit_plan(kit):
            assert dn.category in CATEGORIES, (kit.name, note)
            assert set(dn.keywords) <= DESCRIPTORS, (kit.name, note, dn.keywords)
            assert not set(dn.keywords) & {w for ws in CATEGORY_WORDS.values() for w in ws}
    assert GM_NOTES[39].category == "clap" and GM_NOTES[37].category == "rim"
    assert GM_NOTES[44].category == "closed_hat" and GM_NOTES[44].keywords == ("pedal",)
    brush, orchestra, tr808 = (next(k for k in KITS if k.program == p) for p in (40, 48, 25))
    assert dict(kit_plan(brush))[39].category == "snare"  # FluidR3's Brush kit has no clap
    assert {dn.category for _, dn in kit_plan(orchestra)} & {"closed_hat", "open_hat", "tom", "ride"} == set()
    assert dict(kit_plan(tr808))[44].category == "open_hat"
    assert [n for n, _ in kit_plan(KITS[0], notes=[39, 36])] == [36, 39]
    with pytest.raises(UserInputError, match="not a drum note of GM Standard"):
        kit_plan(KITS[0], notes=[58])


def test_the_avl_kits_have_their_own_note_map():
    avl = [k for f in ("Black_Pearl_4_LV2.sf2", "Red_Zeppelin_4_LV2.sf2") for k in SOUNDFONTS[f].kits]
    assert [k.name for k in avl] == ["AVL Black Pearl", "AVL Red Zeppelin"]
    for kit in avl:
        assert (kit.bank, kit.program, kit.channel) == (0, 0, 0)  # one preset, played on MIDI channel 1
        plan = dict(kit_plan(kit))
        assert sorted(plan) == list(range(36, 62))  # every note of the plug-in's map, each a drum
        assert plan[36].category == "kick" and plan[37].category == "rim" and plan[39].category == "clap"
        assert plan[46].category == "open_hat" and plan[44].keywords == ("pedal",)
        assert plan[50].keywords == ("choke",) and plan[61].category == "shaker"
        for dn in plan.values():
            assert dn.category in CATEGORIES and set(dn.keywords) <= DESCRIPTORS
        assert list(kit.keywords) == [w for w in words_of(kit.name) if w in DESCRIPTORS]
    assert {k.channel for k in KITS} == {9}
    assert SOUNDFONTS["FluidR3_GM.sf2"] is FLUIDR3 and FLUIDR3.kits == KITS
    with pytest.raises(UserInputError, match="not a drum note of AVL Black Pearl"):
        kit_plan(avl[0], notes=[35])


def test_every_file_name_is_labelled_as_intended_by_the_scan(tmp_path):
    intended: dict[str, tuple[str, set[str]]] = {}
    licence = {k.folder: spec.licence for spec in SOUNDFONTS.values() for k in spec.kits}
    for kit in ALL_KITS:
        d = tmp_path / kit.folder
        d.mkdir()
        (d / "kit.json").write_text(json.dumps({"name": kit.name, "author": "x", "licence": licence[kit.folder]}))
        for note, dn in kit_plan(kit):
            for vel, word in ((127, None), (127, "hard"), (90, None), (60, "soft")):
                name = clip_name(kit, note, dn, vel, word)
                write_wav(d / name, np.array([0.0, 0.5, 0.25], np.float32), SR)
                words = {*CATEGORY_WORDS[dn.category], *dn.keywords, *kit.keywords, *([word] if word else [])}
                intended[f"{kit.folder}/{name}"] = (dn.category, words)
    res = scan([tmp_path], check_audio=False)
    assert not res.excluded and not res.errors
    got = {f"{c.path.parent.name}/{c.path.name}": c for c in res.clips}
    assert set(got) == set(intended)
    for key, (cat, words) in intended.items():
        assert got[key].category == cat, key
        assert set(got[key].keywords) == words, key
        assert got[key].licence == licence[key.split("/")[0]]
    assert {c.kit for c in res.clips} == {k.name for k in ALL_KITS}


# ----------------------------------------------------------------------------------------------- soundfont
def test_soundfont_presets(tmp_path):
    sf2 = _fake_sf2(tmp_path / "x.sf2", [("Piano", 0, 0), ("TR-808", 25, 128)])
    assert soundfont_presets(sf2) == {(0, 0): "Piano", (128, 25): "TR-808"}
    (tmp_path / "bad.sf2").write_bytes(b"RIFF\x04\x00\x00\x00WAVE")
    with pytest.raises(UserInputError, match="not a SoundFont"):
        soundfont_presets(tmp_path / "bad.sf2")
    with pytest.raises(UserInputError, match="cannot read"):
        soundfont_presets(tmp_path / "missing.sf2")


@pytest.mark.skipif(not Path(DEFAULT_SF2).is_file(), reason="fluid-soundfont-gm is not installed")
def test_fluidr3_has_the_gm_kits():
    presets = soundfont_presets(DEFAULT_SF2)
    assert all((128, k.program) in presets for k in KITS)
    assert presets[(128, 25)] == "TR-808"


# ----------------------------------------------------------------------------------------------- pipeline
def test_render_dedupes_skips_silence_and_caches(tmp_path, fake_fluidsynth, monkeypatch):
    lines: list[str] = []
    out = tmp_path / "gm"
    kwargs = dict(
        programs=(0, 8, 25), notes=(36, 38, 39, 56), velocities=(127, 90, 60), progress=lines.append
    )
    clips = render_gm_kits(out, fake_fluidsynth, **kwargs)
    names = {f"{c.path.parent.name}/{c.path.name}" for c in clips}
    assert names == {
        "000-standard/kick_0036_127.wav",  # one waveform at every velocity: one file, no soft/hard
        "000-standard/snare_hard_0038_127.wav", "000-standard/snare_0038_90.wav",
        "000-standard/snare_soft_0038_60.wav",  # a velocity-dependent sound keeps its layers
        "000-standard/clap_0039_127.wav",
        "025-tr-808/kick_808_0036_127.wav",  # the Room kit's notes all copy the Standard kit's
    }  # fmt: skip
    assert all(c.path.parent.parent == out.resolve() for c in clips)
    manifest = json.loads((out / "008-room" / "manifest.json").read_text())
    assert manifest["files"] == []
    assert {s["why"] for s in manifest["skipped"]} == {"duplicate", "silent"}
    assert {"note": 36, "velocity": 127, "why": "duplicate", "of": "000-standard/kick_0036_127.wav"} in (
        manifest["skipped"]
    )
    assert (out / "008-room" / "kit.json").is_file()
    standard = json.loads((out / "000-standard" / "manifest.json").read_text())
    assert {"note": 39, "velocity": 60, "why": "velocity copy", "of": "127"} in standard["skipped"]
    kick = next(c for c in clips if c.path.name == "kick_808_0036_127.wav")
    assert kick.category == "kick" and kick.keywords == ("kick", "808")
    assert kick.kit == "GM TR-808" and kick.licence == "MIT"
    x, sr = sf.read(str(kick.path), dtype="float32")
    assert sr == SR and x.ndim == 1 and x.shape == (2 * SR,)
    assert abs(x[0]) > 0 and int(detect_onset(x)) < 10  # the 200 leading silent samples are gone
    assert np.abs(x[-10:]).max() < 1e-3  # faded at the cut
    assert read_metadata(kick.path)["gm_name"] == "Bass Drum 1"
    assert any("GM Room: 0 clips rendered" in line for line in lines)

    def no_render(*args):
        raise AssertionError("rendered again")

    monkeypatch.setattr(gm, "_run_fluidsynth", no_render)
    lines.clear()
    again = render_gm_kits(out, fake_fluidsynth, **kwargs)
    assert [c.path for c in again] == [c.path for c in clips]
    assert all("(cached)" in line for line in lines) and len(lines) == 3

    monkeypatch.setattr(gm, "_run_fluidsynth", _fake_render)
    fewer = render_gm_kits(out, fake_fluidsynth, **{**kwargs, "velocities": (127,)})  # new settings
    assert {c.path.name for c in fewer if c.kit == "GM Standard"} == {
        "kick_0036_127.wav", "snare_0038_127.wav", "clap_0039_127.wav",
    }  # fmt: skip
    assert sorted(p.name for p in (out / "000-standard").glob("*.wav")) == sorted(
        c.path.name for c in fewer if c.kit == "GM Standard"
    )  # the stale files are gone


def test_kits_missing_from_the_soundfont_are_skipped(tmp_path, fake_fluidsynth):
    lines: list[str] = []
    clips = render_gm_kits(tmp_path / "gm", fake_fluidsynth, (127,), programs=(0, 24), notes=(39,),
                           progress=lines.append)  # fmt: skip
    assert [c.kit for c in clips] == ["GM Standard"]
    assert any("GM Electronic: not in FluidR3_GM.sf2 (bank 128 program 24)" in line for line in lines)
    with pytest.raises(UserInputError, match="none of the drum kits"):
        render_gm_kits(tmp_path / "gm", fake_fluidsynth, (127,), programs=(24,))
    with pytest.raises(UserInputError, match="unknown kit program"):
        render_gm_kits(tmp_path / "gm", fake_fluidsynth, programs=(1,))
    with pytest.raises(UserInputError, match="velocities"):
        render_gm_kits(tmp_path / "gm", fake_fluidsynth, (127, 0))


def test_soundfonts_are_known_by_name_and_rendered_together(tmp_path, fake_fluidsynth):
    """The AVL soundfonts' one preset (bank 0) is their kit, played on channel 1 with its own note map; several
    soundfonts go into one folder, a recording kept for one kit is not written again for another, and each kit
    says whose it is. Any other soundfont is read as GS, its author and licence unknown."""
    pearl = _fake_sf2(tmp_path / "Black_Pearl_4_LV2.sf2", [("Black_Pearl_4pc", 0, 0)])
    zeppelin = _fake_sf2(tmp_path / "Red_Zeppelin_4_LV2.sf2", [("Red_Zeppelin_4pc", 0, 0)])
    out = tmp_path / "kits"
    gs = _fake_sf2(tmp_path / "MyKits.sf2", [("Standard", 0, 128)])
    clips = render_gm_kits(out, [pearl, zeppelin, gs], (127, 60), notes=(36, 39))
    names = sorted(f"{c.path.parent.name}/{c.path.name}" for c in clips)
    assert names == [
        "000-avl-black-pearl/clap_0039_127.wav", "000-avl-black-pearl/kick_0036_127.wav",
        "000-avl-red-zeppelin/kick_0036_127.wav",  # another kick; its clap is the Black Pearl's
        "000-standard/kick_0036_127.wav",
    ]  # fmt: skip
    by_kit = {c.kit: c for c in clips if c.category == "kick"}
    assert by_kit["AVL Black Pearl"].licence == "CC-BY-SA-3.0" and by_kit["GM Standard"].licence == "unknown"
    assert read_metadata(by_kit["AVL Red Zeppelin"].path)["source"] == "AVL Drumkits"
    assert read_metadata(by_kit["AVL Red Zeppelin"].path)["gm_name"] == "Kick Drum"
    kit_json = json.loads((out / "000-avl-red-zeppelin" / "kit.json").read_text())
    assert kit_json == {"name": "AVL Red Zeppelin", "author": "AVL Drumkits (Glen MacArthur)",
                        "licence": "CC-BY-SA-3.0"}  # fmt: skip
    assert json.loads((out / "000-standard" / "kit.json").read_text())["author"] == "unknown (MyKits.sf2)"
    manifest = json.loads((out / "000-avl-red-zeppelin" / "manifest.json").read_text())
    assert {"note": 39, "velocity": 127, "why": "duplicate", "of": "000-avl-black-pearl/clap_0039_127.wav"} in (
        manifest["skipped"]
    )
    (tmp_path / "copy").mkdir()
    pearl_copy = shutil.copy(pearl, tmp_path / "copy" / pearl.name)
    with pytest.raises(UserInputError, match=r"^soundfont: .* both hold the kit of folder 000-avl-black-pearl"):
        render_gm_kits(tmp_path / "again", [pearl, pearl_copy], (127,))
    with pytest.raises(UserInputError, match="avldrums.lv2-soundfont"):
        render_gm_kits(tmp_path / "again", tmp_path / "no" / "Red_Zeppelin_4_LV2.sf2")
    with pytest.raises(UserInputError, match="no soundfont"):
        render_gm_kits(tmp_path / "again", [])


@pytest.mark.skipif(not HAVE_FLUIDSYNTH, reason="needs fluidsynth and fluid-soundfont-gm (make data)")
def test_real_fluidsynth_render(tmp_path, monkeypatch):
    clips = render_gm_kits(tmp_path / "gm", programs=(0,), notes=(36, 39), velocities=(127, 60))
    assert {c.category for c in clips} == {"kick", "clap"}
    assert [c.path.name for c in clips if c.category == "clap"] == ["clap_0039_127.wav"]  # no velocity layers
    for c in clips:
        info = sf.info(str(c.path))
        assert (info.samplerate, info.channels, info.frames) == (SR, 1, 2 * SR)
        x, _ = sf.read(str(c.path), dtype="float32")
        assert 0.01 < float(np.abs(x).max()) < 1.0
        assert int(detect_onset(x)) < 0.005 * SR  # the onset is at the start
        assert c.kit == "GM Standard" and c.licence == "MIT"
    stamps = [c.path.stat().st_mtime_ns for c in clips]

    def no_render(*args):
        raise AssertionError("rendered again")

    monkeypatch.setattr(gm, "_run_fluidsynth", no_render)
    again = render_gm_kits(tmp_path / "gm", programs=(0,), notes=(36, 39), velocities=(127, 60))
    assert [c.path for c in again] == [c.path for c in clips]
    assert [c.path.stat().st_mtime_ns for c in again] == stamps


@pytest.mark.skipif(not HAVE_AVL, reason="needs fluidsynth and avldrums.lv2-soundfont (make data-gm)")
def test_real_avl_render(tmp_path):
    clips = render_gm_kits(tmp_path / "avl", AVL_SF2[0], (127,), notes=(36, 46, 61))
    assert sorted(c.path.name for c in clips) == [
        "kick_0036_127.wav", "open_hat_semi_0046_127.wav", "shaker_maraca_0061_127.wav",
    ]  # fmt: skip
    for c in clips:
        x, sr = sf.read(str(c.path), dtype="float32")
        assert sr == SR and 0.01 < float(np.abs(x).max()) < 1.0
        assert int(detect_onset(x)) < 0.005 * SR
        assert c.kit == "AVL Black Pearl" and c.licence == "CC-BY-SA-3.0"
    spectra = {c.category: np.abs(np.fft.rfft(sf.read(str(c.path), dtype="float32")[0])) for c in clips}
    freqs = np.fft.rfftfreq(2 * SR, 1 / SR)
    centroid = {k: float((v * freqs).sum() / v.sum()) for k, v in spectra.items()}
    assert centroid["kick"] < 2500 < centroid["open_hat"]  # the note map plays a kick on 36, a hat on 46


# ----------------------------------------------------------------------------------------------- errors
def test_missing_fluidsynth_or_soundfont_names_the_package(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(UserInputError, match="apt-get install fluidsynth fluid-soundfont-gm"):
        render_gm_kits(tmp_path / "gm")
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    with pytest.raises(UserInputError, match="`fluid-soundfont-gm`"):
        render_gm_kits(tmp_path / "gm", tmp_path / "missing.sf2")
    assert main(["data", "gm", "--out", str(tmp_path / "gm"), "--soundfont", str(tmp_path / "none.sf2")]) == 2
    assert "fluid-soundfont-gm" in capsys.readouterr().err
    assert main(["data", "gm", "--out", str(tmp_path / "gm"), "--velocities", "loud"]) == 2
    assert "--velocities" in capsys.readouterr().err


def test_gm_out_and_soundfont_problems_are_named_by_the_flag(tmp_path, fake_fluidsynth, capsys):
    """--out a file says so, as data synth and debian do (it said 'cannot write there (File exists)'); --soundfont
    a folder says it is one (it said 'no such soundfont: install fluid-soundfont-gm'); the same soundfont given
    twice is rendered once (it said 'kit folder ... would come from two soundfonts')."""
    sample = tmp_path / "sample.wav"
    sample.write_bytes(b"RIFF")
    for argv, needle in (
        (["--out", str(sample)], f"error: --out: {sample} is a file, not a folder"),
        (["--out", str(sample / "gm")], f"error: --out: {sample} is a file, not a folder"),
        (["--out", str(tmp_path / "gm"), "--soundfont", str(tmp_path)],
         f"error: --soundfont: {tmp_path} is a folder; give the soundfont file in it (.sf2)"),
    ):  # fmt: skip
        assert main(["data", "gm", "--soundfont", str(fake_fluidsynth), *argv]) == 2
        out, err = capsys.readouterr()
        assert out == "" and len(err.strip().splitlines()) == 1 and needle in err, err
    assert sample.read_bytes() == b"RIFF" and not (tmp_path / "gm").exists()
    with pytest.raises(UserInputError, match=f"^{sample} is a file, not a folder"):
        render_gm_kits(sample, fake_fluidsynth, (127,))
    args = ["data", "gm", "--out", str(tmp_path / "gm"), "--velocities", "127"]
    assert main([*args, "--soundfont", str(fake_fluidsynth), str(fake_fluidsynth)]) == 0
    twice = capsys.readouterr()
    assert main([*args, "--soundfont", str(fake_fluidsynth)]) == 0
    assert twice.out == capsys.readouterr().out and twice.err.count("GM Standard:") == 1


def test_gm_command(tmp_path, fake_fluidsynth, capsys):
    out = tmp_path / "gm"
    args = ["data", "gm", "--out", str(out), "--soundfont", str(fake_fluidsynth), "--velocities", "127"]
    assert main(args) == 0
    text = capsys.readouterr()
    assert "clips in" in text.out and "licence MIT" in text.out and "clap" in text.out
    assert "GM Standard:" in text.err and "GM Electronic: not in FluidR3_GM.sf2" in text.err
    assert (out / "025-tr-808" / "kit.json").is_file()


def test_bad_velocities_are_named_by_the_flag(tmp_path, fake_fluidsynth, capsys):
    """--velocities on the command line (it said 'velocities must be ...'), velocities in the Python API."""
    out = tmp_path / "gm"
    assert main(["data", "gm", "--out", str(out), "--soundfont", str(fake_fluidsynth), "--velocities", "200"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error: --velocities must be distinct values in 1..127, got [200]" in err[0], err
    with pytest.raises(UserInputError, match=r"^velocities must be distinct"):
        render_gm_kits(out, fake_fluidsynth, [200])


def test_gm_command_takes_several_soundfonts_and_velocities(tmp_path, fake_fluidsynth, capsys):
    """`--soundfont a.sf2 b.sf2` (a shell glob) and `--velocities 127 60`, as the repeated and comma forms."""
    pearl = _fake_sf2(tmp_path / "Black_Pearl_4_LV2.sf2", [("Black_Pearl_4pc", 0, 0)])
    zeppelin = _fake_sf2(tmp_path / "Red_Zeppelin_4_LV2.sf2", [("Red_Zeppelin_4pc", 0, 0)])
    out = tmp_path / "gm"
    assert main(["data", "gm", "--out", str(out), "--soundfont", str(pearl), str(zeppelin), "--velocities", "127",
                 "60"]) == 0, capsys.readouterr().err
    for kit in ("000-avl-black-pearl", "000-avl-red-zeppelin"):
        assert json.loads((out / kit / "manifest.json").read_text())["settings"]["velocities"] == [127, 60]
