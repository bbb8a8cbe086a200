"""Generate a kit: one sound per piece that share a character (the same descriptor words, related start
noise), with optional round robins and velocity layers.

Start noise of (piece p, round robin r): ``rho * base + sqrt(1 - rho^2) * own`` with ``base`` drawn from
the kit's seed and ``own`` from the pad's seed; both are standard normal and independent, so the mix is
standard normal too (what the sampler expects) and correlates ``rho`` (``relatedness``) with every other
pad. The velocity layers of one pad share its noise and differ by a prompt word (soft / hard) and a gain
(``pieces.layer_gain_db``); their renders go to the layers in the order of their brightness (``order_layers``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from sampleforge.audio.finish import apply_length, parse_length
from sampleforge.errors import ParamError, UserInputError
from sampleforge.kit.pieces import (
    KIT_DEFAULTS,
    PIECES,
    layer_gain_db,
    parse_pieces,
    velocity_ranges,
    velocity_words,
)
from sampleforge.params import MAX_SEED, SPECS, GenerationParams
from sampleforge.pipeline import Callback, Generator, candidate_seed, ringing_warnings
from sampleforge.taxonomy import CATEGORY_WORDS
from sampleforge.text.keywords import tokenize
from sampleforge.timbre import conditioned_knobs

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
    cfg_scale: float | None = None  # the guidance it was sampled with (set by build_kit)
    candidate: int | None = None  # with ``candidates``: the one its pad kept (None: none, or not asked)
    knobs: dict[str, float] = field(default_factory=dict)  # the timbre knobs it was conditioned on (build_kit)
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
        judged = (self.params.get("candidates") or 1) > 1  # each sample then says the candidate its pad kept
        return {
            "name": self.name, "prompt": self.prompt, "seed": self.seed, "model": self.model,
            "sample_rate": self.sample_rate, "pieces": self.pieces, "round_robins": self.round_robins,
            "velocity_layers": self.velocity_layers, "relatedness": self.relatedness, "params": self.params,
            "samples": [{k: v for k, v in asdict(s).items() if k != "audio" and (k != "candidate" or judged)}
                        for s in self.samples],
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


def check_pad_seeds(pad_seeds: object, pieces: Sequence[str]) -> dict[str, int]:
    """``pad_seeds`` ({piece: seed}, None for none) for a kit of ``pieces``, its seeds as ints (a numpy int is
    taken, as every seed is); UserInputError naming ``pad_seeds`` or ``pad_seeds['kick']`` otherwise."""
    if pad_seeds is None:
        return {}
    if not isinstance(pad_seeds, Mapping):
        raise ParamError("pad_seeds", f": a dict of seeds by piece ({{'snare': 7}}), got {type(pad_seeds).__name__}")
    out = {}
    for piece, value in pad_seeds.items():
        if piece not in pieces:
            raise UserInputError(f"pad_seeds: {piece!r} is not a piece of this kit ({', '.join(pieces)})")
        name = f"pad_seeds[{piece!r}]"
        if value is None:
            raise ParamError(name, f"must be {SPECS['seed'].describe()}, got None")
        try:
            out[piece] = SPECS["seed"].check(value)
        except ParamError as exc:
            raise exc.renamed(name) from None
    return out


def pad_warnings(gen: Generator, prompts: Sequence[str], knobs: Mapping[str, float] | None = None) -> list[str]:
    """The prompt warnings of a kit's pads (and of the kit's ``knobs`` on each: ``Generator.knob_warnings``), each
    once: one that only some pads' prompts give names them (a pad's prompt holds its piece's, its velocity layer's
    and the kit's words, any of which a warning may be about)."""
    pads = list(dict.fromkeys(prompts))
    said: dict[str, list[str]] = {}
    for x in pads:
        for w in [*gen.check_prompt(x), *gen.knob_warnings(x, knobs)]:
            said.setdefault(w, []).append(x)
    return [w if len(xs) == len(pads) else f"{w} (pads: {', '.join(map(repr, xs))})" for w, xs in sorted(said.items())]


def order_layers(samples: Sequence[KitSample], sample_rate: int) -> None:
    """Give the velocity layers of each pad and round robin its renders in the order of their brightness (the
    centroid of the attack's spectrum, ``timbre.measure``): the softest layer the darkest, the hardest the
    brightest, as a drum sounds when hit harder. The words alone do not order them (drums-v2, 3 layers: in a
    quarter of the pads only). A render keeps its prompt, knobs, guidance and candidate; the layer keeps its
    velocities and gain."""
    from sampleforge.timbre import measure

    pads: dict[tuple[str, int], list[KitSample]] = {}
    for s in samples:
        pads.setdefault((s.piece, s.rr), []).append(s)
    for layers in pads.values():
        layers.sort(key=lambda s: s.layer)
        renders = [(s.prompt, s.cfg_scale, s.candidate, s.knobs, s.audio) for s in layers]
        bright = [measure(audio, sample_rate)["brightness"] for *_, audio in renders]
        for s, k in zip(layers, np.argsort(bright, kind="stable"), strict=True):
            s.prompt, s.cfg_scale, s.candidate, s.knobs, s.audio = renders[int(k)]


def build_kit(
    gen: Generator,
    params: GenerationParams | None = None,
    *,
    pad_seeds: dict[str, int] | None = None,
    name: str | None = None,
    vocoder: bool = True,
    callback: Callback | None = None,
    **settings: Any,
) -> Kit:
    """Generate a kit with ``gen`` from ``settings`` (``GenerationParams`` fields by name, over ``params``,
    default ``KIT_DEFAULTS``): ``prompt`` is the character, ``pieces``, ``seed``, ``round_robins``,
    ``velocity_layers``, ``relatedness``, the timbre knobs (shared by every piece), ``length`` ("auto": each
    sound at its natural length) and the sampling settings. ``pad_seeds`` ({piece: seed}) re-rolls single pads
    (its round robins use seed, seed + 1, ...). Every sample is finished (peak 0.95), then turned down by its
    layer's gain."""
    asked = GenerationParams.from_kwargs(settings, base=params or KIT_DEFAULTS)
    p = gen.resolve(asked)
    assert p.seed is not None and p.duration is not None
    names = parse_pieces(p.pieces)
    pad_seeds = check_pad_seeds(pad_seeds, names)
    shape = gen.latent_shape(p.duration)
    words, ranges = velocity_words(p.velocity_layers), velocity_ranges(p.velocity_layers)
    char = character(p.prompt)

    base = gen.start_noise([p.seed], shape)[0]
    mix = math.sqrt(max(0.0, 1.0 - p.relatedness**2))
    samples: list[KitSample] = []
    noises: list[torch.Tensor] = []
    for i, piece in enumerate(names):
        for r in range(p.round_robins):
            own_seed = (pad_seeds[piece] + r) % (MAX_SEED + 1) if pad_seeds and piece in pad_seeds \
                else pad_seed(p.seed, i * p.round_robins + r)
            noise = p.relatedness * base + mix * gen.start_noise([own_seed], shape)[0]
            for layer in range(p.velocity_layers):
                text = " ".join(w for w in (PIECES[piece].words, words[layer], char) if w)
                samples.append(KitSample(piece, layer, r, text, own_seed, ranges[layer],
                                         layer_gain_db(layer, p.velocity_layers)))
                noises.append(noise)
    prompts = [s.prompt for s in samples]
    warnings = pad_warnings(gen, prompts, p.knobs()) + gen.settings_warnings(p)
    cond, uncond = gen.condition(prompts, p.knobs())
    scales = gen.cfg_scales(prompts, asked)  # a piece whose words set no knob may take the model's firmer scale
    seeds = [s.seed for s in samples]
    if (p.candidates or 1) > 1:  # a pad's velocity layers share a noise: they keep one candidate together

        def candidate_noises(clips: Sequence[int], j: int) -> torch.Tensor:
            own = gen.start_noise([candidate_seed(seeds[k], j) for k in clips], shape)
            return p.relatedness * base + mix * own

        pads = [names.index(s.piece) * p.round_robins + s.rr for s in samples]
        picked, kept, said = gen.judged(p, prompts, seeds, torch.stack(noises), cond, uncond, scales,
                                        vocoder=vocoder, callback=callback, groups=pads, noises=candidate_noises)
        rendered, warnings = picked, warnings + said
        for sample, j in zip(samples, kept, strict=True):
            sample.candidate = j
    else:
        rendered = gen.render(p, cond, uncond, torch.stack(noises), seeds, vocoder=vocoder, callback=callback,
                              cfg_scales=scales)
    wav = rendered.audio
    warnings += ringing_warnings(rendered.raw, [s.piece for s in samples], p.duration, gen.sample_rate)
    length = parse_length(p.length)
    for sample, clip, scale in zip(samples, wav.numpy(), scales, strict=True):
        sample.cfg_scale = scale
        sample.knobs = conditioned_knobs(gen, sample.prompt, p.knobs())
        sample.audio = apply_length(clip, gen.sample_rate, length)
    order_layers(samples, gen.sample_rate)
    for sample in samples:
        sample.audio = (sample.audio * np.float32(10 ** (sample.gain_db / 20))).astype(np.float32)
    cfg: float | list[float] = scales[0] if len(set(scales)) == 1 else sorted(set(scales))
    used = {"steps": p.steps, "cfg_scale": cfg, "sampler": p.sampler, "length": p.length,
            "duration": p.duration, "vocoder": vocoder, "knobs": p.knobs() or None, "candidates": p.candidates}
    return Kit(name or slug(char or p.prompt), p.prompt, p.seed, gen.id, gen.sample_rate, names, p.round_robins,
               p.velocity_layers, p.relatedness, used, samples, warnings)
