"""The drum taxonomy shared by the corpus, the keyword vocabulary, the model and the evaluation."""

from __future__ import annotations

from collections.abc import Sequence

# The classes, in a fixed order (class index = position).
CATEGORIES: tuple[str, ...] = (
    "kick",
    "snare",
    "rim",
    "clap",
    "closed_hat",
    "open_hat",
    "tom",
    "crash",
    "ride",
    "cowbell",
    "shaker",
    "perc",
)

# The prompt words that name each class (a prompt holding all of a class's words asks for that class).
CATEGORY_WORDS: dict[str, tuple[str, ...]] = {
    "kick": ("kick",),
    "snare": ("snare",),
    "rim": ("rim",),
    "clap": ("clap",),
    "closed_hat": ("closed", "hat"),
    "open_hat": ("open", "hat"),
    "tom": ("tom",),
    "crash": ("crash",),
    "ride": ("ride",),
    "cowbell": ("cowbell",),
    "shaker": ("shaker",),
    "perc": ("perc",),
}

# The main classes: what `sampleforge demo` renders and `sampleforge eval` prompts by default.
MAIN_CLASSES: tuple[str, ...] = ("kick", "snare", "closed_hat", "open_hat", "tom", "crash", "clap")

# What a user types to ask for a class in a prompt (the default prompt of each class).
CATEGORY_PROMPTS: dict[str, str] = {c: " ".join(w) for c, w in CATEGORY_WORDS.items()}


def category_from_tokens(tokens: Sequence[str]) -> str | None:
    """The class a normalised token list asks for, or None. The most specific match wins.

    ``["punchy", "closed", "hat"] -> "closed_hat"``; ``["hat"] -> "closed_hat"`` (a bare "hat" means the
    common closed hat); ``["deep"] -> None``.
    """
    present = set(tokens)
    best: str | None = None
    best_len = 0
    for cat, words in CATEGORY_WORDS.items():
        if set(words) <= present and len(words) > best_len:
            best, best_len = cat, len(words)
    if best is None and "hat" in present:
        best = "closed_hat"
    if best is None and "cymbal" in present:
        best = "crash"
    return best
