"""Kits on the debug model: shared character, related noise, round robins and velocity layers; the SFZ,
Decent Sampler, Hydrogen (scanned back by our corpus scanner), GM map and kit.json all agree."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
import zipfile
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sampleforge.audio.io import read_metadata
from sampleforge.data.corpus import scan
from sampleforge.errors import UserInputError
from sampleforge.kit.build import Kit, build_kit, character
from sampleforge.kit.pieces import DEFAULT_PIECES, GM_NAMES, PIECES, parse_pieces, velocity_ranges
from sampleforge.kit.writers import write_kit, zip_folder
from sampleforge.pipeline import Generator


@pytest.fixture(scope="module")
def gen(debug_model: Path) -> Generator:
    return Generator.from_pretrained(debug_model, device="cpu")


@pytest.fixture(scope="module")
def full_kit(gen: Generator) -> Kit:
    return build_kit(gen, prompt="dusty 808", seed=4, steps=2)


@pytest.fixture(scope="module")
def layered(gen: Generator, tmp_path_factory: pytest.TempPathFactory) -> tuple[Kit, Path]:
    kit = build_kit(gen, prompt="punchy kick", pieces="kick,snare,closed_hat", seed=2, round_robins=2,
                    velocity_layers=3, steps=2)
    out = tmp_path_factory.mktemp("kits") / "layered"
    write_kit(kit, out, fmt="wav16")
    return kit, out


def parse_sfz(text: str) -> list[tuple[int, str, int, int, int | None]]:
    """(key, sample, lovel, hivel, seq_position) of every region (keys inherited from the group)."""
    regions, key = [], None
    for line in re.sub(r"//[^\n]*", "", text).split("\n"):
        if line.startswith("<group>"):
            key = int(re.search(r"key=(\d+)", line).group(1))  # type: ignore[union-attr]
        elif line.startswith("<region>"):
            get = dict(re.findall(r"(\w+)=(\S+)", line))
            seq = int(get["seq_position"]) if "seq_position" in get else None
            assert key is not None
            regions.append((key, get["sample"], int(get["lovel"]), int(get["hivel"]), seq))
    return regions


def test_default_kit_has_one_sound_per_piece_with_the_shared_character(full_kit: Kit, tmp_path: Path) -> None:
    assert full_kit.pieces == list(DEFAULT_PIECES) and len(full_kit.samples) == 11
    for s in full_kit.samples:
        assert s.prompt == f"{PIECES[s.piece].words} dusty 808"
        assert s.audio.dtype == np.float32 and 0.02 * 44100 <= s.audio.shape[0] <= 88200
        assert abs(float(np.abs(s.audio).max()) - 0.95) < 1e-3
    files = write_kit(full_kit, tmp_path / "k", fmt="wav24")
    names = {p.name for p in files}
    assert {"kit.sfz", "kit.dspreset", "drumkit.xml", "gm_map.csv", "kit.json", "kick.wav", "rim.wav"} <= names


def test_sfz_names_existing_files_on_the_right_keys(layered: tuple[Kit, Path]) -> None:
    kit, out = layered
    regions = parse_sfz((out / "kit.sfz").read_text())
    assert len(regions) == len(kit.samples) == 3 * 2 * 3
    for key, sample, lo, hi, seq in regions:
        path = out / sample
        assert path.is_file() and sf.info(str(path)).subtype == "PCM_16"
        meta = read_metadata(path)
        assert PIECES[meta["piece"]].note == key  # the file on this key is that piece
        assert f"{lo}-{hi}" == meta["velocity"] and seq == int(meta["round_robin"])
    by_key: dict[int, list[tuple[int, int]]] = {}
    for key, _, lo, hi, seq in regions:
        if seq == 1:
            by_key.setdefault(key, []).append((lo, hi))
    assert by_key == {36: velocity_ranges(3), 38: velocity_ranges(3), 42: velocity_ranges(3)}


def test_hydrogen_kit_scans_back_to_the_right_classes(full_kit: Kit, layered: tuple[Kit, Path],
                                                     tmp_path: Path) -> None:
    out = tmp_path / "h"
    write_kit(full_kit, out, fmt="flac")
    result = scan([out])
    assert not result.errors and not result.excluded
    got = {c.path.name: c.category for c in result.clips}
    assert got == {f"{s.piece}.flac": PIECES[s.piece].category for s in full_kit.samples}
    assert len(set(got.values())) == 9  # eleven pieces, the three toms are one class
    words = {c.path.name: c.keywords for c in result.clips}
    # the kit's "dusty 808" comes back as the corpus reads it: dusty is dark
    assert words["low_tom.flac"] == ("tom", "low", "dark", "808")
    assert words["high_tom.flac"] == ("tom", "high", "dark", "808")
    kit, lay = layered
    res2 = scan([lay])
    assert len(res2.clips) == len(kit.samples) and not res2.errors
    assert {c.category for c in res2.clips} == {"kick", "snare", "closed_hat"}
    root = ET.parse(lay / "drumkit.xml").getroot()
    ns = "{http://www.hydrogen-music.org/drumkit}"
    played = [i for i in root.iter(f"{ns}instrument") if i.find(f"{ns}instrumentComponent") is not None]
    assert [i.findtext(f"{ns}sampleSelectionAlgo") for i in played] == ["ROUND_ROBIN"] * 3


HYDROGEN_XSD = Path("/usr/share/hydrogen/data/xsd/drumkit.xsd")


@pytest.mark.skipif(not HYDROGEN_XSD.is_file(), reason="Hydrogen's drumkit schema (Debian's hydrogen-data) is absent")
def test_hydrogen_kit_validates_against_hydrogens_schema(full_kit: Kit, layered: tuple[Kit, Path],
                                                         tmp_path: Path) -> None:
    import xmlschema

    schema = xmlschema.XMLSchema(HYDROGEN_XSD)
    write_kit(full_kit, tmp_path / "h", fmt="wav16")
    for folder in (tmp_path / "h", layered[1]):
        errors = [f"{e.path}: {e.reason}" for e in schema.iter_errors(str(folder / "drumkit.xml"))]
        assert errors == []


def test_decent_sampler_gm_map_and_kit_json_agree(layered: tuple[Kit, Path]) -> None:
    kit, out = layered
    root = ET.parse(out / "kit.dspreset").getroot()
    samples = list(root.iter("sample"))
    assert len(samples) == len(kit.samples)
    for el in samples:
        meta = read_metadata(out / el.get("path", ""))
        assert int(el.get("rootNote", -1)) == PIECES[meta["piece"]].note
        assert el.get("seqPosition") == meta["round_robin"]
    rows = (out / "gm_map.csv").read_text().splitlines()
    assert rows[0] == "note,gm_name,piece,files" and rows[1].startswith("36,Bass Drum 1,kick,kick_v1_rr1.wav")
    info = json.loads((out / "kit.json").read_text())
    assert info["prompt"] == "punchy kick" and info["seed"] == 2 and info["model"] == kit.model
    assert info["round_robins"] == 2 and info["velocity_layers"] == 3 and len(info["samples"]) == 18
    assert {s["file"] for s in info["samples"]} == {s.file for s in kit.samples}
    assert all((out / s["file"]).is_file() for s in info["samples"])
    with zipfile.ZipFile(BytesIO(zip_folder(out, "layered"))) as z:
        assert sorted(z.namelist()) == sorted(f"layered/{p.name}" for p in out.iterdir())


def test_hydrogen_plays_each_piece_on_its_general_midi_note(full_kit: Kit, layered: tuple[Kit, Path],
                                                            tmp_path: Path) -> None:
    """Hydrogen plays MIDI note n on its instrument n - 36: the instrument there is the piece on that GM note
    (the snare on 38, the hats on 42 and 46, crash and ride on 49 and 51), an empty one where no piece is."""
    ns = "{http://www.hydrogen-music.org/drumkit}"
    write_kit(full_kit, tmp_path / "h", fmt="wav16")
    for kit, folder in ((full_kit, tmp_path / "h"), layered):
        instruments = list(ET.parse(folder / "drumkit.xml").getroot().iter(f"{ns}instrument"))
        notes = {PIECES[p].note: p for p in kit.pieces}
        assert len(instruments) == max(notes) - 35
        for i, inst in enumerate(instruments):
            note = 36 + i
            assert inst.findtext(f"{ns}id") == str(i) and inst.findtext(f"{ns}midiOutNote") == str(note)
            files = [e.text for e in inst.iter(f"{ns}filename")]
            if note in notes:
                assert inst.findtext(f"{ns}name") == PIECES[notes[note]].label
                assert files and all(read_metadata(folder / str(f))["piece"] == notes[note] for f in files)
            else:
                assert files == [] and inst.findtext(f"{ns}name") == GM_NAMES[note]


def test_each_preset_plays_a_velocity_at_its_own_curve_once(layered: tuple[Kit, Path]) -> None:
    """A layer's file carries its gain (-12, -6, 0 dB); each preset divides it out, so a velocity sounds at the
    level the sampler's own curve gives it (SFZ (v/127)^2, Decent Sampler and Hydrogen v/127) and not quieter
    twice over (a 6-dB jump at each layer's edge)."""
    kit, folder = layered
    gain = {s.file: 10 ** (s.gain_db / 20) for s in kit.samples}
    assert sorted(set(gain.values()))[0] == pytest.approx(10 ** (-12 / 20))
    for line in (folder / "kit.sfz").read_text().splitlines():
        if line.startswith("<region>"):
            get = dict(re.findall(r"(\w+)=(\S+)", line))
            points = {int(k.rsplit("_", 1)[1]): float(v) for k, v in get.items() if k.startswith("amp_velcurve_")}
            if gain[get["sample"]] == 1.0:
                assert points == {}  # the sampler's own curve
                continue
            assert min(points) == int(get["lovel"]) and max(points) == int(get["hivel"])
            for v, value in points.items():
                assert value * gain[get["sample"]] == pytest.approx((v / 127) ** 2, abs=1e-4)
    root = ET.parse(folder / "kit.dspreset").getroot()
    assert root.find("groups").get("release") == "60" and root.find("groups").get("releaseCurve") == "0"
    for el in root.iter("sample"):
        db = float((el.get("volume") or "0dB").removesuffix("dB"))
        assert 10 ** (db / 20) * gain[el.get("path", "")] == pytest.approx(1.0, rel=1e-3)
    ns = "{http://www.hydrogen-music.org/drumkit}"
    for layer in ET.parse(folder / "drumkit.xml").getroot().iter(f"{ns}layer"):
        assert float(layer.findtext(f"{ns}gain") or 0) * gain[layer.findtext(f"{ns}filename") or ""] == \
            pytest.approx(1.0, rel=1e-4)


def test_velocity_layers_are_quieter_and_round_robins_differ(layered: tuple[Kit, Path]) -> None:
    kit, _ = layered
    kick = {(s.rr, s.layer): s for s in kit.samples if s.piece == "kick"}
    peaks = [float(np.abs(kick[(0, v)].audio).max()) for v in range(3)]
    np.testing.assert_allclose(peaks, [0.95 * 10 ** (-12 / 20), 0.95 * 10 ** (-6 / 20), 0.95], rtol=1e-3)
    assert sorted(kick[(0, v)].prompt for v in range(3)) == ["kick hard punchy", "kick punchy", "kick soft punchy"]
    a, b = kick[(0, 2)].audio, kick[(1, 2)].audio
    n = min(len(a), len(b))
    assert not np.allclose(a[:n], b[:n], atol=1e-3)


def test_harder_layers_are_brighter(layered: tuple[Kit, Path], gen: Generator,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Each pad's renders go to its velocity layers darkest first (a drum hit harder sounds brighter); a render
    keeps its own prompt and knobs, a layer its velocities and gain."""
    import sampleforge.kit.build as build
    from sampleforge.timbre import measure

    kit, _ = layered
    for piece in kit.pieces:
        for rr in range(kit.round_robins):
            layers = sorted((s for s in kit.samples if s.piece == piece and s.rr == rr), key=lambda s: s.layer)
            bright = [measure(s.audio / 10 ** (s.gain_db / 20), kit.sample_rate)["brightness"] for s in layers]
            assert all(b >= a * (1 - 1e-6) for a, b in zip(bright[:-1], bright[1:], strict=True))  # up to rounding
            assert [s.gain_db for s in layers] == [-12.0, -6.0, 0.0]
    monkeypatch.setattr(build, "order_layers", lambda samples, rate: None)
    unordered = build_kit(gen, prompt="punchy kick", pieces="kick,snare,closed_hat", seed=2, round_robins=2,
                          velocity_layers=3, steps=2)
    render = {(s.piece, s.rr, s.prompt): (s.audio / 10 ** (s.gain_db / 20), s.knobs) for s in unordered.samples}
    for s in kit.samples:
        audio, knobs = render[(s.piece, s.rr, s.prompt)]
        np.testing.assert_allclose(s.audio / 10 ** (s.gain_db / 20), audio, atol=1e-5)
        assert s.knobs == knobs


def test_order_layers_moves_renders_not_layers() -> None:
    from sampleforge.kit.build import KitSample, order_layers

    t = np.arange(4410) / 44100
    tone = {f: (np.sin(2 * np.pi * f * t) * np.exp(-t / 0.02)).astype(np.float32) for f in (200, 2000, 8000)}
    order = (2000, 8000, 200)  # as the words left them: soft mid, medium brightest, hard darkest
    samples = [KitSample("snare", layer, 0, f"snare {f}", 7, velocity, gain, cfg_scale=float(layer),
                         knobs={"brightness": f / 10000}, audio=tone[f])
               for layer, (f, velocity, gain) in enumerate(zip(order, ((1, 42), (43, 85), (86, 127)),
                                                                (-12.0, -6.0, 0.0), strict=True))]
    order_layers(samples, 44100)
    assert [s.prompt for s in samples] == ["snare 200", "snare 2000", "snare 8000"]
    assert [s.knobs["brightness"] for s in samples] == [0.02, 0.2, 0.8]
    assert [s.cfg_scale for s in samples] == [2.0, 0.0, 1.0]  # each render keeps its own
    assert [s.velocity for s in samples] == [(1, 42), (43, 85), (86, 127)]
    assert [s.gain_db for s in samples] == [-12.0, -6.0, 0.0]
    assert all(s.audio is tone[int(s.prompt.split()[1])] for s in samples)


def test_related_noise_and_reroll(gen: Generator, full_kit: Kit) -> None:
    same = build_kit(gen, pieces="kick,snare", seed=4, relatedness=1.0, steps=2, length=None)
    free = build_kit(gen, pieces="kick,snare", seed=4, relatedness=0.0, steps=2, length=None)
    assert not np.allclose(same.samples[0].audio, free.samples[0].audio)
    again = build_kit(gen, prompt="dusty 808", seed=4, steps=2)
    rolled = build_kit(gen, prompt="dusty 808", seed=4, steps=2, pad_seeds={"snare": 999})
    for a, b, r in zip(full_kit.samples, again.samples, rolled.samples, strict=True):
        np.testing.assert_array_equal(a.audio, b.audio)  # same seed, same kit
        if r.piece == "snare":
            assert r.seed == 999 and (a.audio.shape != r.audio.shape or not np.allclose(a.audio, r.audio))
        else:
            np.testing.assert_allclose(a.audio, r.audio, atol=1e-4)  # only the re-rolled pad changes


def test_bad_kit_options_are_named(gen: Generator, tmp_path: Path, full_kit: Kit) -> None:
    assert character("Dusty 808 Kick, open hats") == "dusty 808"
    assert parse_pieces("kick, snare") == ["kick", "snare"]
    for pieces, match in (("kick,gong", "gong"), ("kick,kick", "twice"), ("", "at least one")):
        with pytest.raises(UserInputError, match=match):
            parse_pieces(pieces)
        with pytest.raises(UserInputError, match="pieces"):
            build_kit(gen, pieces=pieces, steps=1)
    for kw, match in (({"round_robins": 0}, "round_robins"), ({"velocity_layers": 9}, "velocity_layers"),
                      ({"relatedness": 1.5}, "relatedness"), ({"pad_seeds": {"ride": 3}}, "pad_seeds")):
        with pytest.raises(UserInputError, match=match):
            build_kit(gen, prompt="x", pieces="kick", steps=1, **kw)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.wav").write_bytes(b"keep me")
    with pytest.raises(UserInputError, match="not empty"):
        write_kit(full_kit, tmp_path / "busy")
    assert (tmp_path / "busy" / "mine.wav").read_bytes() == b"keep me"
    with pytest.raises(UserInputError, match="format"):
        write_kit(full_kit, tmp_path / "new", fmt="mp3")


def test_knobs_are_shared_and_recorded(gen: Generator, tmp_path: Path) -> None:
    kit = build_kit(gen, prompt="kick", pieces="kick,snare", seed=1, steps=1, decay=0.2)
    write_kit(kit, tmp_path / "kn")
    assert json.loads(read_metadata(tmp_path / "kn" / "kick.wav")["knobs"]) == {"decay": 0.2}
    assert json.loads((tmp_path / "kn" / "kit.json").read_text())["params"]["knobs"] == {"decay": 0.2}
    with pytest.raises(UserInputError, match="loudness"):
        build_kit(gen, prompt="kick", pieces="kick", steps=1, loudness=0.5)


def test_written_comments_stay_comments(full_kit: Kit, tmp_path: Path) -> None:
    """A kit name or prompt with a line break or "--" (the Python API's build_kit takes any text) keeps the SFZ
    header one comment line and the presets well-formed XML."""
    import dataclasses

    kit = dataclasses.replace(full_kit, name="a\nb -- c", prompt="dusty---808\r\nkit")
    write_kit(kit, tmp_path / "odd")
    lines = (tmp_path / "odd" / "kit.sfz").read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("// a b -- c: ") and lines[1].startswith("<global>"), lines[:2]
    for name in ("kit.dspreset", "drumkit.xml"):
        ET.parse(tmp_path / "odd" / name)  # "--" inside an XML comment is not well-formed
    comment = re.search(r"<!--(.*?)-->", (tmp_path / "odd" / "kit.dspreset").read_text(), re.S)
    assert comment is not None and "--" not in comment.group(1) and "\n" not in comment.group(1)


def test_a_warning_only_some_pads_give_names_them(gen: Generator) -> None:
    """A kit's prompt warnings are said once; one that only some pads' prompts give (a keyword the model holds back
    in one class) names those pads, one every pad gives (a word the model does not know) does not."""
    with gen.with_timbre(keyword_reach={"snare": {"808": 0.25}}):
        kit = build_kit(gen, prompt="808 zzqx", pieces="kick,snare", seed=1, steps=1, velocity_layers=2)
    held = [w for w in kit.warnings if "'808' at full strength takes a snare" in w]
    assert len(held) == 1 and held[0].endswith("(pads: 'snare soft 808 zzqx', 'snare hard 808 zzqx')"), kit.warnings
    unknown = [w for w in kit.warnings if w.startswith("unknown keyword 'zzqx'")]
    assert len(unknown) == 1 and "(pads:" not in unknown[0], kit.warnings
