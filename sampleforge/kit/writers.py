"""Write a kit for samplers: the audio files, an SFZ, a Decent Sampler ``.dspreset``, a Hydrogen
``drumkit.xml``, a General-MIDI note map (``gm_map.csv``) and ``kit.json`` (provenance).

All files sit in one folder (Hydrogen resolves sample names against the drumkit.xml's folder). Every audio
file carries its own provenance in its metadata (prompt, seed, model, parameters, kit, piece, layer).
The folder's ``kit.json`` also holds ``name``, ``author`` and ``licence``, the keys the corpus scanner reads.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import zipfile
from pathlib import Path
from xml.etree import ElementTree as ET

from sampleforge.audio.io import FORMATS, write_audio
from sampleforge.errors import ParamError, UserInputError, file_in_the_way
from sampleforge.kit.build import Kit, KitSample
from sampleforge.kit.pieces import CHOKE_GROUP, GM_NAMES, PIECES

KIT_FILES = ("kit.sfz", "kit.dspreset", "drumkit.xml", "gm_map.csv", "kit.json")
LICENCE = "CC0-1.0"  # generated audio: the user's to use
MADE_BY = "(made by sampleforge; see kit.json)"  # ends the presets' header comment (``_comment``)
GM_MAP_HEADER = ["note", "gm_name", "piece", "files"]
HYDROGEN_NS = "http://www.hydrogen-music.org/drumkit"


def sample_name(s: KitSample, kit: Kit, ext: str) -> str:
    """``kick.wav``, ``kick_v2.wav`` (velocity layers), ``kick_rr3.wav`` (round robins), ``kick_v2_rr3.wav``."""
    return _file_name(s.piece, s.layer, s.rr, kit.velocity_layers, kit.round_robins, ext)


def _file_name(piece: str, layer: int, rr: int, layers: int, round_robins: int, ext: str) -> str:
    v = f"_v{layer + 1}" if layers > 1 else ""
    r = f"_rr{rr + 1}" if round_robins > 1 else ""
    return f"{piece}{v}{r}.{ext}"


def sample_names(pieces: list[str], round_robins: int, velocity_layers: int, fmt: str) -> list[str]:
    """The file names of a kit of ``pieces`` (``sample_name`` of each of its samples), known before generating."""
    ext = FORMATS[fmt][0]
    return [_file_name(piece, layer, rr, velocity_layers, round_robins, ext)
            for piece in pieces for rr in range(round_robins) for layer in range(velocity_layers)]


# characters that end a line or are not text (a newline in a kit name would end an SFZ comment)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def check_name(name: object) -> str:
    """``name`` when it can name a kit (text that is not blank, on one line, without control characters);
    else ParamError naming ``name``."""
    if not isinstance(name, str):
        raise ParamError("name", f"must be text, got {type(name).__name__}")
    if not name.strip():
        raise ParamError("name", "must not be empty (leave it out to name the kit from its prompt)")
    bad = _CONTROL.search(name)
    if bad is not None:
        raise ParamError("name", f"must be one line without control characters, got {name!r} (holds "
                                 f"{bad.group()!r})")
    return name


def sample_metadata(s: KitSample, kit: Kit) -> dict[str, str]:
    """The provenance written into one audio file."""
    extra = {"knobs": json.dumps(s.knobs, sort_keys=True)} if s.knobs else {}
    if (kit.params.get("candidates") or 1) > 1:  # as generate's files say it
        extra |= {"candidates": str(kit.params["candidates"]), "candidate": "none" if s.candidate is None
                  else str(s.candidate)}
    return extra | {
        "prompt": s.prompt, "seed": str(s.seed), "model": kit.model, "steps": str(kit.params["steps"]),
        "cfg_scale": str(kit.params["cfg_scale"] if s.cfg_scale is None else s.cfg_scale), "sampler": str(kit.params["sampler"]),
        "length": str(kit.params["length"]), "kit": kit.name, "kit_prompt": kit.prompt, "kit_seed": str(kit.seed),
        "relatedness": str(kit.relatedness), "piece": s.piece, "note": str(PIECES[s.piece].note),
        "velocity": f"{s.velocity[0]}-{s.velocity[1]}", "layer": str(s.layer + 1), "round_robin": str(s.rr + 1),
        "gain_db": f"{s.gain_db:.1f}",
    }  # fmt: skip


def _comment(kit: Kit) -> str:
    """One line on the kit for the presets' comments (a line break in any part of it becomes a space)."""
    text = f"{kit.name}: prompt {kit.prompt!r}, seed {kit.seed}, model {kit.model} {MADE_BY}"
    return _CONTROL.sub(" ", text)


def _by_piece(kit: Kit) -> dict[str, list[KitSample]]:
    out: dict[str, list[KitSample]] = {p: [] for p in kit.pieces}
    for s in kit.samples:
        out[s.piece].append(s)
    return out


def layer_gain(s: KitSample) -> float:
    """The linear gain a preset gives ``s`` to divide out the gain its velocity layer's file carries (1 for an
    unlayered sample): a velocity then plays at the level the sampler's own velocity curve gives it, as one
    unlayered sample would, and the layers change the sound, not the level twice over."""
    return float(10 ** (-s.gain_db / 20))


def _sfz_velcurve(s: KitSample) -> str:
    """``amp_velcurve_N`` points over the region's velocities: SFZ's default curve, (v / 127)², times
    ``layer_gain`` (the players join the points with straight lines)."""
    lo, hi = s.velocity
    return " ".join(f"amp_velcurve_{v}={min(1.0, (v / 127) ** 2 * layer_gain(s)):.4f}"
                    for v in sorted({lo, hi, *range(lo, hi, 8)}))


def sfz_text(kit: Kit) -> str:
    """One <group> per piece on its GM key; regions per velocity layer (a layer's curve divides its file's gain
    out, ``layer_gain``), round robins by seq_position; the hats choke each other."""
    lines = [f"// {_comment(kit)}", "<global> loop_mode=one_shot ampeg_release=0.05", ""]
    for piece, samples in _by_piece(kit).items():
        p = PIECES[piece]
        group = f"<group> key={p.note} // {p.label}"
        if kit.round_robins > 1:
            group += f"\nseq_length={kit.round_robins}"
        if piece in CHOKE_GROUP:
            group += f"\ngroup={CHOKE_GROUP[piece]} off_by={CHOKE_GROUP[piece]}"
        lines.append(group)
        for s in samples:
            region = f"<region> sample={s.file} lovel={s.velocity[0]} hivel={s.velocity[1]}"
            if kit.round_robins > 1:
                region += f" seq_position={s.rr + 1}"
            if s.gain_db < 0:
                region += " " + _sfz_velcurve(s)
            lines.append(region)
        lines.append("")
    return "\n".join(lines)


def _xml(root: ET.Element) -> str:
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def dspreset_text(kit: Kit) -> str:
    """A Decent Sampler preset: one group per piece (round robins with seqMode), notes and velocities as SFZ (a
    layer's ``volume`` divides its file's gain out). Decent Sampler has no one-shot mode: a note's release runs
    for a minute, linearly, so a sample plays out (a 4-s crash loses 0.6 dB by its end however short the note)."""
    root = ET.Element("DecentSampler", minVersion="1.0.0")
    root.append(ET.Comment(f" {re.sub('-(?=-)', '- ', _comment(kit))} "))  # "--" may not stand in an XML comment
    ui = ET.SubElement(root, "ui", width="812", height="375")
    tab = ET.SubElement(ui, "tab", name="main")
    ET.SubElement(tab, "label", x="10", y="10", width="790", height="30", text=f"{kit.name} ({kit.prompt})")
    groups = ET.SubElement(root, "groups", attack="0", decay="0", sustain="1", release="60", releaseCurve="0")
    for piece, samples in _by_piece(kit).items():
        p = PIECES[piece]
        attrs = {"name": p.label}
        if kit.round_robins > 1:
            attrs |= {"seqMode": "round_robin", "seqLength": str(kit.round_robins)}
        if piece in CHOKE_GROUP:
            attrs |= {"tags": f"choke{CHOKE_GROUP[piece]}", "silencedByTags": f"choke{CHOKE_GROUP[piece]}",
                      "silencingMode": "fast"}
        g = ET.SubElement(groups, "group", attrs)
        for s in samples:
            sa = {"path": s.file, "rootNote": str(p.note), "loNote": str(p.note), "hiNote": str(p.note),
                  "loVel": str(s.velocity[0]), "hiVel": str(s.velocity[1]), "trigger": "attack"}
            if kit.round_robins > 1:
                sa["seqPosition"] = str(s.rr + 1)
            if s.gain_db < 0:
                sa["volume"] = f"{-s.gain_db:g}dB"
            ET.SubElement(g, "sample", sa)
    return _xml(root)


HYDROGEN_FIRST_NOTE = 36  # Hydrogen plays MIDI note n on instrument n - 36 (unless told to map output notes)


def hydrogen_text(kit: Kit) -> str:
    """A Hydrogen drumkit.xml that validates against the schema Hydrogen checks kits by (its `drumkit.xsd`, 1.2):
    the instrument at index i is the piece on General-MIDI note 36 + i, as Hydrogen plays MIDI input by default
    (a note no piece takes is an empty instrument with its GM name), named as drummers name them ("Closed Hat",
    "Low Tom"), one layer per sample with its velocity range (0..1) and a gain that divides its file's out
    (``layer_gain``); round robins cycle through the layers of one range. The fields the schema asks for and a
    kit has no use for get Hydrogen's own defaults (no filter, no envelope, pitch 0)."""
    root = ET.Element("drumkit_info", xmlns=HYDROGEN_NS)
    for tag, text in (("name", kit.name), ("author", "sampleforge"), ("info", _comment(kit)), ("license", LICENCE),
                      ("image", ""), ("imageLicense", "")):
        ET.SubElement(root, tag).text = text
    comps = ET.SubElement(ET.SubElement(root, "componentList"), "drumkitComponent")
    for tag, text in (("id", "0"), ("name", "Main"), ("volume", "1")):
        ET.SubElement(comps, tag).text = text
    instruments = ET.SubElement(root, "instrumentList")
    by_note = {PIECES[piece].note: (piece, samples) for piece, samples in _by_piece(kit).items()}
    for i, note in enumerate(range(HYDROGEN_FIRST_NOTE, max(by_note) + 1)):
        piece, samples = by_note.get(note, ("", []))
        inst = ET.SubElement(instruments, "instrument")
        fields = [("id", str(i)), ("name", PIECES[piece].label if piece else GM_NAMES.get(note, f"Note {note}")),
                  ("volume", "1"), ("isMuted", "false"), ("isSoloed", "false"),
                  ("pan_L", "1"), ("pan_R", "1"), ("pitchOffset", "0"), ("randomPitchFactor", "0"), ("gain", "1"),
                  ("applyVelocity", "true"), ("filterActive", "false"), ("filterCutoff", "1"),
                  ("filterResonance", "0"), ("Attack", "0"), ("Decay", "0"), ("Sustain", "1"), ("Release", "1000"),
                  ("muteGroup", str(CHOKE_GROUP.get(piece, -1))), ("midiOutChannel", "-1"),
                  ("midiOutNote", str(note)), ("isStopNote", "false"),
                  ("sampleSelectionAlgo", "ROUND_ROBIN" if samples and kit.round_robins > 1 else "VELOCITY"),
                  ("isHihat", "-1"), ("lower_cc", "0"), ("higher_cc", "127")]
        for tag, text in fields:
            ET.SubElement(inst, tag).text = text
        if not samples:
            continue
        comp = ET.SubElement(inst, "instrumentComponent")
        ET.SubElement(comp, "component_id").text = "0"
        ET.SubElement(comp, "gain").text = "1"
        for s in samples:
            layer = ET.SubElement(comp, "layer")
            lo, hi = (s.velocity[0] - 1) / 127, s.velocity[1] / 127
            for tag, text in (("filename", s.file), ("min", f"{lo:.6f}"), ("max", f"{hi:.6f}"),
                              ("gain", f"{layer_gain(s):.6g}"), ("pitch", "0")):
                ET.SubElement(layer, tag).text = text
    return _xml(root)


def gm_map_text(kit: Kit) -> str:
    """CSV: note, GM name, piece, its files (space-separated), one row per piece in note order."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(GM_MAP_HEADER)
    for piece, samples in sorted(_by_piece(kit).items(), key=lambda kv: PIECES[kv[0]].note):
        note = PIECES[piece].note
        w.writerow([note, GM_NAMES.get(note, ""), piece, " ".join(s.file for s in samples)])
    return buf.getvalue()


def kit_json(kit: Kit, fmt: str) -> str:
    body = {"name": kit.name, "author": "sampleforge", "licence": LICENCE, "format": fmt,
            "files": {"sfz": "kit.sfz", "decent_sampler": "kit.dspreset", "hydrogen": "drumkit.xml",
                      "gm_map": "gm_map.csv"},
            **kit.provenance()}
    body["pieces"] = [{"name": p, "class": PIECES[p].category, "label": PIECES[p].label, "note": PIECES[p].note}
                      for p in kit.pieces]
    return json.dumps(body, indent=2, ensure_ascii=False) + "\n"


def check_out_dir(out_dir: Path, overwrite: bool = False) -> None:
    """ParamError naming ``out_dir`` unless it is new or empty (or ``overwrite``) and writable."""
    in_the_way = file_in_the_way(out_dir)
    if in_the_way:
        raise ParamError("out_dir", f": {in_the_way}")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise ParamError("out_dir", f": {out_dir} is not empty (choose a new folder, or overwrite)",
                         mentions=("overwrite",))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ParamError("out_dir", f": cannot create {out_dir} ({exc.strerror or exc})") from None
    if not os.access(out_dir, os.W_OK):
        raise ParamError("out_dir", f": {out_dir} is not writable")


def earlier_samples(out_dir: Path) -> list[Path]:
    """The samples of the kit written into ``out_dir`` before: the files its kit.json lists that are in the
    folder itself and that sampleforge wrote (their metadata names the model that made them). Empty when there
    is no readable kit.json."""
    from sampleforge.api import written_here

    try:
        listed = json.loads((out_dir / "kit.json").read_text(encoding="utf-8"))["samples"]
        names = [entry["file"] for entry in listed]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    found = []
    for name in dict.fromkeys(n for n in names if isinstance(n, str)):
        if not name or name != Path(name).name or name.startswith(".") or name in KIT_FILES:
            continue  # not a sample of the folder itself
        path = out_dir / name
        if path.is_file() and not path.is_symlink() and written_here(path):
            found.append(path)
    return found


def _our_sfz(text: str) -> bool:
    first = text.split("\n", 1)[0]
    return first.startswith("// ") and first.endswith(MADE_BY)


def _our_dspreset(text: str) -> bool:
    try:
        root = ET.fromstring(text, parser=ET.XMLParser(target=ET.TreeBuilder(insert_comments=True)))
    except ET.ParseError:
        return False
    return root.tag == "DecentSampler" and len(root) > 0 and root[0].tag is ET.Comment \
        and (root[0].text or "").strip().endswith(MADE_BY)


def _our_hydrogen(text: str) -> bool:
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return False
    ns = f"{{{HYDROGEN_NS}}}"
    return root.tag == f"{ns}drumkit_info" and root.findtext(f"{ns}author") == "sampleforge" \
        and (root.findtext(f"{ns}info") or "").endswith(MADE_BY)


def _our_gm_map(text: str) -> bool:
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error:
        return False
    return len(rows) > 1 and rows[0] == GM_MAP_HEADER and all(
        len(row) == 4 and row[2] in PIECES and row[0] == str(PIECES[row[2]].note) for row in rows[1:])


def _our_kit_json(text: str) -> bool:
    try:
        body = json.loads(text)
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("author") == "sampleforge" and isinstance(body.get("samples"), list)


_RECOGNISE = {"kit.sfz": _our_sfz, "kit.dspreset": _our_dspreset, "drumkit.xml": _our_hydrogen,
              "gm_map.csv": _our_gm_map, "kit.json": _our_kit_json}


def kit_file_written_here(path: Path) -> bool:
    """Whether ``path``, one of KIT_FILES, is an earlier sampleforge kit's, by what sampleforge writes in it: the
    presets' header comment (``MADE_BY``), kit.json's author and samples, gm_map.csv's header and its rows of
    pieces on their notes. A user's own file by that name (notes, another Hydrogen kit) is not."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return _RECOGNISE[path.name](text)


def check_replaceable(out_dir: Path, names: list[str]) -> None:
    """ParamError naming ``out_dir`` when one of the sample files ``names`` or of KIT_FILES is in ``out_dir`` and
    sampleforge did not write it (the user's own sample, notes or preset): a kit replaces an earlier kit's files
    only."""
    from sampleforge.api import written_here

    for name in [*names, *KIT_FILES]:
        path = out_dir / name
        if path.is_dir():
            raise ParamError("out_dir", f": {path} is a folder, not a file")
        ours = kit_file_written_here if name in KIT_FILES else written_here
        if path.exists() and not ours(path):
            raise ParamError("out_dir", f": {path} exists and was not written by sampleforge; not replaced (remove "
                                        "it, or choose a new folder)")


def write_kit(kit: Kit, out_dir: str | os.PathLike[str], fmt: str = "wav24", overwrite: bool = False) -> list[Path]:
    """Write ``kit`` into ``out_dir`` (new or empty unless ``overwrite``): the samples in ``fmt`` and the
    KIT_FILES. Returns the written paths (samples first).

    With ``overwrite``, the samples of a kit written there before (``earlier_samples``) that the new kit does
    not write over are removed once it is written, so that the folder's presets and files are the new kit's;
    the folder's other files stay, and a file of the user's by a sample's or a KIT_FILES name is not replaced
    (ParamError before anything is written)."""
    if fmt not in FORMATS:
        raise UserInputError(f"unknown audio format {fmt!r} (valid: {', '.join(FORMATS)})")
    out = Path(out_dir)
    check_out_dir(out, overwrite)
    ext = FORMATS[fmt][0]
    for s in kit.samples:
        s.file = sample_name(s, kit, ext)
    check_replaceable(out, [s.file for s in kit.samples])
    earlier = earlier_samples(out) if overwrite else []
    written = []
    for s in kit.samples:
        written.append(write_audio(out / s.file, s.audio, kit.sample_rate, sample_metadata(s, kit), format=fmt))
    texts = {"kit.sfz": sfz_text(kit), "kit.dspreset": dspreset_text(kit), "drumkit.xml": hydrogen_text(kit),
             "gm_map.csv": gm_map_text(kit), "kit.json": kit_json(kit, fmt)}
    for name, text in texts.items():
        tmp = out / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out / name)
        written.append(out / name)
    kept = {path.name for path in written}
    for path in earlier:
        if path.name not in kept:
            path.unlink(missing_ok=True)
    return written


def zip_folder(folder: str | os.PathLike[str], arcname: str) -> bytes:
    """The files of ``folder`` (not recursive) as a zip under ``arcname/`` (deflated; audio stays as is)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(Path(folder).iterdir()):
            if p.is_file() and not p.name.startswith("."):
                z.write(p, f"{arcname}/{p.name}")
    return buf.getvalue()
