"""The pieces of a drum kit: name -> taxonomy class, prompt words, General-MIDI note, display label."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass

from sampleforge.errors import UserInputError
from sampleforge.params import DEFAULTS


@dataclass(frozen=True)
class Piece:
    name: str  # file-name safe id, e.g. "low_tom"
    category: str  # one of taxonomy.CATEGORIES
    words: str  # what the prompt says for it, e.g. "low tom"
    note: int  # General-MIDI percussion key (channel 10)
    label: str  # for samplers' instrument lists, e.g. "Low Tom"


PIECES: dict[str, Piece] = {p.name: p for p in (
    Piece("kick", "kick", "kick", 36, "Kick"),
    Piece("rim", "rim", "rim", 37, "Rim"),
    Piece("snare", "snare", "snare", 38, "Snare"),
    Piece("clap", "clap", "clap", 39, "Clap"),
    Piece("closed_hat", "closed_hat", "closed hat", 42, "Closed Hat"),
    Piece("low_tom", "tom", "low tom", 45, "Low Tom"),
    Piece("open_hat", "open_hat", "open hat", 46, "Open Hat"),
    Piece("mid_tom", "tom", "mid tom", 47, "Mid Tom"),
    Piece("crash", "crash", "crash", 49, "Crash"),
    Piece("high_tom", "tom", "high tom", 50, "High Tom"),
    Piece("ride", "ride", "ride", 51, "Ride"),
    Piece("cowbell", "cowbell", "cowbell", 56, "Cowbell"),
    Piece("shaker", "shaker", "shaker", 82, "Shaker"),
    Piece("perc", "perc", "perc", 75, "Perc"),
)}  # fmt: skip

DEFAULT_PIECES: tuple[str, ...] = (
    "kick", "snare", "clap", "closed_hat", "open_hat", "low_tom", "mid_tom", "high_tom", "crash", "ride", "rim",
)  # fmt: skip

# General-MIDI percussion key names (GM 1, 35-81; 82 is GM 2's Shaker)
GM_NAMES: dict[int, str] = {
    35: "Acoustic Bass Drum", 36: "Bass Drum 1", 37: "Side Stick", 38: "Acoustic Snare", 39: "Hand Clap",
    40: "Electric Snare", 41: "Low Floor Tom", 42: "Closed Hi-Hat", 43: "High Floor Tom", 44: "Pedal Hi-Hat",
    45: "Low Tom", 46: "Open Hi-Hat", 47: "Low-Mid Tom", 48: "Hi-Mid Tom", 49: "Crash Cymbal 1", 50: "High Tom",
    51: "Ride Cymbal 1", 52: "Chinese Cymbal", 53: "Ride Bell", 54: "Tambourine", 55: "Splash Cymbal",
    56: "Cowbell", 57: "Crash Cymbal 2", 58: "Vibraslap", 59: "Ride Cymbal 2", 60: "Hi Bongo", 61: "Low Bongo",
    62: "Mute Hi Conga", 63: "Open Hi Conga", 64: "Low Conga", 65: "High Timbale", 66: "Low Timbale",
    67: "High Agogo", 68: "Low Agogo", 69: "Cabasa", 70: "Maracas", 71: "Short Whistle", 72: "Long Whistle",
    73: "Short Guiro", 74: "Long Guiro", 75: "Claves", 76: "Hi Wood Block", 77: "Low Wood Block",
    78: "Mute Cuica", 79: "Open Cuica", 80: "Mute Triangle", 81: "Open Triangle", 82: "Shaker",
}  # fmt: skip

# hats choke each other (SFZ group/off_by, Hydrogen mute group, Decent Sampler tags)
CHOKE_GROUP: dict[str, int] = {"closed_hat": 1, "open_hat": 1}

MAX_PIECES = 32
# a kit's own defaults: 24-bit files at each sound's natural length
KIT_DEFAULTS = dataclasses.replace(DEFAULTS, format="wav24", length="auto")
MAX_ROUND_ROBINS = 8
MAX_VELOCITY_LAYERS = 5
LAYER_RANGE_DB = 12.0  # the softest velocity layer is this much quieter than the hardest


def parse_pieces(names: str | Sequence[str] | None) -> list[str]:
    """Piece names separated by spaces or commas ("kick snare", "kick,snare"), or a list of them -> the list
    (default ``DEFAULT_PIECES``); UserInputError naming an unknown or repeated piece and listing the valid ones."""
    if names is None:
        return list(DEFAULT_PIECES)
    items = re.split(r"[,\s]+", names) if isinstance(names, str) else [str(n).strip() for n in names]
    items = [n for n in items if n]
    if not items:
        raise UserInputError("pieces: name at least one piece")
    if len(items) > MAX_PIECES:
        raise UserInputError(f"pieces: at most {MAX_PIECES}, got {len(items)}")
    for n in items:
        if n not in PIECES:
            raise UserInputError(f"pieces: unknown piece {n!r} (valid: {', '.join(PIECES)})")
    dup = sorted({n for n in items if items.count(n) > 1})
    if dup:
        raise UserInputError(f"pieces: {', '.join(dup)} named twice")
    return items


def velocity_words(layers: int) -> list[str]:
    """The prompt word of each velocity layer, softest first: 1 -> [""], 2 -> soft, hard, 3 -> soft, (none),
    hard; more layers repeat the nearest word (their gain still differs). Not "medium": few training clips carry
    it, so it reaches a model through the knobs of those few (drums-v2: a bright, punchy closed hat)."""
    if layers == 1:
        return [""]
    names = ("soft", "", "hard") if layers >= 3 else ("soft", "hard")
    return [names[round(i * (len(names) - 1) / (layers - 1))] for i in range(layers)]


def velocity_ranges(layers: int) -> list[tuple[int, int]]:
    """MIDI velocity range (lo, hi) of each layer, softest first, covering 1..127 without gaps."""
    edges = [1 + round(i * 127 / layers) for i in range(layers + 1)]
    return [(edges[i], edges[i + 1] - 1) for i in range(layers)]


def layer_gain_db(layer: int, layers: int) -> float:
    """Gain of velocity layer ``layer`` (0 = softest): -LAYER_RANGE_DB ... 0 dB."""
    return 0.0 if layers == 1 else -LAYER_RANGE_DB * (layers - 1 - layer) / (layers - 1) + 0.0  # no -0.0
