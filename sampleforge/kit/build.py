"""Generate a kit: one sound per piece that share a character (the same descriptor words, related start
noise), with optional round robins and velocity layers.

Start noise of (piece p, round robin r): ``rho * base + sqrt(1 - rho^2) * own`` with ``base`` drawn from
the kit's seed and ``own`` from the pad's seed; both are standard normal and independent, so the mix is
standard normal too (what the sampler expects) and correlates ``rho`` (``relatedness``) with every other
pad. The velocity layers of one pad share its noise and differ by a prompt word (soft / medium / hard)
and a gain (``pieces.layer_gain_db``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from sampleforge.audio.finish import apply_length
from sampleforge.errors import UserInputError
from sampleforge.kit.pieces import (
    MAX_ROUND_ROBINS,
    MAX_VELOCITY_LAYERS,
    PIECES,
    layer_gain_db,
    parse_pieces,
    velocity_ranges,
    velocity_words,
)
from sampleforge.pipeline import Callback, Generator
from sampleforge.taxonomy import CATEGORY_WORDS
from sampleforge.text.keywords import tokenize

_CLASS_WORDS = frozenset(w for ws in CATEGORY_WORDS.values() for w in ws) | {"tom", "low", "mid", "high"}


@dataclass
class KitSample:
    """One file of a kit."""

    piece: str
    layer: int  # velocity layer, 0 = softest
    rr: int  # round robin, 0-based
    prompt: str
    seed: int  # the pad's own noise seed
    velocity: tuple[int, int]
    gain_db: float
    file: str = ""  # file name in the kit folder, set by the writer
    audio: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32), repr=False)


@dataclass
class Kit:
    """A generated kit: its samples (piece-major, then round robin, then layer) and how it was made."""

    name: str
    prompt: str
    seed: int
    model: str
    sample_rate: int
    pieces: list[str]
    round_robins: int
    velocity_layers: int
    relatedness: float
    params: dict[str, Any]
    samples: list[KitSample]
    warnings: list[str] = field(default_factory=list)

    def provenance(self) -> dict[str, Any]:
        """Everything needed to make this kit again (no audio)."""
        return {
            "name": self.name, "prompt": self.prompt, "seed": self.seed, "model": self.model,
            "sample_rate": self.sample_rate, "pieces": self.pieces, "round_robins": self.round_robins,
            "velocity_layers": self.velocity_layers, "relatedness": self.relatedness, "params": self.params,
            "samples": [{k: v for k, v in asdict(s).items() if k != "audio"} for s in self.samples],
        }  # fmt: skip


def character(prompt: str) -> str:
    """The kit prompt without class words (they come from each piece): "dusty 808 kick" -> "dusty 808"."""
    return " ".join(w for w in tokenize(prompt) if w not in _CLASS_WORDS)


def slug(text: str, default: str = "kit") -> str:
    """A file-name-safe name: "Dusty 808!" -> "dusty_808"."""
    s = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:60]
    return s or default


def pad_seed(kit_seed: int, index: int) -> int:
    """The default own-noise seed of pad ``index`` (piece-major, then round robin)."""
    return (kit_seed + 1 + index) % 2**31


def _check(value: Any, name: str, lo: float, hi: float, integer: bool) -> None:
    ok = not isinstance(value, bool) and isinstance(value, int if integer else (int, float))
    if not ok or not lo <= value <= hi or (not integer and not math.isfinite(value)):
        kind = "an integer" if integer else "a number"
        raise UserInputError(f"{name} must be {kind} between {lo:g} and {hi:g}, got {value!r}")


def build_kit(
    gen: Generator,
    prompt: str = "",
    pieces: str | Sequence[str] | None = None,
    *,
    seed: int | None = None,
    round_robins: int = 1,
    velocity_layers: int = 1,
    relatedness: float = 0.5,
    pad_seeds: dict[str, int] | None = None,
    length: str | float | None = "auto",
    steps: int = 50,
    cfg_scale: float = 3.0,
    sampler: str = "ddim",
    vocoder: bool = True,
    name: str | None = None,
    knobs: Mapping[str, float | None] | None = None,
    callback: Callback | None = None,
) -> Kit:
    """Generate a kit with ``gen``. ``pad_seeds`` ({piece: seed}) re-rolls single pads (its round robins use
    seed, seed + 1, ...); ``length`` as in ``audio.finish.apply_length`` ("auto": each sound at its natural
    length). Every sample is finished (peak 0.95) and then turned down by its layer's gain."""
    if not isinstance(prompt, str):
        raise UserInputError("prompt must be a string")
    names = parse_pieces(pieces)
    _check(round_robins, "round_robins", 1, MAX_ROUND_ROBINS, True)
    _check(velocity_layers, "velocity_layers", 1, MAX_VELOCITY_LAYERS, True)
    _check(relatedness, "relatedness", 0.0, 1.0, False)
    for p, value in (pad_seeds or {}).items():
        if p not in names:
            raise UserInputError(f"pad_seeds: {p!r} is not a piece of this kit ({', '.join(names)})")
        _check(value, f"pad_seeds[{p}]", 0, 2**31 - 1, True)
    seed = Generator.resolve_seed(seed)
    duration = gen.bundle.config.duration
    shape = gen.bundle.config.vae.latent_shape(gen.frames(duration)[1])
    words, ranges = velocity_words(velocity_layers), velocity_ranges(velocity_layers)
    char = character(prompt)

    base = gen.start_noise([seed], shape)[0]
    mix = math.sqrt(max(0.0, 1.0 - relatedness**2))
    samples: list[KitSample] = []
    noises: list[torch.Tensor] = []
    for i, piece in enumerate(names):
        for r in range(round_robins):
            own_seed = (pad_seeds[piece] + r) % 2**31 if pad_seeds and piece in pad_seeds \
                else pad_seed(seed, i * round_robins + r)
            noise = relatedness * base + mix * gen.start_noise([own_seed], shape)[0]
            for layer in range(velocity_layers):
                text = " ".join(w for w in (PIECES[piece].words, words[layer], char) if w)
                samples.append(KitSample(piece, layer, r, text, own_seed, ranges[layer],
                                         layer_gain_db(layer, velocity_layers)))
                noises.append(noise)
    prompts = [s.prompt for s in samples]
    warnings = sorted({w for p in dict.fromkeys(prompts) for w in gen.check_prompt(p)})
    cond, uncond = gen.condition(prompts, gen.checked_knobs(knobs, warnings))
    wav, _, _ = gen.render(cond, uncond, torch.stack(noises), [s.seed for s in samples], duration, steps=steps,
                           cfg_scale=cfg_scale, sampler=sampler, vocoder=vocoder, callback=callback)
    for sample, clip in zip(samples, wav.numpy(), strict=True):
        gain = np.float32(10 ** (sample.gain_db / 20))
        sample.audio = (apply_length(clip, gen.sample_rate, length) * gain).astype(np.float32)
    params = {"steps": steps, "cfg_scale": cfg_scale, "sampler": sampler, "length": length,
              "vocoder": vocoder, "knobs": dict(knobs) if knobs else None}
    return Kit(name or slug(char or prompt), prompt, seed, gen.id, gen.sample_rate, names, round_robins,
               velocity_layers, float(relatedness), params, samples, warnings)
