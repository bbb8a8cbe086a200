"""CLI: ``sampleforge data scan [DIR...] [--brief] [--json FILE]``,
``sampleforge data synth --out DIR --per-class N --seed S`` and
``sampleforge data gm --out DIR [--soundfont SF2 ...] [--velocities 127 90 60]``."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from sampleforge.errors import UserInputError, file_in_the_way

MAX_PER_CLASS = 9999  # data synth --per-class
MAX_SYNTH_SEED = 2**32 - 1  # data synth --seed: the synth's seeds are 32-bit
SCAN_REPORT_KEYS = frozenset({"categories", "kits", "clips"})  # what tells a --json file is an earlier report


def int_between(low: int, high: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer from ``low`` to ``high`` (else a one-line usage error naming the flag and
    the range)."""
    def parse(text: str) -> int:
        problem = f"must be an integer from {low} to {high}, got {text}"
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(problem) from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(problem)
        return value

    return parse


def register(sub: Any) -> None:
    p = sub.add_parser("data", help="scan drum folders into labelled clips; render synthetic and GM drums",
                       description="Work with training data: `data scan` lists what the corpus finds "
                       "(classes, kits, licences, excluded and unreadable files); `data synth` renders "
                       "procedural analog drums; `data gm` renders the drum kits of soundfonts (FluidR3_GM's "
                       "General-MIDI kits, the AVL Drumkits) with fluidsynth.")  # fmt: skip
    data_sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda args: _no_subcommand(p))

    s = data_sub.add_parser("scan", help="count clips per class and per kit, list excluded/unreadable files",
                            description="Scan Hydrogen kits (drumkit.xml) and plain folders. Without DIR the "
                            "installed Hydrogen kits are scanned.")  # fmt: skip
    s.add_argument(
        "dirs", nargs="*", type=Path, metavar="DIR", help="folders to scan (default: Hydrogen kits)"
    )
    s.add_argument(
        "--brief", action="store_true", help="only the counts (no list of excluded/unreadable files)"
    )
    s.add_argument("--json", type=Path, metavar="FILE", help="also write every clip, kit and problem as JSON")
    s.add_argument(
        "--no-check-audio", action="store_true", help="do not decode files (faster; misses corrupt ones)"
    )
    s.set_defaults(func=run_scan)

    y = data_sub.add_parser("synth", help="render procedural analog drums into a folder (kit 'synth')")
    y.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    y.add_argument("--per-class", type=int_between(1, MAX_PER_CLASS), default=10, metavar="N",
                   help=f"clips per class, 1 to {MAX_PER_CLASS} (default 10)")  # fmt: skip
    y.add_argument("--seed", type=int_between(0, MAX_SYNTH_SEED), default=0, metavar="S",
                   help=f"random seed, 0 to {MAX_SYNTH_SEED} (default 0)")  # fmt: skip
    y.set_defaults(func=run_synth)

    g = data_sub.add_parser("gm", help="render the drum kits of soundfonts note by note (fluidsynth)",
                            description="Render every note of the drum kits of soundfonts (default: the eight "
                            "General-MIDI kits of Debian's fluid-soundfont-gm; the two AVL Drumkits of "
                            "avldrums.lv2-soundfont are known too; any other soundfont is read as GS, its kits "
                            "on bank 128) with fluidsynth into one folder per kit, labelled for the corpus; "
                            "copies of one recording are written once. Kits already rendered with the same "
                            "settings are kept.")  # fmt: skip
    g.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    g.add_argument("--soundfont", type=Path, action="extend", nargs="+", default=None, metavar="SF2",
                   help="soundfonts, one or more, repeatable (default: /usr/share/sounds/sf2/FluidR3_GM.sf2)")  # fmt: skip
    g.add_argument("--velocities", nargs="+", default=["127,90,60"], metavar="V",
                   help="MIDI velocities to render, separated by spaces or commas (default 127,90,60)")  # fmt: skip
    g.set_defaults(func=run_gm)

    d = data_sub.add_parser("debian", help="gather the one-shot drums of Debian packages into labelled kit folders",
                            description="Copy the drum one-shots of lmms-common, sonic-pi-samples and stk (when "
                            "installed) into one folder per package, named so that `data scan` labels them, "
                            "each with a kit.json giving the licence from the package's copyright file.")  # fmt: skip
    d.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    d.set_defaults(func=run_debian)


def _check_out(out: Path) -> None:
    """``--out`` that is a file, or lies inside one, refused before any work (one line naming the flag)."""
    in_the_way = file_in_the_way(out)
    if in_the_way:
        raise UserInputError(f"--out: {in_the_way}")


def run_debian(args: argparse.Namespace) -> int:
    from sampleforge.data.debian import gather

    _check_out(args.out)
    counts = gather(args.out, progress=print)
    if not any(counts.values()):
        raise UserInputError("none of lmms-common, sonic-pi-samples, stk is installed (make data)")
    print(f"{sum(counts.values())} clips in {args.out}")
    return 0


def _no_subcommand(p: argparse.ArgumentParser) -> int:
    p.print_help()
    return 2


def run_scan(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from sampleforge.data.corpus import HYDROGEN_DIRS, scan
    from sampleforge.taxonomy import CATEGORIES

    out = out or sys.stdout
    dirs = list(args.dirs) or list(HYDROGEN_DIRS)
    if not args.dirs and not any(d.is_dir() for d in dirs):
        raise UserInputError(f"no folder given and no Hydrogen kits at {dirs[0]} (install them: make data)")
    files = [d for d in args.dirs if d.is_file()]
    if files:  # every DIR given must be one: a typo among good folders is an error, not a footnote of the scan
        raise UserInputError(f"{files[0]} is a file, not a folder (data scan reads folders of samples)")
    missing = [str(d) for d in args.dirs if not d.is_dir()]
    if missing:
        raise UserInputError(f"no such folder: {', '.join(missing)}")
    if args.json:
        _check_json_target(args.json)  # before the scan, which may take minutes
    res = scan(dirs, check_audio=not args.no_check_audio)
    print(f"{len(res.clips)} clips in {sum(k.n_clips > 0 for k in res.kits.values())} kits "
          f"({len(res.excluded)} excluded, {len(res.errors)} unreadable)", file=out)  # fmt: skip
    print("\nper class:", file=out)
    for cat, n in res.category_counts().items():
        print(f"  {cat:<11} {n:5d}", file=out)
    print("\nper kit:", file=out)
    width = max([len(k) for k in res.kits] + [3])
    for name, kit in res.kits.items():
        cats = Counter(c.category for c in res.clips if c.kit == name)
        top = ", ".join(f"{c} {cats[c]}" for c in CATEGORIES if cats[c])
        print(f"  {name:<{width}} {kit.n_clips:5d}  licence: {kit.licence or 'unknown'}", file=out)
        if top and not args.brief:
            print(f"  {'':<{width}}        {top}", file=out)
    if not args.brief:
        _print_problems("excluded", res.excluded, out)
        _print_problems("unreadable", res.errors, out)
    else:
        reasons = Counter(_reason_kind(why) for _, why in res.excluded)
        if reasons:
            print("\nexcluded: " + ", ".join(f"{n} {r}" for r, n in reasons.most_common()), file=out)
        if res.errors:
            print(f"unreadable: {len(res.errors)} (run without --brief to list them)", file=out)
    if args.json:
        try:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(
                json.dumps(res.to_dict(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
            )
        except OSError as exc:
            raise UserInputError(f"{args.json}: cannot write there ({exc.strerror or exc})") from None
        print(f"\nwrote {args.json}", file=out)
    return 0


def _check_json_target(path: Path) -> None:
    """A --json file that exists is replaced only when it is a previous report (a JSON object with the report's
    "categories", "kits" and "clips"), never a sample, a recipe, a kit.json or another file given there by
    mistake; a folder, or a path through a file, is refused before the scan too."""
    if path.is_dir():
        raise UserInputError(f"--json {path} is a folder: give the name of the file to write")
    in_the_way = file_in_the_way(path.parent)
    if in_the_way:
        raise UserInputError(f"--json {path}: {in_the_way}")
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        raise UserInputError(f"--json {path}: exists and holds no JSON; not replaced (choose another file)") from None
    if not isinstance(old, dict) or not SCAN_REPORT_KEYS <= old.keys():
        raise UserInputError(f"--json {path}: exists and is not a scan report; not replaced (choose another file)")


def _reason_kind(why: str) -> str:
    """A short group name for an exclusion reason (for --brief)."""
    for key in (
        "not a drum",
        "names no drum class",
        "same file as",
        "not referenced",
        "not a one-shot",
        "loop",
        "audio format not read",
    ):
        if key in why:
            return key
    return why


def _print_problems(title: str, items: list[tuple[Path, str]], out: TextIO) -> None:
    if not items:
        return
    print(f"\n{title} ({len(items)}):", file=out)
    for path, why in items:
        print(f"  {path}: {why}", file=out)


def run_synth(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from sampleforge.data.synth import render_kit

    out = out or sys.stdout
    _check_out(args.out)
    clips = render_kit(args.out, args.per_class, args.seed, setting="out")
    counts = Counter(c.category for c in clips)
    print(f"wrote {len(clips)} clips to {args.out} (kit 'synth', licence 'generated'): "
          + ", ".join(f"{k} {n}" for k, n in counts.items()), file=out)  # fmt: skip
    return 0


def run_gm(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from sampleforge.data.gm import DEFAULT_SF2, render_gm_kits
    from sampleforge.taxonomy import CATEGORIES

    out = out or sys.stdout
    text = ",".join(args.velocities)
    try:
        velocities = [int(v) for v in text.split(",")]
    except ValueError:
        raise UserInputError(f"--velocities: expected e.g. 127,90,60, not {text!r}") from None
    _check_out(args.out)
    clips = render_gm_kits(args.out, args.soundfont or DEFAULT_SF2, velocities,
                           progress=lambda line: print(line, file=sys.stderr))  # fmt: skip
    counts = Counter(c.category for c in clips)
    licences = ", ".join(sorted({c.licence or "unknown" for c in clips}))
    print(f"{len(clips)} clips in {args.out} ({len({c.kit for c in clips})} kits, licence {licences}): "
          + ", ".join(f"{k} {counts[k]}" for k in CATEGORIES if counts[k]), file=out)  # fmt: skip
    return 0
