"""Prompt keywords: normalisation (`tokenize`), the model's keyword `Vocabulary`, and `category_of`.

The same normalisation runs on training file names and on user prompts, so "Kick_808_03.wav",
"808 kicks" and "BD 808" all become ``["kick", "808"]``.

Normalisation rules (in order):
1. split camelCase ("HiHat" -> "Hi Hat") and letters from digits ("kick808" -> "kick 808"; "808s" stays);
   lowercase; apostrophes vanish ("80's" -> "80s"); every other non-alphanumeric character separates
   words (spaces, commas, hyphens, underscores, slashes, dots...).
2. plurals -> singular: "kicks"->"kick", "hats"->"hat", "crashes"->"crash", "808s"->"808". Words ending in
   "ss", "us", "is" ("bass", "glass", "brass", "chorus") and the words in ``_NOT_PLURAL`` are kept.
3. two-word aliases (``PAIR_ALIASES``), then one-word aliases (``ALIASES``, one word -> words):
   bd/bassdrum/kickdrum/"bass drum" -> kick; sd/snaredrum -> snare; hh/hihat/"hi hat"/"high hat" -> hat;
   chh/closedhat -> closed hat; ohh/openhat -> open hat; cp/handclap/"hand clap" -> clap;
   rimshot/sidestick/crossstick/stick/"side stick"/"cross stick" -> rim; cb/"cow bell" -> cowbell;
   cy/cym -> cymbal ("cymbal" is kept as a word: the taxonomy reads a bare "cymbal" as a crash);
   tomtom -> tom; percussion -> perc.
4. dropped: the stop words in ``STOP_WORDS`` (articles, "with", "and", "drum", "sample", "one", "shot",
   "hit", "sound", audio file extensions...), single letters, and numbers that look like indices or
   velocity layers (one or two digits, or a leading zero: "01", "7", "003"). Numbers like "808", "909",
   "606" are kept.
5. duplicates removed, first occurrence kept ("kick drum kick" -> ["kick"]).
Steps 2-5 repeat until nothing changes, so ``tokenize`` is idempotent: ``tokenize(" ".join(tokenize(s))) == tokenize(s)``.

``keywords`` adds the ``SYNONYMS`` (descriptor spellings of file names and prompts: "electronic" -> electro,
"dist" -> distorted, "Hat Op" -> hat open; producers' words for what a knob word says: "reverb" -> long, "lo-fi"
-> dark, "saturated" -> distorted); the corpus labels files with it and prompts are read with it, so a
word means the same in both. ``prompt_warnings`` tells a user what a prompt will not do.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from sampleforge.errors import UserInputError
from sampleforge.taxonomy import CATEGORY_WORDS, category_from_tokens

STOP_WORDS: frozenset[str] = frozenset(
    {
        "a", "an", "the", "with", "and", "or", "of", "in", "on", "for", "to", "some", "very",
        "drum", "sample", "one", "shot", "oneshot", "hit", "sound",
        "wav", "wave", "flac", "aif", "aiff", "mp3", "ogg",
    }
)  # fmt: skip

ALIASES: dict[str, tuple[str, ...]] = {
    "bd": ("kick",),
    "bassdrum": ("kick",),
    "kickdrum": ("kick",),
    "sd": ("snare",),
    "snaredrum": ("snare",),
    "hh": ("hat",),
    "hihat": ("hat",),
    "highhat": ("hat",),
    "chh": ("closed", "hat"),
    "closedhat": ("closed", "hat"),
    "ohh": ("open", "hat"),
    "openhat": ("open", "hat"),
    "cp": ("clap",),
    "handclap": ("clap",),
    "rimshot": ("rim",),
    "sidestick": ("rim",),
    "crossstick": ("rim",),
    "stick": ("rim",),
    "cb": ("cowbell",),
    "cy": ("cymbal",),
    "cym": ("cymbal",),
    "tomtom": ("tom",),
    "percussion": ("perc",),
}

PAIR_ALIASES: dict[tuple[str, str], tuple[str, ...]] = {
    ("bass", "drum"): ("kick",),
    ("hi", "hat"): ("hat",),
    ("high", "hat"): ("hat",),
    ("hand", "clap"): ("clap",),
    ("side", "stick"): ("rim",),
    ("cross", "stick"): ("rim",),
    ("rim", "shot"): ("rim",),
    ("cow", "bell"): ("cowbell",),
    ("tom", "tom"): ("tom",),
    ("lo", "fi"): ("lofi",),
    ("bit", "crushed"): ("bitcrushed",),
}

# descriptor spellings (one word -> words), applied after tokenize by ``keywords``
SYNONYMS: dict[str, tuple[str, ...]] = {
    "opened": ("open",), "op": ("open",), "semiopen": ("semi", "open"), "cl": ("closed",),
    "close": ("closed",), "pd": ("pedal",), "hi": ("high",), "lo": ("low",), "lite": ("light",),
    "dist": ("distorted",), "distortion": ("distorted",), "distort": ("distorted",), "dirty": ("distorted",),
    "gritty": ("distorted",), "overdriven": ("distorted",), "med": ("medium",), "normal": ("medium",),
    "softest": ("soft",), "softer": ("soft",), "hardest": ("hard",), "harder": ("hard",),
    "electric": ("electro",), "electronic": ("electro",), "elec": ("electro",), "nz": ("noise",),
    "noisy": ("noise",), "middle": ("mid",), "hse": ("house",), "powr": ("power",), "waterglass": ("glass",),
    "fingersnap": ("snap",), "wooden": ("wood",), "woody": ("wood",), "tamb": ("tambourine",),
    "floortom": ("floor", "tom"), "hhclosed": ("closed", "hat"), "hhopen": ("open", "hat"),
    "hhpedal": ("pedal", "hat"), "crashride": ("crash", "ride"), "ridebell": ("ride", "bell"),
    "shake": ("shaker",), "percussion": ("perc",), "analogue": ("analog",), "real": ("acoustic",),
    "natural": ("acoustic",), "lowest": ("low",), "higher": ("high",), "highest": ("high",), "lower": ("low",),
    "longer": ("long",), "shorter": ("short",), "brighter": ("bright",), "darker": ("dark",),
    "deeper": ("deep",), "muted": ("muffled",), "muffle": ("muffled",), "tr": (),
    # producers' words for what a knob word says: a reverb tail is a long decay, a gated one a short one, lo-fi and
    # dusty are dark, saturation and bit-crushing are distortion
    "reverb": ("long",), "reverbed": ("long",), "verb": ("long",), "wet": ("long",), "roomy": ("long",),
    "ambient": ("long",), "gated": ("short",), "lofi": ("dark",), "dusty": ("dark",), "saturated": ("distorted",),
    "crunchy": ("distorted",), "crunch": ("distorted",), "overdrive": ("distorted",), "fuzz": ("distorted",),
    "fuzzy": ("distorted",), "bitcrushed": ("distorted",), "crushed": ("distorted",), "huge": ("big",),
    "massive": ("big",), "tiny": ("small",), "subby": ("sub",), "bassy": ("deep",), "crispy": ("crisp",),
}  # fmt: skip

# Singular words that end in "s" but are not covered by the "ss"/"us"/"is" rule.
_NOT_PLURAL: frozenset[str] = frozenset(
    {"chaos", "lofi", "yes", "gas", "vs", "fx", "sfx", "ms", "dos", "kudos"}
)

_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")
_WORD = re.compile(r"\d+s(?![a-z])|\d+|[a-z]+")


def _singular(word: str) -> str:
    """One word's singular form ("kicks" -> "kick", "crashes" -> "crash", "bass" -> "bass")."""
    if word[0].isdigit():  # "808s" -> "808"; "80s" (a decade) is kept
        return word[:-1] if word.endswith("s") and len(word) > 3 else word
    if len(word) <= 3 or not word.endswith("s") or word in _NOT_PLURAL:
        return word
    if word.endswith(("ss", "us", "is")):
        return word
    if word.endswith(("ches", "shes", "xes", "sses", "zes")):
        return word[:-2]
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    return word[:-1]


def _is_index_number(word: str) -> bool:
    return word.isdigit() and (len(word) <= 2 or word.startswith("0"))


def fold_accents(text: str) -> str:
    """Letters without their accents ("kïck" -> "kick", "Ölçek" -> "Olcek"); other characters as they are."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def tokenize(text: str) -> list[str]:
    """Normalise a prompt or file name into keywords (see the module docstring for the rules).

    ``"Punchy 808 Kicks, hi-hat"`` -> ``["punchy", "808", "kick", "hat"]``.
    """
    text = _CAMEL.sub(" ", fold_accents(text)).lower().replace("'", "").replace("\u2019", "")
    words = _WORD.findall(text)
    for _ in range(4):  # repeat to a fixed point, so that tokenize is idempotent ("hi the hihat" -> "hat")
        new = _normalise_once(words)
        if new == words:
            break
        words = new
    return words


def _normalise_once(words: list[str]) -> list[str]:
    words = [_singular(w) for w in words]
    paired: list[str] = []
    i = 0
    while i < len(words):
        pair = (words[i], words[i + 1]) if i + 1 < len(words) else None
        if pair is not None and pair in PAIR_ALIASES:
            paired.extend(PAIR_ALIASES[pair])
            i += 2
        else:
            paired.append(words[i])
            i += 1
    out: list[str] = []
    for w in (a for p in paired for a in ALIASES.get(p, (p,))):
        if w in STOP_WORDS or (len(w) == 1 and not w.isdigit()) or _is_index_number(w) or w in out:
            continue
        out.append(w)
    return out


def keywords(text: str) -> list[str]:
    """``tokenize`` then the ``SYNONYMS``, duplicates removed ("Electronic Snare" -> electro, snare)."""
    out: list[str] = []
    for w in tokenize(text):
        for s in SYNONYMS.get(w, (w,)):
            if s not in out:
                out.append(s)
    return out


def classes_named(words: Sequence[str]) -> list[str]:
    """The classes whose words all appear ("kick snare" -> kick, snare; "closed hat" -> closed_hat only)."""
    present = set(words)
    named = [c for c, ws in CATEGORY_WORDS.items() if set(ws) <= present]
    return [c for c in named if not any(set(CATEGORY_WORDS[c]) < set(CATEGORY_WORDS[o]) for o in named)]


def category_of(prompt: str) -> str | None:
    """The drum class a prompt asks for (``"punchy 808 bd"`` -> ``"kick"``), or None if it names none."""
    return category_from_tokens(tokenize(prompt))


class Vocabulary:
    """The keywords a model knows, with their counts in the training data.

    Id 0 is padding; words get ids 1..N ordered by count (descending) then alphabetically, so the same
    data always gives the same ids; a saved vocabulary keeps its file's order (:meth:`extended` appends).
    ``len(vocab)`` is N + 1: the embedding table size the text encoder needs.
    """

    PAD_ID = 0

    def __init__(
        self, counts: dict[str, int], min_count: int = 1, classes: dict[str, dict[str, int]] | None = None,
        *, ordered: bool = False,
    ) -> None:
        """``counts``: word -> count; words counted fewer than ``min_count`` times are left out.
        ``classes``: word -> {class: clips of that class carrying the word} (optional).
        ``ordered``: ``counts`` is already in id order (a saved vocabulary, which may have been extended with
        :meth:`extended`); by default the ids follow the counts."""
        if min_count < 1:
            raise UserInputError(f"min_count must be >= 1, got {min_count}")
        for word, n in counts.items():
            if tokenize(word) != [word]:
                raise UserInputError(
                    f"vocabulary word {word!r} is not a normalised keyword (tokenize gives {tokenize(word)})"
                )
            if not isinstance(n, int) or n < 1:
                raise UserInputError(f"vocabulary word {word!r} has an invalid count {n!r}")
        kept = [(w, n) for w, n in counts.items() if n >= min_count]
        if not ordered:
            kept.sort(key=lambda wn: (-wn[1], wn[0]))
        self.min_count = min_count
        self.counts: dict[str, int] = dict(kept)
        self.words: list[str] = [w for w, _ in kept]
        self._ids: dict[str, int] = {w: i + 1 for i, w in enumerate(self.words)}
        self.classes: dict[str, dict[str, int]] = {
            w: dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))) for w, c in (classes or {}).items() if w in self._ids
        }

    @classmethod
    def build(
        cls, keyword_lists: Iterable[Sequence[str] | str], min_count: int = 1, categories: Sequence[str] | None = None
    ) -> Vocabulary:
        """Count keywords over clips. Each item is one clip's keywords (a list of words, or a raw string
        such as a file name); items are normalised with ``tokenize`` and a word counts once per clip.
        With ``categories`` (each clip's class) the counts per class are kept too."""
        counter: Counter[str] = Counter()
        per_class: dict[str, Counter[str]] = {}
        for i, item in enumerate(keyword_lists):
            text = item if isinstance(item, str) else " ".join(item)
            words = tokenize(text)
            counter.update(words)  # tokenize de-duplicates: a count is a number of clips
            if categories is not None:
                for w in words:
                    per_class.setdefault(w, Counter())[categories[i]] += 1
        classes = {w: dict(c) for w, c in per_class.items()} if categories is not None else None
        return cls(dict(counter), min_count=min_count, classes=classes)

    def extended(self, other: Vocabulary, size: int) -> tuple[Vocabulary, list[str], list[str]]:
        """This vocabulary with ``other``'s new words appended, every id of this one kept: the keywords of a
        model that goes on training on other clips. New words get ids after the last one, most counted first,
        while ``len`` stays within ``size`` (the text encoder's embedding table); their counts and classes
        are ``other``'s. Returns (vocabulary, words added, words left out for want of room)."""
        new = sorted((w for w in other.words if w not in self._ids), key=lambda w: (-other.counts[w], w))
        room = max(0, size - len(self))
        added, left_out = new[:room], new[room:]
        counts = {**self.counts, **{w: other.counts[w] for w in added}}
        classes = {**self.classes, **{w: other.classes[w] for w in added if w in other.classes}}
        min_count = min(self.min_count, other.min_count)
        return Vocabulary(counts, min_count=min_count, classes=classes, ordered=True), added, left_out

    def __len__(self) -> int:
        return len(self.words) + 1

    def __contains__(self, word: object) -> bool:
        return word in self._ids

    def id_of(self, word: str) -> int:
        """The id of a normalised word; KeyError if unknown."""
        return self._ids[word]

    def partition(self, prompt: str, max_tokens: int = 8) -> tuple[list[str], list[str], list[str]]:
        """prompt -> (encoded, unknown, overflow) words: the keywords that will be encoded, those the
        vocabulary does not know, and known ones past ``max_tokens`` (for precise warnings)."""
        if max_tokens < 1:
            raise UserInputError(f"max_tokens must be >= 1, got {max_tokens}")
        words = keywords(prompt)
        known = [w for w in words if w in self._ids]
        unknown = [w for w in words if w not in self._ids]
        return known[:max_tokens], unknown, known[max_tokens:]

    def encode(self, prompt: str, max_tokens: int = 8) -> tuple[list[int], list[str]]:
        """prompt -> (ids, dropped): ``max_tokens`` ids, padded with 0, and the words NOT encoded.

        ``dropped`` lists the unknown words, then the known words past ``max_tokens``; nothing is dropped
        silently: callers turn it into warnings (``partition`` tells the two kinds apart).
        ``"punchy xyzzy kick"`` -> ``([5, 1, 0, ...], ["xyzzy"])``.
        """
        encoded, unknown, overflow = self.partition(prompt, max_tokens)
        ids = [self._ids[w] for w in encoded]
        return ids + [self.PAD_ID] * (max_tokens - len(ids)), unknown + overflow

    def encode_batch(
        self, prompts: Sequence[str], max_tokens: int = 8
    ) -> tuple[torch.Tensor, list[list[str]]]:
        """prompts (B) -> (ids LongTensor (B, max_tokens), per-prompt dropped words); see ``encode``."""
        if isinstance(prompts, str):
            raise UserInputError("encode_batch takes a list of prompts, not one string")
        rows, dropped = [], []
        for p in prompts:
            ids, d = self.encode(p, max_tokens)
            rows.append(ids)
            dropped.append(d)
        return torch.tensor(rows, dtype=torch.long).reshape(len(rows), max_tokens), dropped

    def prompt_warnings(self, prompt: str, max_tokens: int = 8, knob_words: Collection[str] = (),
                        measured: Collection[str] = ()) -> list[str]:
        """What a prompt will not do, one sentence each: unknown words (with "did you mean" for near
        misses), words past ``max_tokens``, no known word at all, two classes at once, and a descriptor that
        too few clips of the asked class carry. ``knob_words`` act through timbre knobs: they are known.
        ``measured``: words whose effect on the prompt's class the model measured (its keyword reach); what
        the measurement says replaces the guess from the clip count."""
        import difflib

        encoded, unknown, overflow = self.partition(prompt, max_tokens)
        unknown = [w for w in unknown if w not in knob_words]
        out: list[str] = []
        choices = sorted(set(self.words) | set(knob_words))
        for w in unknown:
            near = difflib.get_close_matches(w, choices, n=1, cutoff=0.75)
            hint = f"; did you mean {near[0]!r}?" if near else " (see `sampleforge vocab`)"
            out.append(f"unknown keyword {w!r} ignored{hint}")
        out += [f"keyword {w!r} ignored: beyond the {max_tokens}-keyword limit" for w in overflow]
        numbers = list(dict.fromkeys(w for w in _WORD.findall(_CAMEL.sub(" ", prompt).lower()) if _is_index_number(w)))
        if numbers:
            out.append(f"{'numbers' if len(numbers) > 1 else 'number'} {' '.join(numbers)!r} ignored: numbers of one "
                       "or two digits are not keywords (several clips: the count setting; which clips: the seed)")
        symbols = list(dict.fromkeys(re.findall(r"[^\x00-\x7f\s]+", fold_accents(prompt))))  # as typed, word by word
        if symbols:
            said = " and ".join(", ".join(map(repr, symbols)).rsplit(", ", 1))
            out.append(f"{said} ignored: keywords are made of the letters a-z (accents are dropped) and digits")
        words = keywords(prompt)
        if not encoded and not any(w in knob_words for w in words):
            out.append("no keyword this model knows: it generates a random drum (name a class, e.g. 'kick')")
        elif category_from_tokens(words) is None:
            out.append(f"no drum class named: the model picks one by itself ('{' '.join(words)} kick' names one)")
        named = classes_named(words)
        if len(named) > 1:
            out.append(f"the prompt names {len(named)} classes ({', '.join(named)}): the model blends them; "
                       "generate them one at a time for clean sounds")
        elif len(named) == 1 and self.classes:
            cat = named[0]
            class_words = set(CATEGORY_WORDS[cat])
            for w in encoded:
                n = self.classes.get(w, {}).get(cat, 0)
                if w not in class_words and w not in knob_words and w not in measured and n < 3:
                    name = cat.replace("_", " ")
                    out.append(f"{w!r} is on only {n} {name} clip(s) of the training data: its effect on a "
                               f"{name} is weak or may pull toward another class")
        return out

    def decode(self, ids: Sequence[int]) -> list[str]:
        """ids -> words (padding skipped)."""
        return [self.words[i - 1] for i in ids if i != self.PAD_ID]

    def to_dict(self) -> dict[str, Any]:
        """The vocab.json content: ``{"keywords": {word: count} in id order, "min_count": n, "pad_id": 0}``."""
        out: dict[str, Any] = {
            "keywords": dict(self.counts),
            "min_count": self.min_count,
            "pad_id": self.PAD_ID,
            "version": 1,
        }
        if self.classes:
            out["classes"] = self.classes
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Vocabulary:
        """Inverse of ``to_dict``; a malformed object raises UserInputError naming the problem."""
        if not isinstance(data, dict) or not isinstance(data.get("keywords"), dict):
            raise UserInputError('vocab.json: expected an object with a "keywords" object of word -> count')
        unknown = sorted(set(data) - {"keywords", "min_count", "pad_id", "version", "classes"})
        if unknown:
            raise UserInputError(f"vocab.json: unknown key {unknown[0]!r}")
        if data.get("pad_id", 0) != 0:
            raise UserInputError(f"vocab.json: pad_id must be 0, got {data['pad_id']!r}")
        classes = data.get("classes")
        if classes is not None and not (isinstance(classes, dict) and all(
                isinstance(c, dict) and all(isinstance(n, int) for n in c.values()) for c in classes.values())):
            raise UserInputError('vocab.json: "classes" must map word -> {class: count}')
        return cls(dict(data["keywords"]), min_count=int(data.get("min_count", 1)), classes=classes, ordered=True)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Vocabulary:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserInputError(f"vocab.json: not valid JSON ({exc})") from None
        return cls.from_dict(data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        p = Path(path)
        if not p.is_file():
            raise UserInputError(f"{p}: vocabulary file not found")
        try:
            return cls.from_json(p.read_text(encoding="utf-8"))
        except UserInputError as exc:
            raise UserInputError(f"{p}: {exc}") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        head = ", ".join(self.words[:5])
        return f"Vocabulary({len(self.words)} words: {head}{', ...' if len(self.words) > 5 else ''})"
