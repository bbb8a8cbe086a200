"""The drum kits of Debian's soundfonts, rendered note by note into one-shots.

Why: the Hydrogen kits hold few claps, rims, cowbells and shakers. FluidR3_GM (``fluid-soundfont-gm``, Frank
Wen, MIT licence) is a soundfont of real recordings (the TR-808 kit holds the machine's own samples) with eight
GM drum kits. The AVL Drumkits of ``avldrums.lv2-soundfont`` (Glen MacArthur, CC-BY-SA-3.0) are two acoustic
rock kits, Black Pearl and Red Zeppelin, each recorded at five velocities, with their own note map (``AVL_NOTES``).
``SOUNDFONTS`` says which kits a known soundfont file holds and whose they are; any other soundfont is read as a
GS one, with the GM kit programs of its bank 128.

How: for every kit (a preset: a bank-128 program of ``KITS`` on the drum channel, the AVL kits' bank-0 one on
channel 1) and note of its map (``GM_NOTES`` with ``KIT_OVERRIDES``, or the kit's own) a one-note
Standard MIDI File is rendered by the ``fluidsynth`` CLI at each velocity, reverb and chorus off. The stereo
render is down-mixed, its leading silence trimmed (the onset is the first sample), cut to ``duration``
with a short fade, and written with ``write_wav`` under a name the corpus scan labels
(``clap_808_0039_127.wav`` -> clap, 808), one folder per kit with a ``kit.json`` and a ``manifest.json``.
A kit whose manifest matches the settings is not rendered again.

Duplicates (measured on FluidR3_GM): the kits share most samples -- the clap of Standard, Room, Power,
Electronic, Jazz and Orchestra is one recording, and notes 54-87 are the same in every kit but the 808's
cowbell, congas and clave -- and most notes sound the same at every velocity (only the kicks and snares of
the acoustic kits change), so their velocity-60 render is the velocity-127 one scaled down. Training
peak-normalises every clip, so such copies are the same example, and they would also leak training clips
into a kit-level held-out split. With ``dedupe`` (the default) a
render equal to a kept clip after peak normalisation is not written (the manifest says which clip it
copies), and a note whose velocities all give the same waveform is written once, without a soft/hard word
(as the corpus gives soft/hard only to multi-layer instruments). The two AVL kits share their clap, pedal and
semi-open hats, tambourine and maracas, and at some velocities their cowbell, splash and third crash; their
closed hats are nearly, not exactly, one recording, and both are kept.

Labels follow the GM percussion map, except where a FluidR3 kit plays something else on a note
(``KIT_OVERRIDES``, read from the soundfont's zones): the Brush kit's 39 and 40 are brush snares, the
Orchestra kit's 41-53 are timpani and its 59 a crash, the 808's pedal hat (44) is its open hat, shortened.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import struct
import subprocess
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from sampleforge.audio.finish import fade_out
from sampleforge.audio.io import read_audio, write_wav
from sampleforge.data.corpus import SILENT_PEAK, Clip, scan
from sampleforge.errors import ParamError, UserInputError, file_in_the_way
from sampleforge.taxonomy import CATEGORY_WORDS

DEFAULT_SF2 = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
AVL_SF2 = ("/usr/share/sounds/sf2/Black_Pearl_4_LV2.sf2", "/usr/share/sounds/sf2/Red_Zeppelin_4_LV2.sf2")
APT_PACKAGES = "fluidsynth fluid-soundfont-gm"
SAMPLE_RATE = 44100
RENDER_VERSION = 1  # bump when rendering or naming changes: cached kits are then rendered again
DRUM_CHANNEL = 9  # MIDI channel 10
HOLD_SECONDS = 1.5  # note-off after this long (drum presets mostly ignore it; looped samples do not)
LEAD_DB = -60.0  # leading samples more than 60 dB below the peak are silence
FADE_MS = 20.0  # fade at the cut, so a still-ringing cymbal does not end in a click
DUPLICATE_TOL = 1e-3  # max |difference| of two peak-normalised renders that are the same recording
FLUIDSYNTH_TIMEOUT = 120.0


@dataclass(frozen=True)
class DrumNote:
    """What a drum note plays: its class, extra keywords (``corpus.DESCRIPTORS`` words) and GM name."""

    category: str
    keywords: tuple[str, ...]
    gm_name: str


@dataclass(frozen=True)
class GmKit:
    """A drum kit of a soundfont: preset ``program`` of ``bank`` (128, the GM drum bank, plays on MIDI channel
    10; other banks on channel 1). ``name`` goes to kit.json, and the scan turns its descriptor words into
    keywords of every clip, so ``keywords`` must be exactly those words. ``note_map`` is a kit's own map of
    notes (note, what it plays); empty, the kit follows ``GM_NOTES`` and ``KIT_OVERRIDES``."""

    program: int
    name: str
    keywords: tuple[str, ...]
    bank: int = 128
    note_map: tuple[tuple[int, DrumNote], ...] = ()

    @property
    def folder(self) -> str:
        return f"{self.program:03d}-" + re.sub(
            r"[^a-z0-9]+", "-", self.name.lower().removeprefix("gm ")
        ).strip("-")

    @property
    def channel(self) -> int:
        return DRUM_CHANNEL if self.bank == 128 else 0


@dataclass(frozen=True)
class Soundfont:
    """Whose a soundfont's drum kits are (``source`` goes into every clip's metadata, ``author`` and
    ``licence`` into kit.json) and which ones it holds."""

    source: str
    author: str
    licence: str
    kits: tuple[GmKit, ...]
    package: str = ""  # the Debian package that installs it


def _n(category: str, gm_name: str, *keywords: str) -> DrumNote:
    return DrumNote(category, keywords, gm_name)


# The GM percussion map (35-81) plus the GM2 notes that are drums (82 shaker, 85 castanets, 86/87 surdo).
# Left out: 58 vibraslap, 71/72 whistles, 83 jingle bell, 84 bell tree (not drums), 27-34 (effects).
GM_NOTES: dict[int, DrumNote] = {
    35: _n("kick", "Acoustic Bass Drum"), 36: _n("kick", "Bass Drum 1"),
    37: _n("rim", "Side Stick"), 38: _n("snare", "Acoustic Snare"),
    39: _n("clap", "Hand Clap"), 40: _n("snare", "Electric Snare"),
    41: _n("tom", "Low Floor Tom", "floor", "low"), 43: _n("tom", "High Floor Tom", "floor", "high"),
    45: _n("tom", "Low Tom", "low"), 47: _n("tom", "Low-Mid Tom", "low", "mid"),
    48: _n("tom", "Hi-Mid Tom", "high", "mid"), 50: _n("tom", "High Tom", "high"),
    42: _n("closed_hat", "Closed Hi-Hat"), 44: _n("closed_hat", "Pedal Hi-Hat", "pedal"),
    46: _n("open_hat", "Open Hi-Hat"),
    49: _n("crash", "Crash Cymbal 1"), 57: _n("crash", "Crash Cymbal 2"),
    52: _n("crash", "Chinese Cymbal", "china"), 55: _n("crash", "Splash Cymbal", "splash"),
    51: _n("ride", "Ride Cymbal 1"), 59: _n("ride", "Ride Cymbal 2"), 53: _n("ride", "Ride Bell", "bell"),
    56: _n("cowbell", "Cowbell"),
    67: _n("cowbell", "High Agogo", "agogo", "high"), 68: _n("cowbell", "Low Agogo", "agogo", "low"),
    54: _n("shaker", "Tambourine", "tambourine"), 69: _n("shaker", "Cabasa", "cabasa"),
    70: _n("shaker", "Maracas", "maraca"), 82: _n("shaker", "Shaker"),
    60: _n("perc", "Hi Bongo", "bongo", "high"), 61: _n("perc", "Low Bongo", "bongo", "low"),
    62: _n("perc", "Mute Hi Conga", "conga", "mute", "high"),
    63: _n("perc", "Open Hi Conga", "conga", "high"), 64: _n("perc", "Low Conga", "conga", "low"),
    65: _n("perc", "High Timbale", "timbale", "high"), 66: _n("perc", "Low Timbale", "timbale", "low"),
    73: _n("perc", "Short Guiro", "guiro", "short"), 74: _n("perc", "Long Guiro", "guiro", "long"),
    75: _n("perc", "Claves", "clave"),
    76: _n("perc", "Hi Wood Block", "woodblock", "high"),
    77: _n("perc", "Low Wood Block", "woodblock", "low"),
    78: _n("perc", "Mute Cuica", "cuica", "mute"), 79: _n("perc", "Open Cuica", "cuica"),
    80: _n("perc", "Mute Triangle", "triangle", "mute"), 81: _n("perc", "Open Triangle", "triangle"),
    85: _n("perc", "Castanets"), 86: _n("perc", "Mute Surdo", "mute"), 87: _n("perc", "Open Surdo"),
}  # fmt: skip

KITS: tuple[GmKit, ...] = (
    GmKit(0, "GM Standard", ()),
    GmKit(8, "GM Room", ("room",)),
    GmKit(16, "GM Power", ("power",)),
    GmKit(24, "GM Electronic", ("electro",)),  # the corpus reads "electronic" as "electro"
    GmKit(25, "GM TR-808", ("808",)),
    GmKit(32, "GM Jazz", ("jazz",)),
    GmKit(40, "GM Brush", ("brush",)),
    GmKit(48, "GM Orchestra", ()),
)

# program -> note -> what FluidR3's kit really plays there (None: not a drum one-shot, skipped)
# (the Orchestra kit's 41-53 are two timpani samples played at 13 pitches: one note of each is kept)
_TIMPANI_SKIPPED: dict[int, DrumNote | None] = {n: None for n in (42, *range(44, 54))}
KIT_OVERRIDES: dict[int, dict[int, DrumNote | None]] = {
    25: {44: _n("open_hat", "Pedal Hi-Hat (the 808 open hat, shortened)", "short")},
    40: {39: _n("snare", "Hand Clap (a brush snare slap)"),
         40: _n("snare", "Electric Snare (a brush swirl)")},
    48: {**_TIMPANI_SKIPPED, 41: _n("perc", "Low Floor Tom (timpani)"),
         43: _n("perc", "High Floor Tom (timpani)"), 59: _n("crash", "Ride Cymbal 2 (a concert cymbal)")},
}  # fmt: skip


# The AVL Drumkits' own note map (the plug-in's MIDNAM): both kits play the same instruments on the same notes.
AVL_NOTES: tuple[tuple[int, DrumNote], ...] = (
    (36, _n("kick", "Kick Drum")), (37, _n("rim", "Snare Side Stick")), (38, _n("snare", "Snare Centre")),
    (39, _n("clap", "Hand Clap")), (40, _n("snare", "Snare Edge", "edge")),
    (41, _n("tom", "Floor Tom Centre", "floor", "low")), (43, _n("tom", "Floor Tom Edge", "floor", "low", "edge")),
    (45, _n("tom", "Rack Tom Centre", "rack", "high")), (47, _n("tom", "Rack Tom Edge", "rack", "high", "edge")),
    (42, _n("closed_hat", "Closed Hi-Hat")), (44, _n("closed_hat", "Pedal Hi-Hat", "pedal")),
    (46, _n("open_hat", "Semi-Open Hi-Hat", "semi")), (48, _n("open_hat", "Swish Hi-Hat", "swish")),
    (49, _n("crash", "Crash 1")), (50, _n("crash", "Crash 1 Choke", "choke")), (57, _n("crash", "Crash 2")),
    (58, _n("crash", "Crash 2 Choke", "choke")), (60, _n("crash", "Crash 3")), (55, _n("crash", "Splash", "splash")),
    (51, _n("ride", "Ride Tip")), (52, _n("ride", "Ride Choke", "choke")), (53, _n("ride", "Ride Bell", "bell")),
    (59, _n("ride", "Ride Shank")), (54, _n("shaker", "Tambourine", "tambourine")),
    (56, _n("cowbell", "Cowbell")), (61, _n("shaker", "Maracas", "maraca")),
)  # fmt: skip

FLUIDR3 = Soundfont("FluidR3_GM", "FluidR3_GM (Frank Wen)", "MIT", KITS, "fluid-soundfont-gm")


def _avl(name: str) -> Soundfont:
    kit = GmKit(0, name, (), bank=0, note_map=AVL_NOTES)
    return Soundfont("AVL Drumkits", "AVL Drumkits (Glen MacArthur)", "CC-BY-SA-3.0", (kit,), "avldrums.lv2-soundfont")


# file name -> its kits (Debian's fluid-soundfont-gm and avldrums.lv2-soundfont)
SOUNDFONTS: dict[str, Soundfont] = {
    "FluidR3_GM.sf2": FLUIDR3,
    "Black_Pearl_4_LV2.sf2": _avl("AVL Black Pearl"),
    "Red_Zeppelin_4_LV2.sf2": _avl("AVL Red Zeppelin"),
}


def soundfont_kits(path: Path) -> Soundfont:
    """The kits of the soundfont at ``path`` (``SOUNDFONTS`` by file name; any other file is read as a GS
    soundfont with ``KITS``, its author and licence unknown)."""
    return SOUNDFONTS.get(path.name) or Soundfont(path.stem, f"unknown ({path.name})", "unknown", KITS)


def kit_plan(kit: GmKit, notes: Sequence[int] | None = None) -> list[tuple[int, DrumNote]]:
    """(note, what it plays) for every note rendered for ``kit`` (all of its map or ``notes``)."""
    table: dict[int, DrumNote | None] = dict(kit.note_map) or {
        **GM_NOTES, **KIT_OVERRIDES.get(kit.program, {})
    }
    plan: list[tuple[int, DrumNote]] = []
    for note in sorted(table if notes is None else notes):
        if note not in table:
            raise UserInputError(
                f"note {note} is not a drum note of {kit.name} this module renders (valid: {sorted(table)})"
            )
        dn = table[note]
        if dn is not None:
            plan.append((note, dn))
    return plan


def velocity_word(velocity: int) -> str | None:
    """The corpus velocity keyword of a MIDI velocity: "hard" from 112, "soft" up to 72, else none."""
    return "hard" if velocity >= 112 else "soft" if velocity <= 72 else None


def clip_keywords(kit: GmKit, dn: DrumNote, vel_word: str | None) -> tuple[str, ...]:
    """The keywords the corpus scan must give a clip: class words, note words, kit words, velocity word."""
    words = [*CATEGORY_WORDS[dn.category], *dn.keywords, *kit.keywords, *([vel_word] if vel_word else [])]
    return tuple(dict.fromkeys(words))


def clip_name(kit: GmKit, note: int, dn: DrumNote, velocity: int, vel_word: str | None) -> str:
    """``clap_808_hard_0039_127.wav``: the keywords, then the note (a leading zero: the scan drops it) and the
    velocity (not a descriptor: the scan keeps it out of the keywords)."""
    return "_".join([*clip_keywords(kit, dn, vel_word), f"{note:04d}", str(velocity)]) + ".wav"


# ----------------------------------------------------------------------------------------------- MIDI
def _vlq(value: int) -> bytes:
    """A MIDI variable-length quantity (7 bits per byte, high bit set on all but the last)."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def midi_note_file(
    note: int,
    velocity: int,
    program: int,
    hold: float = HOLD_SECONDS,
    end: float | None = None,
    channel: int = DRUM_CHANNEL,
) -> bytes:
    """A format-0 Standard MIDI File playing one note: at time 0 bank select 0 (GS synths such as fluidsynth
    keep channel 10 on the drum bank 128), program change ``program`` and note-on; note-off after ``hold``
    seconds; end of track at ``end`` (default ``hold`` + 0.5 s). 480 ticks per quarter at 120 bpm."""
    for what, value, lo, hi in (("note", note, 0, 127), ("velocity", velocity, 1, 127),
                                ("program", program, 0, 127), ("channel", channel, 0, 15)):  # fmt: skip
        if not lo <= value <= hi:
            raise UserInputError(f"MIDI {what} must be in {lo}..{hi}, got {value}")
    end = hold + 0.5 if end is None else end
    if not 0 <= hold <= end:
        raise UserInputError(f"MIDI times must satisfy 0 <= hold <= end, got hold={hold}, end={end}")
    tpq, tempo = 480, 500_000  # µs per quarter: 960 ticks per second
    t_off, t_end = (int(round(s * 1e6 / tempo * tpq)) for s in (hold, end))
    events = b"".join([
        _vlq(0) + b"\xff\x51\x03" + tempo.to_bytes(3, "big"),
        _vlq(0) + bytes([0xB0 | channel, 0, 0]),
        _vlq(0) + bytes([0xC0 | channel, program]),
        _vlq(0) + bytes([0x90 | channel, note, velocity]),
        _vlq(t_off) + bytes([0x80 | channel, note, 0]),
        _vlq(t_end - t_off) + b"\xff\x2f\x00",
    ])  # fmt: skip
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, tpq) + b"MTrk" + struct.pack(">I", len(events)) + events


# ----------------------------------------------------------------------------------------------- soundfont
def soundfont_presets(path: str | Path) -> dict[tuple[int, int], str]:
    """(bank, program) -> preset name, from the SF2 ``phdr`` chunk; only chunk headers are read, the
    samples (140 MB for FluidR3_GM) are skipped. UserInputError if the file is not a SoundFont 2."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"sfbk":
                raise UserInputError(f"{p}: not a SoundFont 2 file (no RIFF sfbk header)")
            end = 8 + struct.unpack("<I", head[4:8])[0]
            for cid, start, size in _chunks(f, 12, end):
                f.seek(start)
                if cid == b"LIST" and f.read(4) == b"pdta":
                    for sid, s_start, s_size in _chunks(f, start + 4, start + size):
                        if sid == b"phdr":
                            f.seek(s_start)
                            return _preset_headers(f.read(s_size))
    except (OSError, struct.error) as exc:
        raise UserInputError(f"{p}: cannot read the soundfont ({exc})") from None
    raise UserInputError(f"{p}: not a SoundFont 2 file (no preset headers)")


def _chunks(f: Any, pos: int, end: int) -> list[tuple[bytes, int, int]]:
    """(id, data start, data size) of the RIFF chunks between ``pos`` and ``end`` (sizes padded to even)."""
    out: list[tuple[bytes, int, int]] = []
    while pos + 8 <= end:
        f.seek(pos)
        cid, size = struct.unpack("<4sI", f.read(8))
        out.append((cid, pos + 8, size))
        pos += 8 + size + (size & 1)
    return out


def _preset_headers(data: bytes) -> dict[tuple[int, int], str]:
    out: dict[tuple[int, int], str] = {}
    for i in range(0, (len(data) // 38 - 1) * 38, 38):  # 38-byte records; the last one ("EOP") ends the list
        name, program, bank = struct.unpack_from("<20sHH", data, i)
        out[(bank, program)] = name.split(b"\0")[0].decode("latin-1").strip()
    return out


# ----------------------------------------------------------------------------------------------- rendering
def _check_tools(soundfont: Path) -> None:
    if shutil.which("fluidsynth") is None:
        raise UserInputError(
            f"fluidsynth not found: install the Debian package `fluidsynth` (apt-get install {APT_PACKAGES}, "
            "or `make data-gm`)"
        )
    if soundfont.is_dir():
        raise ParamError("soundfont", f": {soundfont} is a folder; give the soundfont file in it (.sf2)")
    if not soundfont.is_file():
        package = soundfont_kits(soundfont).package or "fluid-soundfont-gm"
        raise UserInputError(
            f"{soundfont}: no such soundfont: install the Debian package `{package}` "
            f"(apt-get install {package}, or `make data-gm`) or give another .sf2"
        )


def _run_fluidsynth(soundfont: Path, midi: Path, wav: Path, gain: float, sample_rate: int) -> None:
    """Render ``midi`` into a float WAV (faster than real time, no audio device, reverb and chorus off)."""
    cmd = ["fluidsynth", "-ni", "-q", "-g", str(gain), "-r", str(sample_rate), "-R", "0", "-C", "0",
           "-O", "float", "-T", "wav", "-o", "synth.dynamic-sample-loading=1",  # load only the kit's samples
           "-F", str(wav), str(soundfont), str(midi)]  # fmt: skip
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=FLUIDSYNTH_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UserInputError(f"fluidsynth failed on {midi.name}: {exc}") from None
    if res.returncode != 0 or not wav.is_file():
        tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
        raise UserInputError(f"fluidsynth failed on {midi.name} (exit {res.returncode}): {' | '.join(tail)}")


def _one_shot(path: Path, sample_rate: int, duration: float) -> np.ndarray | None:
    """The render as a mono one-shot of ``duration`` starting at its onset, or None if it is silent."""
    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    if sr != sample_rate:
        raise RuntimeError(f"fluidsynth wrote {sr} Hz, asked for {sample_rate}")  # a bug, not user error
    x = data.mean(axis=1)
    peak = float(np.abs(x).max()) if x.size else 0.0
    if peak < SILENT_PEAK:
        return None
    onset = int(np.argmax(np.abs(x) >= peak * 10 ** (LEAD_DB / 20)))
    n = int(round(duration * sample_rate))
    out = np.zeros(n, np.float32)
    seg = x[onset : onset + n]
    out[: seg.size] = seg
    return np.asarray(fade_out(out, sample_rate, FADE_MS), dtype=np.float32)


Fingerprint = tuple[np.ndarray, np.ndarray]


def fingerprint(wav: np.ndarray) -> Fingerprint:
    """(RMS envelope in 64 blocks, first 4096 samples) of the peak-normalised clip: equal for two renders of
    one recording at any level, different for another sample, tuning or envelope."""
    x = wav / max(float(np.abs(wav).max()), 1e-12)
    blocks = x[: x.size // 64 * 64].reshape(64, -1)
    return np.sqrt((blocks**2).mean(axis=1)), x[:4096].copy()


def _same(a: Fingerprint, b: Fingerprint) -> bool:
    return all(
        p.shape == q.shape and float(np.abs(p - q).max()) < DUPLICATE_TOL for p, q in zip(a, b, strict=True)
    )


class _Seen:
    """The clips kept so far (any kit, any note), to find copies of one recording."""

    def __init__(self) -> None:
        self.items: list[tuple[Fingerprint, str]] = []

    def find(self, fp: Fingerprint) -> str | None:
        return next((name for f, name in self.items if _same(f, fp)), None)

    def add(self, fp: Fingerprint, name: str) -> None:
        self.items.append((fp, name))


def _settings(
    kit: GmKit, plan: list[tuple[int, DrumNote]], soundfont: Path, velocities: Sequence[int], duration: float,
    gain: float, dedupe: bool, before: list[str],
) -> dict[str, Any]:  # fmt: skip
    """What a kit folder's content depends on (its manifest is a cache hit only when these are equal)."""
    plan_text = json.dumps([[n, d.category, list(d.keywords)] for n, d in plan])
    return {
        "version": RENDER_VERSION, "soundfont": str(soundfont), "soundfont_bytes": soundfont.stat().st_size,
        "bank": kit.bank, "program": kit.program, "kit": kit.name, "kit_keywords": list(kit.keywords),
        "velocities": list(velocities), "duration": duration, "gain": gain, "sample_rate": SAMPLE_RATE,
        "hold": HOLD_SECONDS, "dedupe": dedupe, "deduped_against": before if dedupe else [],
        "plan": hashlib.sha256(plan_text.encode()).hexdigest()[:16],
    }  # fmt: skip


def _cached(kit_dir: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    try:
        manifest = json.loads((kit_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("settings") != settings:
        return None
    if not all((kit_dir / f["file"]).is_file() for f in manifest.get("files", [])):
        return None
    return manifest


_OUR_WAV = re.compile(r"_\d{4}_\d{1,3}\.wav$")  # the names clip_name writes


def _render_kit(
    kit: GmKit, plan: list[tuple[int, DrumNote]], kit_dir: Path, tmp: Path, soundfont: Path, spec: Soundfont,
    velocities: Sequence[int], duration: float, gain: float, dedupe: bool, seen: _Seen,
) -> dict[str, Any]:  # fmt: skip
    """Render one kit into ``kit_dir``; returns the manifest body (files written, renders skipped and why)."""
    for old in kit_dir.glob("*.wav"):  # a stale render: the settings changed
        if _OUR_WAV.search(old.name):
            old.unlink()
    files: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for note, dn in plan:
        kept: list[tuple[int, np.ndarray, Fingerprint]] = []
        for vel in velocities:
            x = _render_note(kit, note, vel, tmp, soundfont, duration, gain)
            if x is None:
                skipped.append({"note": note, "velocity": vel, "why": "silent"})
                continue
            fp = fingerprint(x)
            copy = _copy_of(fp, kept, seen) if dedupe else None
            if copy is not None:
                skipped.append({"note": note, "velocity": vel, "why": copy[0], "of": copy[1]})
                continue
            kept.append((vel, x, fp))
        for vel, x, fp in kept:
            word = velocity_word(vel) if len(kept) > 1 else None  # one waveform: no velocity layers
            name = clip_name(kit, note, dn, vel, word)
            keywords = clip_keywords(kit, dn, word)
            meta = {"source": spec.source, "kit": kit.name, "program": str(kit.program), "note": str(note),
                    "gm_name": dn.gm_name, "velocity": str(vel), "category": dn.category,
                    "keywords": " ".join(keywords), "licence": spec.licence}  # fmt: skip
            write_wav(kit_dir / name, x, SAMPLE_RATE, meta)
            seen.add(fp, f"{kit_dir.name}/{name}")
            files.append({"file": name, "note": note, "velocity": vel, "category": dn.category,
                          "keywords": list(keywords), "gm_name": dn.gm_name})  # fmt: skip
    return {"files": files, "skipped": skipped}


def _render_note(
    kit: GmKit, note: int, vel: int, tmp: Path, soundfont: Path, duration: float, gain: float
) -> np.ndarray | None:
    mid, wav = tmp / "note.mid", tmp / "note.wav"
    mid.write_bytes(midi_note_file(note, vel, kit.program, end=max(HOLD_SECONDS, duration) + 0.5,
                                   channel=kit.channel))
    wav.unlink(missing_ok=True)
    _run_fluidsynth(soundfont, mid, wav, gain, SAMPLE_RATE)
    return _one_shot(wav, SAMPLE_RATE, duration)


def _copy_of(
    fp: Fingerprint, kept: list[tuple[int, np.ndarray, Fingerprint]], seen: _Seen
) -> tuple[str, str] | None:
    """("velocity copy", velocity) or ("duplicate", clip) when ``fp`` repeats a render kept before."""
    same = next((v for v, _, f in kept if _same(f, fp)), None)
    if same is not None:
        return "velocity copy", str(same)
    other = seen.find(fp)
    return None if other is None else ("duplicate", other)


def render_gm_kits(
    out_dir: str | Path,
    soundfont: str | Path | Sequence[str | Path] = DEFAULT_SF2,
    velocities: Sequence[int] = (127, 90, 60),
    duration: float = 2.0,
    *,
    programs: Sequence[int] | None = None,
    notes: Sequence[int] | None = None,
    gain: float = 0.5,
    dedupe: bool = True,
    progress: Callable[[str], None] | None = None,
) -> list[Clip]:
    """Render the drum kits of ``soundfont`` (one file or several; ``soundfont_kits`` says which kits each
    holds), or those of ``programs``, into one folder per kit under ``out_dir``: kits a soundfont lacks are
    skipped, and a recording rendered once is not written again for another kit. Returns the clips as the
    corpus scan labels them (RuntimeError if it labels any file otherwise than intended). Kits already
    rendered with the same settings are not rendered again. ``progress`` gets one line per kit."""
    files = [soundfont] if isinstance(soundfont, (str, Path)) else list(soundfont)
    if not files:
        raise UserInputError("no soundfont given")
    sf2s = list(dict.fromkeys(Path(f).expanduser().resolve() for f in files))  # one given twice is one
    for sf2 in sf2s:
        _check_tools(sf2)
    vels = [int(v) for v in velocities]
    if not vels or any(not 1 <= v <= 127 for v in vels) or len(set(vels)) != len(vels):
        raise ParamError("velocities", f"must be distinct values in 1..127, got {list(velocities)}")
    if not 0.05 <= duration <= 20.0:
        raise UserInputError(f"duration must be in 0.05..20 s, got {duration}")
    if not 0.0 < gain <= 10.0:
        raise UserInputError(f"gain must be in (0, 10], got {gain}")
    specs = [(sf2, soundfont_kits(sf2)) for sf2 in sf2s]
    known = {k.program for _, spec in specs for k in spec.kits}
    unknown = sorted(set(programs or ()) - known)
    if unknown:
        raise UserInputError(f"unknown kit program(s) {unknown} (valid: {sorted(known)})")
    jobs: list[tuple[Path, Soundfont, GmKit]] = []
    for sf2, spec in specs:
        presets = soundfont_presets(sf2)
        for k in spec.kits:
            if programs is not None and k.program not in programs:
                continue
            if (k.bank, k.program) in presets:
                jobs.append((sf2, spec, k))
            else:
                _say(progress, f"{k.name}: not in {sf2.name} (bank {k.bank} program {k.program}), skipped")
    if not jobs:
        raise UserInputError(f"{', '.join(map(str, sf2s))}: none of the drum kits asked for is there")
    twice = [f for f, n in Counter(k.folder for _, _, k in jobs).items() if n > 1]
    if twice:
        a, b = [str(sf2) for sf2, _, k in jobs if k.folder == twice[0]][:2]
        raise ParamError("soundfont", f": {a} and {b} both hold the kit of folder {twice[0]}: render them into two "
                                      "folders")
    out = Path(out_dir)
    in_the_way = file_in_the_way(out)
    if in_the_way:
        raise UserInputError(in_the_way)
    intended: dict[Path, tuple[str, tuple[str, ...]]] = {}
    seen = _Seen()
    before: list[str] = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".gm-render-", dir=out) as tmp_name:
            for sf2, spec, kit in jobs:
                manifest = _kit(kit, spec, out, Path(tmp_name), sf2, vels, duration, gain, dedupe, notes, before,
                                seen, progress)  # fmt: skip
                for f in manifest["files"]:
                    intended[(out / kit.folder / f["file"]).resolve()] = (f["category"], tuple(f["keywords"]))
                before.append(kit.folder)
    except OSError as exc:
        raise UserInputError(f"{out}: cannot write there ({exc.strerror or exc})") from None
    return _check_labels(out, [k for _, _, k in jobs], intended)


def _kit(
    kit: GmKit, spec: Soundfont, out: Path, tmp: Path, sf2: Path, vels: list[int], duration: float, gain: float,
    dedupe: bool, notes: Sequence[int] | None, before: list[str], seen: _Seen,
    progress: Callable[[str], None] | None,
) -> dict[str, Any]:  # fmt: skip
    """One kit: the cached manifest (its clips join ``seen``) or a fresh render with kit.json and manifest."""
    plan = kit_plan(kit, notes)
    kit_dir = out / kit.folder
    settings = _settings(kit, plan, sf2, vels, duration, gain, dedupe, list(before))
    cached = _cached(kit_dir, settings)
    if cached is not None:
        if dedupe:
            for f in cached["files"]:
                fp = fingerprint(read_audio(kit_dir / f["file"], SAMPLE_RATE))
                seen.add(fp, f"{kit.folder}/{f['file']}")
        _say(progress, f"{kit.name}: {len(cached['files'])} clips (cached)")
        return cached
    kit_dir.mkdir(parents=True, exist_ok=True)
    (kit_dir / "manifest.json").unlink(missing_ok=True)  # written last: an interrupted render is no cache hit
    meta = {"name": kit.name, "author": spec.author, "licence": spec.licence}
    (kit_dir / "kit.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    body = _render_kit(kit, plan, kit_dir, tmp, sf2, spec, vels, duration, gain, dedupe, seen)
    manifest = {"settings": settings, **body}
    (kit_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    reasons = Counter(s["why"] for s in body["skipped"])
    extra = "".join(f", {n} {r}" for r, n in reasons.items())
    _say(progress, f"{kit.name}: {len(body['files'])} clips rendered{extra}")
    return manifest


def _check_labels(
    out: Path, kits: list[GmKit], intended: dict[Path, tuple[str, tuple[str, ...]]]
) -> list[Clip]:
    clips = [c for c in scan([out / k.folder for k in kits], check_audio=False).clips if c.path in intended]
    wrong = [c.path.name for c in clips if (c.category, c.keywords) != intended[c.path]]
    if wrong or len(clips) != len(intended):
        raise RuntimeError(f"gm: the corpus scan mislabels {wrong or 'some files'}")  # a bug, not user error
    return clips


def _say(progress: Callable[[str], None] | None, line: str) -> None:
    if progress is not None:
        progress(line)
