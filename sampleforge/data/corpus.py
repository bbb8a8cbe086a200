"""Scan drum folders into labelled one-shot clips: Hydrogen kits (``drumkit.xml``) and plain folders.

A **Hydrogen kit** is a folder with a ``drumkit.xml``. Both formats are read: the old one
(``<instrument><filename>``) and the layered one (``<instrument>[<instrumentComponent>]<layer><filename>``);
each velocity layer becomes its own clip. Only files the XML names are used; other audio files in the
folder are listed in ``excluded``. The kit's name is its folder name; its licence comes from Debian's
``copyright`` file for the packaged kits (checked by the packager), else the XML ``<license>``.

A **plain folder** gives labels from the file name and the folder names between the kit root and the
file ("Kicks/808/hard_01.wav" -> kick, 808, hard). The kit root is the nearest folder holding a
``kit.json`` (``{"name", "author", "licence"}``) or else the scanned folder itself.

**Labels.** Names are normalised with ``sampleforge.text.keywords.tokenize`` plus the corpus synonyms
below, then classified into ``taxonomy.CATEGORIES``. Rule for an instrument name and a file name that
disagree (e.g. ``HH2_01.aiff`` in instrument "Hi Hat Opened", ``tom-0105.wav`` in instrument "Kick"):

1. the instrument name decides: it is the kit author's curated label, while file names are ad-hoc codes
   (``CB_03.aiff`` is a crash, not a cowbell) or the history of a reused sample;
2. the file name decides only when the instrument name names no class ("Sample: beats_06-38", "Drum 1"),
   or when both name the same family (hats: closed/open; cymbals: crash/ride) and the file name is
   explicit about the articulation ("Pedal HH" holding ``hihat-semi-open-1.flac`` is an open hat):
   a bare "hat" or "cymbal" is not explicit (it only defaults to closed hat / crash).

Words of the losing class are not kept as keywords. Keywords are the class words (``CATEGORY_WORDS``)
followed by descriptive words from a fixed list (``DESCRIPTORS``): brand names, sample ids, user names and
numbers other than drum-machine names (808, 909...) are dropped. Multi-layer instruments add "soft" /
"hard" for their lowest / highest velocity layers when the file name does not say it.

**Files.** ``AUDIO_EXTS`` are read (WAV, FLAC, AIFF, OGG, MP3: whatever libsndfile decodes); audio in a format
it does not decode (``UNREAD_AUDIO_EXTS``: AAC/M4A, WMA, ...) is listed as excluded. Symbolic links to folders
are followed, each real folder once (a link that loops back, or a second way into a folder, adds nothing).

**Excluded** (with a reason): instruments naming no drum class (including empty slots), non-drum
instruments or kits (guitar strums, whistles, zaps/FX), loops and files longer than ``MAX_SECONDS`` (told from
the file's header, before decoding it), a second instrument using the same file, and audio in an unread format.
The VariBreaks kit holds one-shots (0.08-0.98 s), not break-beat loops, so it is kept. **Errors** (the scan
never stops): missing or unreadable files, empty, silent or nearly empty files (shorter than ``MIN_SECONDS``:
nothing of them is left once finished into a clip), invalid XML.
"""

from __future__ import annotations

import fnmatch
import glob
import json
import os
import re
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from sampleforge.errors import UserInputError
from sampleforge.taxonomy import CATEGORIES, CATEGORY_WORDS, category_from_tokens
from sampleforge.text.keywords import keywords, tokenize

HYDROGEN_DIRS: tuple[Path, ...] = (Path("/usr/share/hydrogen/data/drumkits"),)
DEBIAN_COPYRIGHT_GLOB = "/usr/share/doc/hydrogen-drumkits*/copyright"
HYDROGEN_DATA_KITS = ("GMRockKit", "TR808EmulationKit")  # installed by hydrogen-data, under its "Files: *"
AUDIO_EXTS = frozenset({".wav", ".flac", ".aif", ".aiff", ".ogg", ".mp3"})
# audio formats libsndfile does not decode: listed as excluded rather than passed over in silence
UNREAD_AUDIO_EXTS = frozenset({".m4a", ".aac", ".alac", ".wma", ".ape", ".wv", ".mka", ".webm"})
MAX_SECONDS = 20.0  # longer files are recordings or loops, not one-shots (the longest real cymbal: 12 s)
MIN_SECONDS = 0.005  # shorter files are nearly empty: finishing a clip (onset at 1.5 ms) leaves only silence
SILENT_PEAK = 1e-4  # -80 dBFS: a file whose peak is below this is silent

# Held out for evaluation (53 of 635 Hydrogen clips): an acoustic multi-layer kit and an electronic one,
# together covering kick, snare, rim, clap, closed and open hat, tom, crash, ride and cowbell (no shaker
# or perc kit is small enough to spare: those classes come from one kit each).
DEFAULT_HELD_OUT_KITS: tuple[str, ...] = ("Millo_MultiLayered3", "HardElectro1")


HAT_OPEN_WORDS = frozenset({"open", "swish", "free", "loose"})
HAT_CLOSED_WORDS = frozenset({"closed", "pedal", "foot", "choke", "tight"})
NON_DRUM_WORDS = frozenset({
    "guitar", "strum", "chord", "major", "minor", "maj", "min", "whistle", "zap", "fx", "sfx", "vocal",
    "voice", "vox", "piano", "loop",
})  # fmt: skip
FAMILY = {"closed_hat": "hat", "open_hat": "hat", "crash": "cymbal", "ride": "cymbal"}

# descriptive keywords kept besides the class words (each one is a normalised `tokenize` word)
DESCRIPTORS: frozenset[str] = frozenset({
    "soft", "medium", "hard", "ghost", "accent", "low", "mid", "high", "deep", "sub", "big", "small",
    "fat", "thin", "floor", "rack", "short", "long", "tight", "loose", "dry", "wet", "room", "reverb",
    "ring", "mute", "choke", "bright", "dark", "dirty", "clean", "distorted", "crunchy", "noise",
    "metallic", "wood", "warm", "punchy", "heavy", "light", "hollow", "crisp", "snappy", "boomy", "808",
    "909", "606", "707", "acoustic", "electro", "analog", "digital", "vintage", "old", "lofi", "jazz",
    "rock", "funk", "house", "techno", "bell", "bow", "cup", "edge", "splash", "china", "cymbal", "pedal",
    "semi", "swish", "flam", "roll", "brush", "slap", "tone", "bass", "thump", "click", "stomp", "power",
    "phaser", "conga", "bongo", "djembe", "cajon", "clave", "woodblock", "timbale", "cuica", "guiro",
    "triangle", "agogo", "tambourine", "maraca", "cabasa", "snap", "glass", "sangban", "dununba",
    "kenkeni", "tabla", "synth",
})  # fmt: skip
_CLASS_WORDS = frozenset(w for ws in CATEGORY_WORDS.values() for w in ws)
_EXTRA_CLASS_WORDS = {"snare": frozenset({"rim"})}  # "snare rimshot": the rim word describes a snare


GENERATED_LICENCE = "generated"  # the licence of the synthesised kit


@dataclass(frozen=True)
class Clip:
    """One labelled one-shot file."""

    path: Path
    category: str  # one of taxonomy.CATEGORIES
    keywords: tuple[str, ...]  # class words first, then descriptors; all normalised keywords
    kit: str
    licence: str | None
    name: str  # the instrument name (Hydrogen) or the file stem

    @property
    def generated(self) -> bool:
        """A procedurally synthesised clip (``data.synth``), not a recording."""
        return self.licence == GENERATED_LICENCE


@dataclass(frozen=True)
class KitInfo:
    name: str
    dir: Path
    author: str | None
    licence: str | None
    n_clips: int


@dataclass
class ScanResult:
    clips: list[Clip] = field(default_factory=list)
    kits: dict[str, KitInfo] = field(default_factory=dict)
    errors: list[tuple[Path, str]] = field(default_factory=list)  # unreadable / missing / silent / bad XML
    excluded: list[tuple[Path, str]] = field(default_factory=list)  # readable but not a drum one-shot

    def category_counts(self) -> dict[str, int]:
        """Clips per category, in CATEGORIES order (zeros included)."""
        c = Counter(clip.category for clip in self.clips)
        return {cat: c.get(cat, 0) for cat in CATEGORIES}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary with every clip."""
        return {
            "categories": self.category_counts(),
            "kits": {k: {"dir": str(v.dir), "author": v.author, "licence": v.licence, "clips": v.n_clips}
                     for k, v in self.kits.items()},
            "clips": [{"path": str(c.path), "category": c.category, "keywords": list(c.keywords),
                       "kit": c.kit, "licence": c.licence, "name": c.name} for c in self.clips],
            "errors": [[str(p), why] for p, why in self.errors],
            "excluded": [[str(p), why] for p, why in self.excluded],
        }  # fmt: skip


# ----------------------------------------------------------------------------------------------- labels
def words_of(text: str) -> list[str]:
    """Normalised words of a name: ``tokenize`` then the ``SYNONYMS`` ("Hat Op" -> hat, open)."""
    return keywords(text)


def classify(words: Sequence[str], raw: str = "") -> tuple[str | None, bool]:
    """(category or None, explicit) for normalised words; ``raw`` is the original text (for "drum").

    ``explicit`` is False when the class is only a family default: a bare "hat" (-> closed_hat), a bare
    "cymbal" (-> crash) or a generic "drum" (-> perc).
    """
    present = set(words)
    if "hat" in present:
        if present & HAT_OPEN_WORDS:
            return "open_hat", True
        return "closed_hat", bool(present & HAT_CLOSED_WORDS)
    cat = category_from_tokens(list(words))  # class words, then family words and instrument names
    if cat == "crash" and "ride" in present and present & {"bell", "bow", "cup"}:
        return "ride", True
    if cat is not None:
        return cat, cat != "crash" or bool(present & {"crash", "china", "splash"})
    if re.search(r"drum", raw, re.IGNORECASE):
        return "perc", False
    return None, False


def resolve_category(name: str, file_stem: str) -> tuple[str | None, str]:
    """The class of an instrument ``name`` holding file ``file_stem``, and which one decided
    ("name" or "file"), following the module rule (instrument name wins, except within a family)."""
    n_cat, _ = classify(words_of(name), name)
    f_cat, f_explicit = classify(words_of(file_stem), file_stem)
    if n_cat is None:
        return f_cat, "file"
    if f_cat is None or f_cat == n_cat:
        return n_cat, "name"
    if FAMILY.get(n_cat) is not None and FAMILY.get(n_cat) == FAMILY.get(f_cat) and f_explicit:
        return f_cat, "file"
    return n_cat, "name"


def make_keywords(
    category: str, sources: Iterable[Sequence[str]], extra: Sequence[str] = ()
) -> tuple[str, ...]:
    """Class words, then descriptors from each word list (in order), then ``extra``; no other class's words."""
    allowed_class = set(CATEGORY_WORDS[category]) | _EXTRA_CLASS_WORDS.get(category, frozenset())
    words: list[str] = list(CATEGORY_WORDS[category])
    for src in [*sources, extra]:
        for w in src:
            if w in words or (w in _CLASS_WORDS and w not in allowed_class):
                continue
            if w in DESCRIPTORS or w in allowed_class:
                words.append(w)
    return tuple(tokenize(" ".join(words)))


def _non_drum(*word_lists: Sequence[str]) -> list[str]:
    found: list[str] = []
    for ws in word_lists:
        found += [w for w in ws if w in NON_DRUM_WORDS and w not in found]
    return found


# ----------------------------------------------------------------------------------------------- licences
def debian_licences(pattern: str = DEBIAN_COPYRIGHT_GLOB) -> dict[str, str]:
    """Kit-archive glob (e.g. ``"Gimme?A?Hand?1.0"``) -> licence, from Debian machine-readable copyright files."""
    out: dict[str, str] = {}
    for path in sorted(glob.glob(pattern)):
        try:
            text = Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for para in re.split(r"\n\s*\n", text):
            m = re.search(r"^Files:(.*?)(?=^\S)", para + "\nX", re.S | re.M)
            lic = re.search(r"^License:\s*(.+)$", para, re.M)
            if not m or not lic:
                continue
            for entry in m.group(1).split():
                if entry.endswith(".h2drumkit"):
                    out.setdefault(Path(entry).name[: -len(".h2drumkit")], lic.group(1).strip())
    return out


def _licence_for(kit_dir: Path, xml_licence: str | None, table: dict[str, str]) -> str | None:
    for pat, lic in table.items():
        if fnmatch.fnmatchcase(kit_dir.name, pat):
            return lic
    for pat, lic in table.items():  # "circAfrique" packages the folder "circAfrique v4"
        if fnmatch.fnmatchcase(kit_dir.name, pat + " *"):
            return lic
    return xml_licence


# ----------------------------------------------------------------------------------------------- scanning
def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child_text(el: ET.Element, name: str) -> str | None:
    for c in el:
        if _local(c.tag) == name:
            return (c.text or "").strip()
    return None


def _layers(instrument: ET.Element) -> list[tuple[str, float | None]]:
    """(filename, velocity midpoint or None) for every layer of an instrument, both XML formats."""
    out: list[tuple[str, float | None]] = []
    for el in instrument.iter():
        if _local(el.tag) == "layer":
            fn = _child_text(el, "filename")
            if fn:
                try:
                    mid = (float(_child_text(el, "min") or 0) + float(_child_text(el, "max") or 1)) / 2
                except ValueError:
                    mid = None
                out.append((fn, mid))
    direct = _child_text(instrument, "filename")
    if not out and direct:
        out.append((direct, None))
    return out


def _velocity_word(mid: float | None, n_layers: int, words: Sequence[str]) -> list[str]:
    if mid is None or n_layers < 2 or {"soft", "medium", "hard"} & set(words):
        return []
    return ["soft"] if mid < 1 / 3 else ["hard"] if mid > 2 / 3 else []


class _Scanner:
    def __init__(self, check_audio: bool) -> None:
        self.check_audio = check_audio
        self.result = ScanResult()
        self.seen: set[Path] = set()
        self.kit_dirs: set[Path] = set()
        self.visited: set[str] = set()  # real paths of the folders walked (symbolic links are followed once)
        self.kit_meta: dict[str, tuple[Path, str | None, str | None]] = {}
        self.licences = debian_licences()
        from sampleforge.data.debian import package_licence

        data_licence = package_licence("hydrogen-data")
        if data_licence:
            self.licences.update({kit: data_licence for kit in HYDROGEN_DATA_KITS})

    def audio_problem(self, path: Path) -> tuple[str, bool] | None:
        """(problem, is_error) or None when the file is a usable one-shot."""
        if not path.is_file():
            return "missing file", True
        if not self.check_audio:
            return None
        try:
            info = sf.info(str(path))  # the header: an over-long file is told without decoding it
            if info.samplerate > 0 and info.frames / info.samplerate > MAX_SECONDS:
                return f"{info.frames / info.samplerate:.1f} s long: a recording or loop, not a one-shot", False
            data, sr = sf.read(str(path), dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as exc:
            return f"unreadable ({str(exc).strip().splitlines()[-1][:120]})", True
        if data.shape[0] == 0:
            return "empty (0 samples)", True
        if not np.isfinite(data).all():
            return "holds NaN or infinite samples", True
        if float(np.abs(data).max()) < SILENT_PEAK:
            return "silent (peak below -80 dBFS)", True
        if data.shape[0] / sr > MAX_SECONDS:
            return f"{data.shape[0] / sr:.1f} s long: a recording or loop, not a one-shot", False
        n = data.shape[0]
        if n < MIN_SECONDS * sr:
            return (f"nearly empty ({n} sample{'' if n == 1 else 's'}, {1000 * n / sr:.1f} ms; a one-shot needs "
                    f"{1000 * MIN_SECONDS:g} ms)"), True
        return None

    def add(self, path: Path, category: str, keywords: tuple[str, ...], kit: str, name: str) -> None:
        problem = self.audio_problem(path)
        if problem is not None:
            (self.result.errors if problem[1] else self.result.excluded).append((path, problem[0]))
            return
        licence = self.kit_meta[kit][2]
        self.result.clips.append(Clip(path, category, keywords, kit, licence, name))

    def register_kit(self, name: str, kit_dir: Path, author: str | None, licence: str | None) -> str:
        base, i = name, 2
        while name in self.kit_meta and self.kit_meta[name][0] != kit_dir:
            name, i = f"{base}-{i}", i + 1
        self.kit_meta[name] = (kit_dir, author, licence)
        return name

    def hydrogen_kit(self, xml_path: Path) -> None:
        kit_dir = xml_path.parent
        try:
            root = ET.parse(xml_path).getroot()
        except (ET.ParseError, OSError) as exc:
            self.result.errors.append((xml_path, f"not a valid drumkit.xml ({exc})"))
            return
        author = _child_text(root, "author") or None
        xml_licence = _child_text(root, "license") or None
        kit = self.register_kit(
            kit_dir.name, kit_dir, author, _licence_for(kit_dir, xml_licence, self.licences)
        )
        kit_words = words_of(_child_text(root, "name") or "") + words_of(kit_dir.name)
        used: dict[Path, str] = {}
        instruments = [el for el in root.iter() if _local(el.tag) == "instrument"]
        for inst in instruments:
            name = " ".join((_child_text(inst, "name") or "").split())
            layers = _layers(inst)
            for fn, mid in layers:
                path = kit_dir / fn
                if path in used:
                    self.result.excluded.append((path, f"instrument {name!r}: same file as {used[path]!r}"))
                    continue
                used[path] = name
                self.labelled(path, name, Path(fn).stem, kit, kit_words, mid, len(layers))
        for p in sorted(kit_dir.iterdir()):
            if p.suffix.lower() in AUDIO_EXTS and p not in used:
                self.result.excluded.append((p, "not referenced by drumkit.xml"))
                self.seen.add(p)
            elif p.suffix.lower() in UNREAD_AUDIO_EXTS and p not in used:
                self.unread_format(p)
        self.seen.update(used)

    def labelled(
        self, path: Path, name: str, stem: str, kit: str, kit_words: list[str], mid: float | None, n: int
    ) -> None:
        n_words, f_words = words_of(name), words_of(stem)
        nd = _non_drum(n_words, kit_words)
        if "loop" in n_words + f_words:
            self.result.excluded.append((path, f"instrument {name!r}: a loop, not a one-shot"))
            return
        cat, decided_by = resolve_category(name, stem)
        if cat is None or (nd and decided_by == "file"):
            why = f"not a drum ({', '.join(nd)})" if nd else "names no drum class"
            self.result.excluded.append((path, f"instrument {name!r}, file {stem!r}: {why}"))
            return
        first, second = (n_words, f_words) if decided_by == "name" else (f_words, n_words)
        loser = classify(second, "")[0]
        if loser not in (None, cat):  # drop the other class's words from the losing source
            second = [w for w in second if w not in CATEGORY_WORDS[loser]]
        vel = _velocity_word(mid, n, f_words + n_words)
        self.add(path, cat, make_keywords(cat, [first, second, kit_words], vel), kit, name or stem)

    def plain_file(self, path: Path, root: Path, kit: str) -> None:
        stem = path.stem
        folders = [words_of(p) for p in reversed(path.relative_to(root).parent.parts)]
        s_words = words_of(stem)
        cat, explicit = classify(s_words, stem)
        if cat is None or not explicit:
            combined = s_words + [w for ws in folders for w in ws]
            c2, _ = classify(combined, stem + " " + " ".join(path.relative_to(root).parent.parts))
            cat = c2 or cat
        if "loop" in s_words + [w for ws in folders for w in ws]:
            self.result.excluded.append((path, "a loop, not a one-shot"))
            return
        if cat is None:
            nd = _non_drum(s_words, *folders)
            why = f"not a drum ({', '.join(nd)})" if nd else "names no drum class"
            self.result.excluded.append((path, f"file {stem!r}: {why}"))
            return
        self.add(path, cat, make_keywords(cat, [s_words, *folders, words_of(kit)]), kit, stem)

    def scan_dir(self, top: Path) -> None:
        if not top.is_dir():
            self.result.errors.append((top, "no such folder"))
            return
        kit_roots: dict[Path, str] = {}
        plain: list[Path] = []
        for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
            real = os.path.realpath(dirpath)
            if real in self.visited:  # a link back up (a loop) or a second way into a folder walked already
                dirnames[:] = []
                continue
            self.visited.add(real)
            dirnames.sort()
            d = Path(dirpath)
            if "drumkit.xml" in filenames:
                dirnames[:] = []  # a Hydrogen kit's sub-folders are not part of the kit
                if d not in self.kit_dirs:
                    self.kit_dirs.add(d)
                    self.hydrogen_kit(d / "drumkit.xml")
                continue
            if "kit.json" in filenames:
                kit_roots[d] = self.plain_kit(d)
            plain += [d / fn for fn in sorted(filenames) if Path(fn).suffix.lower() in AUDIO_EXTS]
            for fn in sorted(filenames):
                if Path(fn).suffix.lower() in UNREAD_AUDIO_EXTS:
                    self.unread_format(d / fn)
        for p in plain:
            if p in self.seen:  # reached twice through overlapping folders
                continue
            self.seen.add(p)
            root = next((r for r in p.parents if r in kit_roots), None)
            if root is None:
                root = top
                kit_roots[top] = self.register_kit(top.name or str(top), top, None, None)
            self.plain_file(p, root, kit_roots[root])

    def unread_format(self, path: Path) -> None:
        """List an audio file of a format libsndfile does not decode as excluded (once)."""
        if path not in self.seen:
            self.seen.add(path)
            self.result.excluded.append((path, f"{path.suffix.lower()}: audio format not read (convert it to WAV "
                                               "or FLAC)"))

    def plain_kit(self, d: Path) -> str:
        meta: dict[str, Any] = {}
        try:
            meta = json.loads((d / "kit.json").read_text(encoding="utf-8"))
            if not isinstance(meta, dict):
                raise ValueError("not an object")
        except (OSError, ValueError) as exc:
            self.result.errors.append((d / "kit.json", f"not a valid kit.json ({exc})"))
            meta = {}
        name = str(meta.get("name") or d.name)
        lic = meta.get("licence", meta.get("license"))
        return self.register_kit(name, d, meta.get("author"), None if lic is None else str(lic))


def scan(dirs: Sequence[Path | str] = HYDROGEN_DIRS, check_audio: bool = True) -> ScanResult:
    """Scan folders (Hydrogen kits and/or plain folders) into labelled clips; never stops on a bad file.

    ``check_audio`` decodes every clip to catch unreadable, empty, silent, NaN and over-long files
    (about 1 s for the 750 Hydrogen clips); without it only missing files are caught.
    Clips are sorted by (kit, path); errors and excluded by path.
    """
    sc = _Scanner(check_audio)
    for d in dirs:
        sc.scan_dir(Path(d).expanduser().resolve())
    res = sc.result
    res.clips.sort(key=lambda c: (c.kit, str(c.path)))
    counts = Counter(c.kit for c in res.clips)
    res.kits = {
        name: KitInfo(name, d, author, lic, counts.get(name, 0))
        for name, (d, author, lic) in sorted(sc.kit_meta.items())
    }
    res.errors.sort(key=lambda e: (str(e[0]), e[1]))
    res.excluded.sort(key=lambda e: (str(e[0]), e[1]))
    return res


def split_by_kit(
    clips: Sequence[Clip], held_out_kits: Sequence[str] = DEFAULT_HELD_OUT_KITS, strict: bool = True
) -> tuple[list[Clip], list[Clip]]:
    """(train, held_out): clips of ``held_out_kits`` go to held_out. With ``strict``, a held-out kit that
    has no clip raises UserInputError listing the kits present."""
    held = set(held_out_kits)
    present = {c.kit for c in clips}
    missing = sorted(held - present)
    if strict and missing:
        raise UserInputError(f"held-out kit(s) {missing} not in the data; kits present: {sorted(present)}")
    train = [c for c in clips if c.kit not in held]
    test = [c for c in clips if c.kit in held]
    return train, test
