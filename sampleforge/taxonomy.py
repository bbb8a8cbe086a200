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


# Instrument names that say a class without naming it ("tambourine" is a shaker); a kit's file and instrument names
# are labelled by the same rule as a prompt (``category_from_tokens``)
CYMBAL_WORDS = frozenset({"cymbal", "crash", "ride", "china", "splash", "paiste", "sabian", "zildjian", "meinl"})
SHAKER_WORDS = frozenset({"shaker", "maraca", "cabasa", "tambourine"})
PERC_WORDS = frozenset({
    "perc", "conga", "bongo", "djembe", "cajon", "clave", "woodblock", "timbale", "cuica", "guiro",
    "triangle", "snap", "glass", "sangban", "dununba", "kenkeni", "dundun", "tabla", "darbuka",
})  # fmt: skip


def category_from_tokens(tokens: Sequence[str]) -> str | None:
    """The class a normalised token list asks for, or None. The most specific match wins; without a class's words,
    a family word or an instrument name decides.

    ``["punchy", "closed", "hat"] -> "closed_hat"``; ``["hat"] -> "closed_hat"`` (a bare "hat" means the
    common closed hat; a bare "cymbal" a crash); ``["tambourine"] -> "shaker"``, ``["conga"] -> "perc"``,
    ``["splash"] -> "crash"``, ``["bell"] -> "cowbell"`` (``["bell", "cymbal"]``: a ride); ``["deep"] -> None``.
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
    return best or _instrument_category(present)


def _instrument_category(present: set[str]) -> str | None:
    """The class an instrument name in ``present`` says, or None (``category_from_tokens``)."""
    if "bell" in present or "agogo" in present:
        return "ride" if present & CYMBAL_WORDS else "cowbell"
    if present & {"china", "splash"}:
        return "crash"
    if present & SHAKER_WORDS:
        return "shaker"
    if present & PERC_WORDS:
        return "perc"
    return None
