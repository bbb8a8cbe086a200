"""Measured timbre knobs: decay, brightness, weight and punch of a drum one-shot, as per-class quantiles 0-1.

Each knob is a feature measured on the waveform (onset-aligned, as the training clips are):

| knob | feature | unit |
|---|---|---|
| decay | time from the peak of the 10-ms RMS envelope until it falls 30 dB below it for good | s |
| brightness | spectral centroid of the attack (the first 80 ms) | Hz |
| weight | version 1: share of the energy below 120 Hz over the first 300 ms; version 2: how low the body sits, in octaves from 250 Hz down to the centroid of its 25-250 Hz power (30-300 ms) | share, octaves |
| punch | level of the first 20 ms against the 20-200 ms body | dB |

Two versions of the brightness and weight features exist (``FEATURE_VERSIONS``); a recipe picks one
(``recipe.timbre_features``) and the model's timbre.json names it (absent: 1), so that its knobs and their
checks (``sampleforge eval descriptors``) mean what it was trained on. Version 1 (drums-v2's): the power
centroid of the attack and the low-band share. Version 2: the centroid of the attack's *magnitude* spectrum (as
librosa computes it) and the body's pitch. The power centroid of a kick's attack is its fundamental (50-120
Hz), which says nothing of its click and which a mel VAE round trip keeps badly (Spearman r 0.67 on 50 real
kicks, against 0.92 for the magnitude centroid; snares 0.67 vs 0.88), and the low-band share sits at 0.88-0.99
for most kicks (round trip r 0.67, the body's pitch 0.76). A U-Net resumed on version 2 moves the kick with
its words (808, deep, thin: docs/runs/drums-v2); its crashes and open hats spread wider than real ones, as those
of the same U-Net resumed for as many steps on version 1 do. Trained on version 2 from the start, the kick's
decay, brightness and punch follow their knobs but its weight (the body's pitch) does not.

A model is conditioned on the knobs as quantiles *within the clip's class* (0 = the darkest snare of the
training data, 1 = the brightest), so one value means the same thing for every class. Each knob is dropped
at random in training, so a knob left unset is sampled freely.

Words map onto knobs: ``WORD_KNOBS`` is the one table of general words (long, bright, deep, punchy ...); on top
of it a model measures what its words mean for each class (``class_word_knobs``: an 808 kick is heavy, a high
tom light). A prompt word sets a knob the user did not set; a knob word that few training clips (of the class
asked for) carry acts through its knob alone (``KEYWORD_MIN_CLIPS``). A model may also say how far a word can
move each knob of each class before its clips stop being that class (timbre.json ``knob_limits``: a bright snare
stays a snare), how far a word's knobs may go together (``word_reach``: a low cowbell, short, heavy and punchy,
stays a cowbell), and how far two knobs set one way by two words may go together (``pair_reach``, by the corner
of the two knobs: a short thin tom stays a tom; or by one word and the other's knob end, where the model measured
that word, a class word such as "high" for a tom, which also reaches the model as a keyword: a bright high tom
stays a tom), and three knobs set by three words, by their corner, further (a long bright punchy kick stays a
kick); a value the user sets is not limited. A keyword that sets no knob can take a class away by itself ("808"
makes a snare a kick): ``keyword_reach`` says how much of its conditioning a class keeps (``keyword_weight``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

KNOBS: tuple[str, ...] = ("decay", "brightness", "weight", "punch")
FEATURE_VERSIONS = (1, 2)  # of the brightness and weight definitions (module docstring)
FEATURES = 1  # the version a recipe uses unless it names one (that of the shipped drums-v2)

# prompt word -> knob values it stands for (quantiles within the class)
WORD_KNOBS: dict[str, dict[str, float]] = {
    "long": {"decay": 0.85}, "short": {"decay": 0.15}, "tight": {"decay": 0.2, "punch": 0.7},
    "boomy": {"decay": 0.8, "weight": 0.85}, "ring": {"decay": 0.85},
    "bright": {"brightness": 0.85}, "crisp": {"brightness": 0.8}, "dark": {"brightness": 0.15},
    "warm": {"brightness": 0.3}, "muffled": {"brightness": 0.1}, "dull": {"brightness": 0.15},
    "deep": {"weight": 0.85}, "sub": {"weight": 0.9}, "fat": {"weight": 0.75}, "big": {"weight": 0.75},
    "heavy": {"weight": 0.8}, "thin": {"weight": 0.15}, "small": {"weight": 0.25},
    "punchy": {"punch": 0.85}, "snappy": {"punch": 0.8, "decay": 0.35}, "smooth": {"punch": 0.2},
    "round": {"punch": 0.25},
}  # fmt: skip

# A knob word is also given to the model as a keyword only when at least this many training clips carry it:
# a word on a handful of (often synthetic) clips carries their sound, not the word's meaning, while its
# knob is measured on every clip. ("soft" and "hard", on hundreds of velocity layers, are keywords only.)
KEYWORD_MIN_CLIPS = 20

# A word means something specific for one class when the real clips of that class carrying it lean one way:
# ``class_word_knobs`` measures, per (class, word) with at least WORD_KNOB_MIN_CLIPS training clips, the median
# quantile of each knob, and keeps the knobs at least WORD_KNOB_MIN_SHIFT away from the middle (an 808 kick is
# heavy, a high tom light). A model stores the table in its timbre.json; it takes precedence over WORD_KNOBS.
WORD_KNOB_MIN_CLIPS = 3
WORD_KNOB_MIN_SHIFT = 0.15

SAMPLE_RATE = 44100
FLOOR_DB = -30.0
WEIGHT_HZ = 120.0  # version 1: below the fundamental of a high tom, above that of a low one
BODY_HZ = (25.0, 250.0)  # version 2: the band of a kick's and a tom's fundamental and low partials
BODY_MIN_SHARE = 1e-3


def _rms_envelope(wav: np.ndarray, sr: int, win_s: float = 0.010, hop_s: float = 0.005) -> np.ndarray:
    """(T,) -> RMS in dB (frames,), 10-ms windows every 5 ms."""
    win, hop = max(1, int(win_s * sr)), max(1, int(hop_s * sr))
    if wav.shape[0] < win:
        wav = np.pad(wav, (0, win - wav.shape[0]))
    n = 1 + (wav.shape[0] - win) // hop
    frames = np.lib.stride_tricks.as_strided(wav, (n, win), (wav.strides[0] * hop, wav.strides[0]))
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-20)
    return 20 * np.log10(rms)


def measure(wav: np.ndarray, sr: int = SAMPLE_RATE, features: int = FEATURES) -> dict[str, float]:
    """Raw features of one clip (T,) -> {knob: value} in the units of the module table, brightness and weight
    by definition ``features`` (a FEATURE_VERSIONS number)."""
    if features not in FEATURE_VERSIONS:
        raise ValueError(f"timbre features version must be one of {FEATURE_VERSIONS}, got {features!r}")
    wav = np.asarray(wav, dtype=np.float32).reshape(-1)
    env = _rms_envelope(wav, sr)
    peak = int(np.argmax(env))
    above = np.nonzero(env[peak:] >= env[peak] + FLOOR_DB)[0]
    decay = float(above[-1] + 1) * 0.005 if above.size else 0.005
    onset = max(0, peak * int(0.005 * sr) - int(0.005 * sr))

    def seg(a: float, b: float) -> np.ndarray:
        return wav[onset + int(a * sr) : onset + int(b * sr)]

    attack = seg(0.0, 0.080)
    freqs = np.fft.rfftfreq(8192, 1 / sr)
    brightness = 0.0
    if attack.size > 8:
        spec = np.abs(np.fft.rfft(attack * np.hanning(attack.shape[0]), n=8192)) ** (2 if features == 1 else 1)
        brightness = float((spec * freqs).sum() / max(spec.sum(), 1e-20))
    weight = _low_share(seg(0.0, 0.300), sr) if features == 1 else _body_weight(seg(0.030, 0.300), sr)
    head, tail = seg(0.0, 0.020), seg(0.020, 0.200)
    rms = lambda x: math.sqrt(float(np.mean(x.astype(np.float64) ** 2)) + 1e-12) if x.size else 1e-6  # noqa: E731
    punch = 20 * math.log10(rms(head) / rms(tail))
    return {"decay": decay, "brightness": brightness, "weight": weight, "punch": punch}


def _low_share(body: np.ndarray, sr: int) -> float:
    """Version 1 weight: the share of the body's (T,) energy below WEIGHT_HZ."""
    n = max(16384, body.shape[0])
    power = np.abs(np.fft.rfft(body, n=n)) ** 2
    freqs = np.fft.rfftfreq(n, 1 / sr)
    return float(power[freqs < WEIGHT_HZ].sum() / max(power.sum(), 1e-20))


def _body_weight(body: np.ndarray, sr: int) -> float:
    """Version 2 weight: octaves from BODY_HZ's top down to the power centroid of the body (T,) within BODY_HZ; 0 when the band
    holds less than BODY_MIN_SHARE of the body's power (a hat: no body, only the window's leakage)."""
    lo, hi = BODY_HZ
    if body.size < 8:
        return 0.0
    n = max(16384, body.shape[0])
    power = np.abs(np.fft.rfft(body * np.hanning(body.shape[0]), n=n)) ** 2
    freqs = np.fft.rfftfreq(n, 1 / sr)
    band = (freqs > lo) & (freqs < hi)
    total = float(power[band].sum())
    if total <= BODY_MIN_SHARE * float(power.sum()) or total <= 1e-20:
        return 0.0
    centroid = float((power[band] * freqs[band]).sum() / total)
    return math.log2(hi / centroid)


def class_quantiles(features: Sequence[Mapping[str, float]], categories: Sequence[str]) -> np.ndarray:
    """Raw features of N clips with their classes -> (N, len(KNOBS)) quantiles within each class, 0-1.

    Ties share their mean rank; a class with one clip gets 0.5."""
    out = np.full((len(features), len(KNOBS)), 0.5, dtype=np.float32)
    cats = np.asarray(categories)
    for cat in sorted(set(categories)):
        idx = np.nonzero(cats == cat)[0]
        if idx.size < 2:
            continue
        for k, knob in enumerate(KNOBS):
            vals = np.array([features[int(i)][knob] for i in idx])
            order = vals.argsort(kind="stable")
            ranks = np.empty(idx.size)
            ranks[order] = np.arange(idx.size)
            for v in np.unique(vals):  # ties: mean rank
                same = vals == v
                ranks[same] = ranks[same].mean()
            out[idx, k] = ranks / (idx.size - 1)
    return out


ClassWordKnobs = dict[str, dict[str, dict[str, float]]]  # class -> word -> {knob: quantile}


def class_word_knobs(quantiles: np.ndarray, categories: Sequence[str],
                     keyword_lists: Sequence[Sequence[str]]) -> ClassWordKnobs:
    """(N, len(KNOBS)) per-class quantiles of N clips, their classes and keywords -> for each (class, word)
    carried by at least WORD_KNOB_MIN_CLIPS clips of the class, the median quantile of each knob that leans at
    least WORD_KNOB_MIN_SHIFT away from 0.5 (words that lean no way are left out). Class names are not words
    of their own class."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, (cat, words) in enumerate(zip(categories, keyword_lists, strict=True)):
        for w in set(words):
            if w != cat:
                groups.setdefault((cat, w), []).append(i)
    out: ClassWordKnobs = {}
    for (cat, word), idx in sorted(groups.items()):
        if len(idx) < WORD_KNOB_MIN_CLIPS:
            continue
        med = np.median(quantiles[idx], axis=0)
        lean = {k: round(float(m), 2) for k, m in zip(KNOBS, med, strict=True) if abs(m - 0.5) >= WORD_KNOB_MIN_SHIFT}
        if lean:
            out.setdefault(cat, {})[word] = lean
    return out


ClassKnobLimits = dict[str, dict[str, list[float]]]  # class -> knob -> [low, high]
# class -> word -> share of its knobs' distance from 0.5 it may go (None: the word leaves the class whatever its
# knobs, as a keyword; they are kept)
ClassWordReach = dict[str, dict[str, float | None]]
# class -> corner of two knobs ("decay:low+weight:low", ``corner``), or a word and the other word's knob end
# ("high+brightness:high", ``word_end``; it comes before the corner) -> share of their distance from 0.5 two words
# that set them that way may go together (None: such two words leave the class even at the middle); and corners of
# three knobs ("decay:high+brightness:high+punch:high") -> the share three words' knobs may go further together
ClassPairReach = dict[str, dict[str, float | None]]


def toward_middle(value: float, reach: float) -> float:
    """A knob ``value`` moved toward the middle (0.5) to ``reach`` of its distance from it."""
    return round(0.5 + reach * (value - 0.5), 4)


def corner(values: Mapping[str, float]) -> str | None:
    """The corner of two or more knob values, each below or above the middle: ``{"decay": 0.15, "weight": 0.85}``
    -> "decay:low+weight:high" (knobs in ``KNOBS`` order); None when a value is at the middle."""
    if any(v == 0.5 for v in values.values()):
        return None
    return "+".join(_end(k, values[k]) for k in KNOBS if k in values)


def word_end(word: str, knob: str, value: float) -> str:
    """The ``pair_reach`` name of ``word`` with another word's ``knob`` at ``value``: "high+brightness:high"."""
    return f"{word}+{_end(knob, value)}"


def _end(knob: str, value: float) -> str:
    """The end of ``knob`` that ``value`` leans to: "brightness:high" (the middle, 0.5, counts as high)."""
    return f"{knob}:{'low' if value < 0.5 else 'high'}"


def knobs_from_words(words: Sequence[str], explicit: Mapping[str, float | None] | None = None,
                     category: str | None = None, class_words: ClassWordKnobs | None = None,
                     limits: ClassKnobLimits | None = None, reach: ClassWordReach | None = None,
                     pairs: Mapping[str, Mapping[str, float | None]] | None = None, three_words: bool = True
                     ) -> dict[str, float]:
    """Knob values a prompt asks for: the explicit ones, then those its words stand for (for ``category`` the
    model's measured ``class_words`` first, then ``WORD_KNOBS``; the first word that sets a knob wins). A value
    set by a word is kept within the model's ``limits`` for ``category`` (how far a knob can go before the model's
    clips stop being that class: ``eval.descriptors.knob_limits``), then moved toward the middle to the word's
    ``reach`` for ``category``, where the model has one (how far a word's knobs can go together, measured on the
    values held within the limits: ``eval.descriptors.word_reach``). Two knobs set by two different words are then
    moved toward the middle to their reach in ``pairs`` (how far two words' knobs can go together, measured on the
    values so far: ``eval.descriptors.pair_reach``): that of one word with the other's knob end where the model
    measured it (``word_end``; the word may set no knob, a keyword only), else that of their corner; a knob in
    several such pairs takes the shortest. With ``three_words``, three knobs set by three words are then moved
    further, to their corner's reach in ``pairs`` (measured on the values the pairs leave). An explicit value is the
    user's and is kept. Unset knobs are absent."""
    out, by = _word_values(words, explicit, category, class_words, limits, reach)
    entries = (pairs or {}).get(category or "", {})
    moved: dict[str, float] = {}

    def move(knobs: Sequence[str], f: float | None) -> None:
        if f is not None:
            moved.update({k: min(moved.get(k, 1.0), f) for k in knobs})

    measured = _word_ends(words, out, by, entries)
    for items in measured.values():
        for together, f in items:
            move(together, f)
    for (a, b), where in _word_corners(out, by):
        if frozenset((by[a], by[b])) not in measured:
            move((a, b), entries.get(where))
    further: dict[str, float] = {}
    for knobs, where in _word_corners(out, by, 3) if three_words else ():
        f3 = entries.get(where)
        if f3 is not None:
            further.update({k: min(further.get(k, 1.0), f3) for k in knobs})
    share = {k: moved.get(k, 1.0) * further.get(k, 1.0) for k in {*moved, *further}}
    return {k: toward_middle(v, share[k]) if k in share else v for k, v in out.items()}


def pairs_leaving(words: Sequence[str], category: str | None = None, class_words: ClassWordKnobs | None = None,
                  limits: ClassKnobLimits | None = None, reach: ClassWordReach | None = None,
                  pairs: ClassPairReach | None = None) -> list[tuple[str, ...]]:
    """The two or three words of a prompt whose knobs ``pairs`` says take ``category`` out of its class even at the
    middle (their reach None, by the rule of ``knobs_from_words``), each in the prompt's order."""
    entries = (pairs or {}).get(category or "", {})
    out, by = _word_values(words, None, category, class_words, limits, reach)
    first = {w: i for i, w in reversed(list(enumerate(words)))}
    found: list[tuple[str, ...]] = []
    measured = _word_ends(words, out, by, entries)
    for two, items in measured.items():
        if all(f is None for _, f in items):
            found.append(tuple(sorted(two, key=first.__getitem__)))
    for (a, b), where in _word_corners(out, by):
        if frozenset((by[a], by[b])) not in measured and where in entries and entries[where] is None:
            found.append(tuple(sorted((by[a], by[b]), key=first.__getitem__)))
    for knobs, where in _word_corners(out, by, 3):
        if where in entries and entries[where] is None:
            found.append(tuple(sorted((by[k] for k in knobs), key=first.__getitem__)))
    return list(dict.fromkeys(found))


def _word_ends(words: Sequence[str], values: Mapping[str, float], by: Mapping[str, str],
               entries: Mapping[str, float | None]) -> dict[frozenset[str], list[tuple[list[str], float | None]]]:
    """The two words of a prompt that a class's ``pair_reach`` ``entries`` measured together (``word_end``: a word,
    with or without knobs of its own, and another word's knob end) -> for each such entry, the knobs it moves (the
    other word's knob and the word's own) and its reach; these come before the corners of the two words' knobs."""
    found: dict[frozenset[str], list[tuple[list[str], float | None]]] = {}
    for w in dict.fromkeys(words):
        own = [j for j in KNOBS if by.get(j) == w]
        for k in (k for k in KNOBS if k in by and by[k] != w and values[k] != 0.5):
            name = word_end(w, k, values[k])
            if name in entries:
                found.setdefault(frozenset((w, by[k])), []).append(([k, *own], entries[name]))
    return found


def _word_values(words: Sequence[str], explicit: Mapping[str, float | None] | None, category: str | None,
                 class_words: ClassWordKnobs | None, limits: ClassKnobLimits | None, reach: ClassWordReach | None
                 ) -> tuple[dict[str, float], dict[str, str]]:
    """``knobs_from_words`` before the pair reach: (knob -> value, knob -> the word that set it)."""
    out = {k: float(v) for k, v in (explicit or {}).items() if v is not None}
    by: dict[str, str] = {}
    own = (class_words or {}).get(category or "", {})
    bounds = (limits or {}).get(category or "", {})
    reaches = (reach or {}).get(category or "", {})
    for w in words:
        f = reaches.get(w)
        f = 1.0 if f is None else f
        for knob, value in {**WORD_KNOBS.get(w, {}), **own.get(w, {})}.items():
            if knob not in out:
                low, high = bounds.get(knob, (0.0, 1.0))
                held = min(max(value, low), high)
                out[knob] = held if f == 1.0 else toward_middle(held, f)
                by[knob] = w
    return out, by


def _word_corners(values: Mapping[str, float], by: Mapping[str, str], size: int = 2
                  ) -> list[tuple[tuple[str, ...], str]]:
    """Each ``size`` knobs set by as many different words, with their corner (``corner``; those with a knob at the
    middle left out)."""
    found = []
    for knobs in itertools.combinations([k for k in KNOBS if k in by], size):
        where = corner({k: values[k] for k in knobs}) if len({by[k] for k in knobs}) == size else None
        if where is not None:
            found.append((knobs, where))
    return found


def keyword_weight(words: Sequence[str], category: str | None,
                   keyword_reach: Mapping[str, Mapping[str, float | None]] | None) -> tuple[list[str], float] | None:
    """The keywords of a prompt (``words``, as the model gets them) that ``keyword_reach`` holds back for
    ``category``, as (the words without them, how much of their conditioning to give back: the least of their
    weights), or None when none is held back. The model is conditioned between the two prompts:
    ``c(without) + weight * (c(words) - c(without))``. A None entry (the word leaves the class even without its
    keyword) holds nothing back."""
    weights = (keyword_reach or {}).get(category or "", {})

    def held(w: str) -> bool:
        f = weights.get(w)
        return f is not None and f < 1.0

    if not any(held(w) for w in words):
        return None
    return [w for w in words if not held(w)], min(float(weights[w] or 0.0) for w in words if held(w))


def table_problem(table: Mapping[str, Any]) -> str | None:
    """What is wrong with the measured tables of a timbre.json (``knob_limits``, ``word_reach``, ``pair_reach``,
    ``keyword_reach``), naming the entry, or None: a hand-edited file is refused when its model loads, not deep in
    generation."""
    def share(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0

    for key in ("knob_limits", "word_reach", "pair_reach", "keyword_reach"):
        classes = table.get(key, {})
        if not isinstance(classes, dict) or not all(isinstance(v, dict) for v in classes.values()):
            return f"'{key}' must map each class to an object"
        for category, entries in classes.items():
            for name, v in entries.items():
                where = f"{key}.{category}.{name}"
                if key == "knob_limits":
                    if name not in KNOBS:
                        return f"{where}: unknown knob (known: {', '.join(KNOBS)})"
                    if not (isinstance(v, list) and len(v) == 2 and all(map(share, v)) and v[0] <= v[1]):
                        return f"{where}: expected [low, high] within 0-1, got {v!r}"
                    continue
                if key == "pair_reach" and _corner_of(name) != name and not is_word_end(name):
                    return (f"{where}: neither a corner of two or three knobs in the order {', '.join(KNOBS)} "
                            "(e.g. 'decay:low+weight:high') nor a word and a knob end (e.g. 'high+brightness:high')")
                if key == "keyword_reach" and (not name or set(name) & set("+: ")):
                    return f"{where}: expected one keyword"
                if v is not None and not share(v):
                    return f"{where}: expected a reach within 0-1 or null, got {v!r}"
    return None


def _corner_of(name: str) -> str | None:
    """``corner`` of a corner's name ("decay:low+weight:high"), or None when it names none of two or three knobs."""
    sides = [part.split(":") for part in name.split("+")]
    if len(sides) not in (2, 3) or any(len(s) != 2 or s[0] not in KNOBS or s[1] not in ("low", "high") for s in sides):
        return None
    values = {k: 0.25 if side == "low" else 0.75 for k, side in sides}
    return corner(values) if len(values) == len(sides) else None


def is_word_end(name: str) -> bool:
    """Whether a ``pair_reach`` entry's ``name`` is a ``word_end`` (a word, '+', a knob, ':' and low or high), not a
    corner."""
    word, _, end = name.partition("+")
    knob, _, side = end.partition(":")
    return bool(word) and not set(word) & set("+: ") and knob in KNOBS and side in ("low", "high")


def word_table(knobs: Sequence[str], timbre: Mapping[str, Any]) -> dict[str, Any]:
    """What the words of a model trained on ``knobs`` do to them, from its timbre.json (``timbre``), as `sampleforge
    vocab` and the service's /v1/vocab list it: ``words`` (``WORD_KNOBS``), ``class_words`` (what words mean for
    each class, measured; these come first), ``knob_limits``, ``word_reach``, ``pair_reach`` and ``keyword_reach``;
    only the model's knobs. Empty for a model without knobs."""
    if not knobs:
        return {}
    keep = set(knobs)

    def own(values: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in values.items() if k in keep}

    return {"knobs": list(knobs),
            "words": {w: own(v) for w, v in WORD_KNOBS.items() if own(v)},
            "class_words": {c: {w: own(v) for w, v in words.items() if own(v)}
                            for c, words in timbre.get("words", {}).items()},
            "knob_limits": {c: own(bounds) for c, bounds in timbre.get("knob_limits", {}).items() if own(bounds)},
            "word_reach": dict(timbre.get("word_reach", {})), "pair_reach": dict(timbre.get("pair_reach", {})),
            "keyword_reach": dict(timbre.get("keyword_reach", {}))}


def conditioned_knobs(gen: Any, prompt: str, knobs: Mapping[str, float]) -> dict[str, float]:
    """The timbre knobs a clip of ``prompt`` is conditioned on, as its file's provenance records them: ``knobs`` as
    given and those the prompt's words set (a model with knobs: its ``knob_values``), so that giving them again
    makes the same clip after the model's word tables change; for a model without knobs, ``knobs`` as asked."""
    values = getattr(gen, "knob_values", None)
    resolved = values(prompt, knobs) if callable(values) else {}
    return {k: round(float(v), 4) for k, v in sorted((resolved or knobs).items())}


def knob_vector(values: Mapping[str, float]) -> list[float]:
    """{knob: value} -> [value or NaN for each of KNOBS] (NaN = unset, sampled freely)."""
    return [float(values[k]) if k in values else float("nan") for k in KNOBS]
