"""One-shot drums from Debian packages besides the Hydrogen kits, gathered into plain kit folders.

``sampleforge data debian --out DIR`` writes one folder per source, each with a ``kit.json`` (name, author,
licence from the package's ``copyright`` file) and one WAV per chosen file, named so that the corpus scanner
(``sampleforge.data.corpus``) labels it: ``<class and descriptor words>__<original name>.wav``. The original
name keeps its own descriptive words ("kick_distorted01" -> distorted); the prefix supplies the class where
the package's naming is its own ("sn_dolf" is a snare, "drum_cymbal_closed" a closed hat, "bd_808" an 808
kick). Only one-shots are chosen: loops, ambiences, tonal and FX samples are left out by name.

| kit | package | files |
|---|---|---|
| lmms-drums | lmms-common | samples/drums: kicks (distorted, long, hard, soft...), snares, claps, rims, hats, toms... |
| lmms-beats | lmms-common | samples/beats: the rave kick, snare and hat one-shots (not the loops) |
| sonic-pi | sonic-pi-samples | bd_*, sn_*, drum_*, the drum-like elec_* and perc_* hits |
| stk | stk | rawwaves drum hits (16-bit big-endian raw, 22,050 Hz) |

The Hydrogen kits of ``hydrogen-data`` (GMRockKit, TR808EmulationKit) need nothing: they are Hydrogen kits
and are scanned where the package installs them, with the other Hydrogen kits.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sampleforge.audio.io import AudioReadError, read_audio, write_wav

SAMPLE_RATE = 44100
STK_RATE = 22050


@dataclass(frozen=True)
class Source:
    kit: str
    package: str
    folder: Path
    author: str
    # original file stem (a regular expression, matched whole) -> words that label it; None = leave it out
    rules: tuple[tuple[str, str | None], ...]
    raw: bool = False  # STK rawwaves: headerless 16-bit big-endian mono at STK_RATE


LMMS = Path("/usr/share/lmms/samples")
SONIC_PI = Path("/usr/share/sonic-pi/samples")
STK = Path("/usr/share/stk/rawwaves")

SOURCES: tuple[Source, ...] = (
    Source("lmms-drums", "lmms-common", LMMS / "drums", "The LMMS developers", (
        (r"bassdrum_acoustic\d*", "kick acoustic"), (r"bassdrum\d*", "kick"),
        (r"kick_hardcore\d*", "kick hard distorted"), (r"kick_hiphop\d*", "kick"),
        (r"nasty_bass\d*", "kick distorted"), (r"nasty_rim\d*", "rim distorted"),
        (r"nasty_snare\d*", "snare distorted"), (r"snare_harsh\d*", "snare bright"),
        (r"snare_rim\d*", "rim"), (r"sidestick\d*", "rim"), (r"hihat_foot_pedal\d*", "closed hat pedal"),
        (r"clav\d*", "perc wood"), (r".*", ""),
    )),  # fmt: skip
    Source("lmms-beats", "lmms-common", LMMS / "beats", "The LMMS developers", (
        (r"rave_kick\d*", "kick electro"), (r"rave_snare\d*", "snare electro"),
        (r"rave_hihat\d*", "closed hat electro"), (r".*", None),
    )),  # fmt: skip
    Source("sonic-pi", "sonic-pi-samples", SONIC_PI, "Sonic Pi sample contributors (freesound.org)", (
        (r"bd_808", "kick 808"), (r"bd_boom", "kick boomy"), (r"bd_\w+", "kick electro"),
        (r"sn_dolf|sn_dub|sn_generic|sn_zome", "snare"),
        (r"drum_bass_(hard|soft)", "kick acoustic"), (r"drum_heavy_kick", "kick acoustic"),
        (r"drum_snare_(hard|soft)", "snare acoustic"), (r"drum_cymbal_(closed|pedal)", "closed hat acoustic"),
        (r"drum_cymbal_open", "open hat acoustic"), (r"drum_cymbal_(hard|soft)", "crash acoustic"),
        (r"drum_splash_(hard|soft)", "crash splash"), (r"drum_tom_\w+", "tom acoustic"),
        (r"drum_cowbell", "cowbell"), (r"elec_(hollow|soft)_kick", "kick electro"),
        (r"elec_(filt_|hi_|lo_|mid_)?snare", "snare electro"), (r"elec_cymbal", "crash electro"),
        (r"elec_fuzz_tom", "tom electro distorted"), (r"elec_(triangle|wood|bell)", "perc electro"),
        (r"perc_(snap|snap2)", "perc snap"), (r"perc_(bell|bell2|till)", "perc bell"),
        (r"perc_impact[12]", "perc"), (r".*", None),
    )),  # fmt: skip
    Source("stk", "stk", STK, "Perry R. Cook and Gary P. Scavone (STK)", (
        (r"bassdrum", "kick acoustic"), (r"snardrum", "snare acoustic"), (r"hihatcym", "closed hat acoustic"),
        (r"crashcym", "crash acoustic"), (r"ridecymb", "ride acoustic"), (r"tomhidrm", "tom high acoustic"),
        (r"tommiddr", "tom mid acoustic"), (r"tomlowdr", "tom low acoustic"), (r"cowbell1", "cowbell"),
        (r"tambourn", "shaker tambourine"), (r".*", None),
    ), raw=True),  # fmt: skip
)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


def label_for(source: Source, stem: str) -> str | None:
    """The label words the source's rules give a file stem, or None when the file is left out."""
    for pattern, words in source.rules:
        if re.fullmatch(pattern, stem):
            return words
    return None


def package_licence(package: str, file_name: str | None = None) -> str | None:
    """The licence Debian's machine-readable ``copyright`` file of ``package`` gives a file: the paragraph
    whose ``Files:`` names it (by its base name), else the ``Files: *`` paragraph."""
    path = Path(f"/usr/share/doc/{package}/copyright")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    default: str | None = None
    for para in re.split(r"\n\s*\n", text):
        files = re.search(r"^Files:(.*?)(?=^\S|\Z)", para, re.S | re.M)
        lic = re.search(r"^License:\s*(.+)$", para, re.M)
        if not files or not lic:
            continue
        entries = files.group(1).split()
        if file_name is not None and any(Path(e).name == file_name for e in entries):
            return lic.group(1).strip()
        if "*" in entries and default is None:
            default = lic.group(1).strip()
    return default


def source_files(source: Source) -> list[tuple[Path, str]]:
    """(file, label words) of every file the source chooses, sorted by name."""
    suffixes = (".raw",) if source.raw else AUDIO_SUFFIXES
    out: list[tuple[Path, str]] = []
    if not source.folder.is_dir():
        return out
    for path in sorted(source.folder.iterdir()):
        if path.suffix.lower() in suffixes:
            words = label_for(source, path.stem)
            if words is not None:
                out.append((path, words))
    return out


def _read(source: Source, path: Path) -> np.ndarray:
    if source.raw:
        import soxr

        pcm = np.fromfile(path, dtype=">i2").astype(np.float32) / 32768.0
        return np.asarray(soxr.resample(pcm, STK_RATE, SAMPLE_RATE), dtype=np.float32)
    return read_audio(path, SAMPLE_RATE)


def gather(out: Path, progress: Callable[[str], None] | None = None) -> dict[str, int]:
    """Write every installed source into ``out/<kit>/`` (kit.json + labelled WAVs); returns clips per kit.

    Files already written are kept. A source whose package is not installed is skipped (0 clips)."""
    counts: dict[str, int] = {}
    for source in SOURCES:
        files = source_files(source)
        counts[source.kit] = len(files)
        if not files:
            if progress:
                progress(f"{source.kit}: not installed ({source.package}), skipped")
            continue
        kit_dir = out / source.kit
        kit_dir.mkdir(parents=True, exist_ok=True)
        licences = {package_licence(source.package, p.name) for p, _ in files}
        licence = " / ".join(sorted(x for x in licences if x)) or None
        meta = {"name": source.kit, "author": source.author, "licence": licence, "package": source.package}
        (kit_dir / "kit.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        for path, words in files:
            name = f"{words.replace(' ', '_')}__{path.stem}.wav" if words else f"{path.stem}.wav"
            target = kit_dir / name
            if target.is_file():
                continue
            try:
                wav = _read(source, path)
            except AudioReadError as exc:  # a broken file in a package is reported, never fatal
                counts[source.kit] -= 1
                if progress:
                    progress(f"skipped: {exc}")
                continue
            write_wav(target, wav, SAMPLE_RATE, {"source": str(path), "licence": licence or ""})
        if progress:
            progress(f"{source.kit}: {counts[source.kit]} clips ({source.package}, {licence})")
    return counts
