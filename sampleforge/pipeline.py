"""Generation: prompts → keyword ids → condition → latent diffusion → log-mel → waveform → finished one-shots.

``Generator.from_pretrained("drums-v1").generate(["punchy 808 kick"], n=4, seed=1) -> Tensor (4, 88200)``.
A Generator holds only its (read-only) networks, so one instance can serve concurrent jobs.

The same path (``render``) serves audio-to-audio: ``vary`` encodes a clip (finished like the training data →
log-mel → VAE posterior mean), noises it to ``strength`` and runs the last part of the sampler from there;
``morph`` walks between two sources (prompt + seed, optionally a clip) with spherical interpolation of the
start noise and linear interpolation of the condition and the clip latents.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from sampleforge.audio.finish import finish, ring_at_end
from sampleforge.audio.griffinlim import GriffinLim
from sampleforge.audio.mel import MelSpectrogram
from sampleforge.backends.base import (
    BackendOptions,
    Batch,
    Generation,
    ParamSpace,
    RunMixin,
    model_defaults,
    refuse_call_settings,
)
from sampleforge.bundle import DEFAULT_MODEL, Bundle, load_bundle, model_id
from sampleforge.devices import torch_device
from sampleforge.diffusion.samplers import DISTILLED_SAMPLERS, FLOW_SAMPLERS, SAMPLERS
from sampleforge.diffusion.sampling import generate_latents
from sampleforge.errors import ParamError, UserInputError
from sampleforge.params import DEFAULTS, MAX_SEED, PRECISIONS, SPECS, GenerationParams
from sampleforge.text.keywords import classes_named, keywords
from sampleforge.timbre import KEYWORD_MIN_CLIPS, WORD_KNOBS, keyword_weight, knobs_from_words, pairs_leaving

Callback = Callable[[int, int], None]


MAX_DURATION = 10.0  # seconds: sampleforge models make one-shots
NATIVE_PRECISIONS = ("fp32", "bf16")


@dataclass
class MorphEnd:
    """One end of a morph: a prompt, a seed (None: the settings' seed, or the other end's + 1) and optionally a
    clip (T,) at the model's sample rate."""

    prompt: str = ""
    seed: int | None = None
    audio: Any = None


def check_end(end: object, name: str) -> MorphEnd:
    """``end`` as the morph end ``name`` ("a" or "b"), its seed an int (a numpy int is taken, as every seed is);
    ParamError naming ``a``, ``a.prompt`` or ``a.seed`` when it is not a MorphEnd, its prompt is not text or its
    seed is not a seed: before a model works on it."""
    if not isinstance(end, MorphEnd):
        raise ParamError(name, f": a MorphEnd (MorphEnd('kick', 1)), got {type(end).__name__} {str(end)[:40]!r}")
    try:
        prompt, seed = SPECS["prompt"].check(end.prompt), SPECS["seed"].check(end.seed)
    except ParamError as exc:
        raise exc.renamed(f"{name}.{exc.name}") from None
    return dataclasses.replace(end, prompt=prompt, seed=seed)


def slerp(a: Tensor, b: Tensor, t: float) -> Tensor:
    """Spherical interpolation between two noise tensors of one shape (flattened angle); exact at t = 0 and 1,
    linear when they are (anti)parallel. Keeps a Gaussian's norm where a linear mix would shrink it."""
    if t == 0.0:
        return a.clone()
    if t == 1.0:
        return b.clone()
    af, bf = a.flatten().double(), b.flatten().double()
    cos = torch.dot(af, bf) / (af.norm() * bf.norm()).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    if float(torch.sin(omega).abs()) < 1e-6:
        return torch.lerp(a, b, t)
    wa = torch.sin((1 - t) * omega) / torch.sin(omega)
    wb = torch.sin(t * omega) / torch.sin(omega)
    return (wa * a.double() + wb * b.double()).to(a.dtype)


JUDGES = ("classifier-v2", "classifier-v1")  # the shipped drum judges that keep candidates (``Generator.judges``)
CANDIDATE_STRIDE = 1_000_003  # candidate j of a clip: its seed + j x this, far from the seeds of a batch's clips
QUICK_GL_ITERS = 4  # Griffin-Lim iterations of the quick rendering a held-back keyword's candidates are judged by first


def morph_seeds(a_seed: int | None, b_seed: int | None, seed: int) -> tuple[int, int]:
    """A morph's two ends' seeds: ``a_seed`` (default ``seed``, the settings'), ``b_seed`` (default ``a_seed + 1``)."""
    sa = a_seed if a_seed is not None else seed
    return sa, b_seed if b_seed is not None else (sa + 1) % (MAX_SEED + 1)


def check_vocoder(vocoder: object) -> None:
    """A ``vocoder`` setting is True (the model's own) or False (Griffin-Lim): ParamError naming it otherwise."""
    if not isinstance(vocoder, bool):
        raise ParamError("vocoder", f": True (the model's own) or False (Griffin-Lim), got {vocoder!r}; another "
                         "vocoder is loaded with the model: Generator.from_pretrained('drums-v2+drums-vocoder-v1')")


def candidate_seed(seed: int, j: int) -> int:
    """The seed of candidate ``j`` (1, 2, ...) of a clip with ``seed`` (``candidates``); candidate 0 is the clip's."""
    return (seed + j * CANDIDATE_STRIDE) % (MAX_SEED + 1)


def not_judged(p: GenerationParams, what: str) -> None:
    """Refuse ``candidates`` for ``what`` (variations, morphs): only ``generate`` and kits judge their clips."""
    if (p.candidates or 1) > 1:
        raise ParamError("candidates", f": {what} are not judged (generate and kit judge their clips)")


def candidates_note(prompt: str, kept: Sequence[int | None], candidates: int, judged: bool) -> str | None:
    """What ``candidates`` did to a prompt's clips (``kept``: the candidate each kept, None where none was), in one
    line; None when every clip kept one. ``judged``: whether the drum judges know the class the prompt names."""
    if not judged:
        return f"candidates: {prompt!r} names no drum class the judges know; its clips are not judged"
    missed = sum(1 for j in kept if j is None)
    if not missed:
        return None
    return (f"candidates: for {missed} of {len(kept)} clips of {prompt!r} none of {candidates} candidates was heard "
            "as its class by the drum judges; those are the model's own clips")


class Rendered(NamedTuple):
    """What ``Generator.render`` returns, on the CPU: finished audio (B, samples), latents (B, C, W), mels
    (B, 128, F) and the waveform before finishing (B, samples)."""

    audio: Tensor
    latents: Tensor
    mels: Tensor
    raw: Tensor

    def clips(self) -> list[Rendered]:
        """Each clip of the batch alone (a batch of one)."""
        return [Rendered(*(x[k:k + 1] for x in self)) for k in range(self.audio.shape[0])]

    def generation(self, prompts: list[str], seeds: list[int], params: GenerationParams, warnings: list[str],
                   sample_rate: int, cfg_scales: Sequence[float] | None = None) -> Generation:
        """The ``Generation`` of these clips, with a warning for the prompts whose clips ring past their end."""
        assert params.duration is not None
        mixed = list(cfg_scales) if cfg_scales is not None and len(set(cfg_scales)) > 1 else None
        warnings = warnings + ringing_warnings(self.raw, prompts, params.duration, sample_rate)
        return Generation(audio=self.audio, prompts=prompts, seeds=seeds, params=params, warnings=warnings,
                          latents=self.latents, mels=self.mels, raw=self.raw, cfg_scales=mixed)


RINGS_DB = -45.0  # a tail this loud (RMS re the clip's peak) where the clip ends is heard as cut short


def ringing_warnings(raw: Tensor, prompts: Sequence[str], duration: float, sample_rate: int) -> list[str]:
    """A warning for each prompt whose clips (``raw``: (B, samples), before finishing) still sound at
    ``RINGS_DB`` or louder where they end: their tail is faded out over the clip's last 0.3 s, and a longer
    duration would keep it (a crash or ride rings longer than a 2-s clip)."""
    if raw.numel() == 0:
        return []
    levels = np.atleast_1d(ring_at_end(raw.detach().cpu().float().numpy(), sample_rate))
    out = []
    for prompt in dict.fromkeys(prompts):
        of = [float(levels[i]) for i, x in enumerate(prompts) if x == prompt]
        loud = [level for level in of if level >= RINGS_DB]
        if loud:
            some = f"{len(loud)} of {len(of)} clips, " if len(of) > 1 else ""
            out.append(f"{prompt!r} still rings where its {duration:g}-s clip ends ({some}{max(loud):.0f} dB re its "
                       "peak): faded out over the last 0.3 s; a longer duration (the duration setting) keeps its tail")
    return out


class Generator(RunMixin):
    """A loaded sampleforge model ready to generate (the ``sampleforge`` backend). Stateless between calls."""

    kind = "sampleforge"
    quick_screen = True  # ``judged``: a held-back keyword's candidates are heard by a quick Griffin-Lim first

    def __init__(self, bundle: Bundle, device: torch.device | str | None = None, precision: str | None = None,
                 quantize: str = "none") -> None:
        self.precision: str = SPECS["precision"].check(precision) or PRECISIONS[0]
        if self.precision not in NATIVE_PRECISIONS:
            raise ParamError("precision", f": sampleforge models run in {' or '.join(NATIVE_PRECISIONS)}, "
                             f"got {self.precision}")
        self.device = torch_device(device)
        if SPECS["quantize"].check(quantize) == "int8":
            from sampleforge.backends.memory import quantize_int8

            if self.device.type != "cpu":
                raise ParamError("quantize", ": int8 quantisation runs on the CPU only (use --device cpu)")
            bundle.unet = quantize_int8(bundle.unet)  # type: ignore[assignment]
        self.bundle = bundle.to(self.device)
        self._judges: tuple[Any, ...] | None = None  # the drum judges of ``candidates``, loaded when first asked for
        cfg = bundle.config
        # what a server lists and a request names: the model's name, and the vocoder asked for in place of its
        # own as MODEL+VOCODER spells it (drums-v2+drums-vocoder-v1, drums-v2+griffin-lim)
        self.name = cfg.name if bundle.vocoder_name is None else f"{cfg.name}+{bundle.vocoder_name}"
        self.id = model_id(bundle.path) if bundle.path is not None else cfg.name
        if bundle.vocoder_id is not None:  # files and their names tell the waveform's maker apart
            self.id = f"{self.id}+{bundle.vocoder_id}"
        self.sample_rate = cfg.sample_rate
        flow = cfg.diffusion.prediction == "flow"
        self.samplers = tuple(name for name in SAMPLERS  # the first: the default
                              if (name in FLOW_SAMPLERS) == flow and name not in DISTILLED_SAMPLERS)
        self.alphas_cumprod = cfg.diffusion.alphas_cumprod().to(self.device)
        gl = cfg.griffin_lim
        self.griffin_lim = GriffinLim(cfg.mel, n_iter=gl.n_iter, momentum=gl.momentum, init=gl.init,
                                      mel_iters=gl.mel_iters).to(self.device)
        self.mel = MelSpectrogram(cfg.mel).to(self.device)

    @classmethod
    def from_pretrained(
        cls,
        path_or_name: str | os.PathLike[str] = DEFAULT_MODEL,
        device: torch.device | str | None = None,
        components: dict[str, Path | None] | None = None,
        precision: str | None = None,
    ) -> Any:
        """Load a model folder or a shipped model by name (``components`` overrides single weight files), or
        ``MODEL+VOCODER``: that model with that vocoder (a ``components`` vocoder as well is a UserInputError).
        ``precision="bf16"``: the U-Net runs under bfloat16 autocast (see ``GenerationParams.precision``).
        Other people's models (a diffusers folder, ``hf:OWNER/NAME``, an audio-diffusion-pytorch ``.ckpt``)
        load through ``backends.load_backend`` and answer the same calls."""
        from sampleforge.backends.resolve import resolve

        ref = resolve(path_or_name)
        if components is None and ref.format != "sampleforge":
            from sampleforge.backends import load_backend

            return load_backend(path_or_name, BackendOptions(device=None if device is None else str(device),
                                                             precision=precision or PRECISIONS[0]))
        return cls(load_bundle(ref.path, components=ref.with_components(components)), device, precision)

    @classmethod
    def from_options(cls, path_or_name: str | os.PathLike[str], options: BackendOptions,
                     components: dict[str, Path | None] | None = None) -> Generator:
        """Load with the backend options (precision fp32/bf16, int8 quantisation of the U-Net on the CPU)."""
        return cls(load_bundle(path_or_name, components=components), options.device, options.precision,
                   options.quantize)

    # -- the backend interface -------------------------------------------------------------------------
    @property
    def space(self) -> ParamSpace:
        """Samplers (DDPM or flow, as the model was trained), durations and defaults (a model config may name
        its own guidance scale)."""
        own_cfg = self.bundle.config.diffusion.cfg_scale
        return ParamSpace(samplers=self.samplers, min_duration=float(SPECS["duration"].ge or 0.1),
                          max_duration=MAX_DURATION, default_duration=float(self.bundle.config.duration),
                          default_steps=int(SPECS["steps"].own),
                          default_cfg=float(SPECS["cfg_scale"].own if own_cfg is None else own_cfg),
                          settings=("candidates",))

    def describe(self) -> dict[str, Any]:
        out = {"kind": self.kind, "format": "sampleforge", "path": str(self.bundle.path), "id": self.id,
               "sample_rate": self.sample_rate, "precision": self.precision, "space": self.space.as_dict()}
        plain = self.bundle.config.diffusion.cfg_scale_no_knobs
        if plain is not None:
            out["cfg_scale_no_knobs"] = plain  # the default for a prompt that sets no timbre knob
        return out

    # -- prompts ---------------------------------------------------------------------------------------
    def vocab(self) -> dict[str, int]:
        """Keyword → count in the training data."""
        return dict(self.bundle.vocab.counts)

    def check_prompt(self, prompt: str) -> list[str]:
        """Warnings for a prompt (unknown keywords are reported, never silently dropped; near misses get a
        "did you mean"; no known word, two classes, thinly supported descriptors, and a word that the model's
        ``word_reach`` or ``pair_reach`` says take the class out of itself, and a keyword its ``keyword_reach``
        holds back, are said)."""
        knobs = set(self.bundle.config.text.knobs)
        measured = {w for table in self.bundle.class_words.values() for w, v in table.items() if set(v) & knobs}
        knob_words = sorted({w for w, v in WORD_KNOBS.items() if set(v) & knobs} | measured)
        words = keywords(prompt)
        category = self._one_class(words)
        b = self.bundle
        held = b.keyword_reach.get(category or "", {})
        out = b.vocab.prompt_warnings(prompt, b.config.text.max_tokens, knob_words,  # a measured reach, not a count
                                      measured={w for w, f in held.items() if f is not None})
        if category is None:
            return out
        leaving = b.word_reach.get(category, {})
        name = category.replace("_", " ")
        out += [f"{w!r} takes a {name} out of its class with this model (the drum judge says so, whatever its "
                "knobs: sampleforge eval word-reach); expect other sounds"
                for w in words if w in leaving and leaving[w] is None]
        out += [f"{w!r} at full strength takes a {name} out of its class with this model (the drum judge says so: "
                "sampleforge eval keyword-reach); " + (f"it is given at {held[w]:.0%}" if held[w] else "it is left out")
                + f", unless the candidates setting finds a render nearer full strength that the drum judges still hear "
                f"as a {name}"
                for w in self.model_words(prompt).split() if keyword_weight([w], category, b.keyword_reach)]
        pairs = pairs_leaving(words, category, b.class_words, b.knob_limits, b.word_reach, b.pair_reach)
        return out + [f"{', '.join(map(repr, together[:-1]))} and {together[-1]!r} together take a {name} out of its "
                      "class with this model (the drum judge says so, even with their knobs at the middle: "
                      "sampleforge eval pair-reach); expect other sounds" for together in pairs]

    def knob_warnings(self, prompt: str, knobs: Mapping[str, float | None] | None) -> list[str]:
        """A warning for each knob value given (not a word's, which the model holds in range) that lies outside
        the range where the model keeps the prompt's class (``knob_limits``, measured by ``eval knob-limits``):
        it is used as given, and the clips may be other sounds."""
        category = self._one_class(keywords(prompt))
        limits = self.bundle.knob_limits.get(category or "", {})
        out = []
        for knob, value in sorted((knobs or {}).items()):
            if value is None or knob not in limits or limits[knob][0] <= value <= limits[knob][1]:
                continue
            assert category is not None
            name, (low, high) = category.replace("_", " "), limits[knob]
            out.append(f"{knob} {value:g} on a {name}: outside {low:g}-{high:g}, where this model keeps a {name} (the "
                       "drum judge says so: sampleforge eval knob-limits); a value given is used as given, expect "
                       "other sounds")
        return out

    def knob_values(self, prompt: str, knobs: Mapping[str, float | None] | None = None, *, word_reach: bool = True,
                    pair_reach: bool | Mapping[str, Mapping[str, float | None]] = True, three_words: bool = True
                    ) -> dict[str, float]:
        """The timbre knobs a prompt asks for: ``knobs`` given explicitly, then those its words stand for
        (``timbre.WORD_KNOBS``, within the model's ``knob_limits``, ``word_reach`` and ``pair_reach`` for the
        class, its corners of three knobs with ``three_words``; a reach measurement leaves out the one it
        measures, or gives another ``pair_reach`` table); only the knobs this model was trained with. Unset knobs
        are absent."""
        b = self.bundle
        names = b.config.text.knobs
        if not names:
            return {}
        words = keywords(prompt)
        values = knobs_from_words(words, knobs, self._one_class(words), b.class_words, b.knob_limits,
                                  b.word_reach if word_reach else None,
                                  b.pair_reach if pair_reach is True else pair_reach or None, three_words=three_words)
        return {k: v for k, v in values.items() if k in names}

    @staticmethod
    def _one_class(words: Sequence[str]) -> str | None:
        """The one class a prompt's words name (its knob limits and reaches apply), or None for none or two (a
        blend). A family word or an instrument name alone ("hat", "tambourine") names none here: read as its class,
        its word's measured knobs for that class would replace the keyword that carries the sound
        (docs/runs/drums-v2/class-from-instrument-words-seed5000.json)."""
        named = classes_named(words)
        return named[0] if len(named) == 1 else None

    def model_words(self, prompt: str) -> str:
        """The prompt's words the keyword encoder gets. A word that stands for knobs is left to its knobs when
        fewer than ``KEYWORD_MIN_CLIPS`` training clips carry it (of the class asked for, for a word the model
        measured for that class): a word on a handful of clips carries their sound, not its meaning. A model
        without knobs gets every word."""
        knobs = set(self.bundle.config.text.knobs)
        if not knobs:
            return prompt
        words = keywords(prompt)
        category = self._one_class(words)
        own = self.bundle.class_words.get(category or "", {})
        vocab = self.bundle.vocab

        def knob_only(w: str) -> bool:
            if category is not None and set(own.get(w, {})) & knobs:
                return vocab.classes.get(w, {}).get(category, 0) < KEYWORD_MIN_CLIPS
            return bool(set(WORD_KNOBS.get(w, {})) & knobs) and vocab.counts.get(w, 0) < KEYWORD_MIN_CLIPS

        return " ".join(w for w in words if not knob_only(w))

    @torch.inference_mode()
    def condition(
        self, prompts: Sequence[str], knobs: Mapping[str, float | None] | None = None, *, keyword_reach: bool = True
    ) -> tuple[Tensor, Tensor]:
        """prompts (+ timbre knobs for all of them) → (cond (B, D), uncond (B, D)). A keyword the model's
        ``keyword_reach`` holds back for the prompt's class is given part of its conditioning
        (``timbre.keyword_weight``), unless ``keyword_reach`` is False (every keyword at full strength)."""
        words = [self.model_words(p) for p in prompts]
        names = self.bundle.config.text.knobs
        table = None
        if names:
            rows = []
            for prompt in prompts:
                values = self.knob_values(prompt, knobs)
                rows.append([values.get(k, float("nan")) for k in names])
            table = torch.tensor(rows, dtype=torch.float32, device=self.device)  # (B, K), NaN = unset
        cond = self._encode(words, table)
        reach = self.bundle.keyword_reach if keyword_reach else {}
        held = {i: h for i, (p, w) in enumerate(zip(prompts, words, strict=True))
                if (h := keyword_weight(w.split(), self._one_class(keywords(p)), reach))}
        if held:
            rows_held = list(held)
            without = self._encode([" ".join(held[i][0]) for i in rows_held],
                                   None if table is None else table[rows_held])
            weight = torch.tensor([held[i][1] for i in rows_held], dtype=cond.dtype, device=cond.device)
            cond = cond.clone()
            cond[rows_held] = without + weight.unsqueeze(1) * (cond[rows_held] - without)
        return cond, self.bundle.text.null(len(prompts))

    def _encode(self, words: Sequence[str], table: Tensor | None) -> Tensor:
        """The keyword encoder on prompts' model words (and knob rows, for a model with knobs) → cond (B, D)."""
        ids, _ = self.bundle.vocab.encode_batch(list(words), self.bundle.config.text.max_tokens)
        ids = ids.to(self.device)
        return self.bundle.text(ids) if table is None else self.bundle.text(ids, table)

    @contextlib.contextmanager
    def with_timbre(self, **entries: Any) -> Iterator[Generator]:
        """Generation as if the model's timbre.json held ``entries`` (tables by key) for the block: a measurement
        tries the tables it measures (``eval keyword-reach`` a keyword at several weights). Not for concurrent use."""
        saved = self.bundle.timbre
        self.bundle.timbre = {**saved, **entries}
        try:
            yield self
        finally:
            self.bundle.timbre = saved

    # -- stages ----------------------------------------------------------------------------------------
    def frames(self, duration: float) -> tuple[int, int]:
        """(samples, mel frames) for a clip of ``duration`` seconds."""
        samples = int(round(duration * self.sample_rate))
        return samples, self.bundle.config.mel.frames(samples)

    @torch.inference_mode()
    def decode(self, latents: Tensor, frames: int) -> Tensor:
        """scaled latents (B, C, W) → log-mel (B, 128, frames)."""
        return self.bundle.vae.decode(latents, frames)

    @torch.inference_mode()
    def vocode(self, mel: Tensor, samples: int, vocoder: bool = True) -> Tensor:
        """log-mel (B, 128, F) → waveform (B, samples); Griffin-Lim when ``vocoder`` is False or absent."""
        if vocoder and self.bundle.vocoder is not None:
            return self.bundle.vocoder(mel, length=samples)
        return self.griffin_lim(mel, length=samples)

    # -- the whole thing -------------------------------------------------------------------------------
    def resolve(self, params: GenerationParams) -> GenerationParams:
        """Fill the settings left to the model (steps, cfg scale, sampler, duration, precision) and a random
        seed if none."""
        p = dataclasses.replace(
            params.with_seed(),
            **{**model_defaults(self.space, params), "cfg_scale": self.cfg_scales([params.prompt], params)[0]},
            sampler=params.sampler or self.samplers[0],
            duration=params.duration if params.duration is not None else self.bundle.config.duration,
            precision=params.precision or self.precision,
        )
        assert p.duration is not None
        if p.sampler not in self.samplers:
            raise ParamError("sampler", self._unfit_sampler(p.sampler))
        if p.duration > MAX_DURATION:
            raise ParamError("duration", f"must be at most {MAX_DURATION:g} seconds for sampleforge models, "
                             f"got {p.duration:g}")
        if p.precision not in NATIVE_PRECISIONS:
            raise ParamError("precision", f": sampleforge models run in {' or '.join(NATIVE_PRECISIONS)}")
        unused = [n for n in ("init_audio", "init_noise", "mask_start", "mask_end") if getattr(p, n) is not None]
        if unused:
            who = "Stable Audio 3 does" if unused[0].startswith("mask") else \
                "Stable Audio 3 and Stable Audio Open Small do; for variations of a clip use `vary`"
            raise ParamError(unused[0], f": sampleforge models do not take it ({who})")
        return p

    def _unfit_sampler(self, name: str | None) -> str:
        """Why sampler ``name`` is not one of this model's (``samplers``), listing them."""
        own = ", ".join(self.samplers)
        if name not in SAMPLERS:
            return f": {name!r} is for other people's models (diffusers pipelines); this model's samplers: {own}"
        if name in DISTILLED_SAMPLERS:
            return f": {name!r} is for distilled flow models; this model's samplers: {own}"
        return f"{name!r} does not fit a {self.bundle.config.diffusion.prediction!r} model (use one of: {own})"

    def plan(self, params: GenerationParams, prompts: Sequence[str] | None = None) -> Batch:
        """``RunMixin.plan``, with the guidance scale the batch's prompts run at when they share one (``cfg_scales``:
        the batch's prompts, not ``params.prompt``), as ``run`` and its ``Generation`` say it."""
        planned = super().plan(params, prompts)
        scales = set(self.cfg_scales(planned.prompts, params))
        if len(scales) == 1:
            return dataclasses.replace(planned, params=dataclasses.replace(planned.params, cfg_scale=scales.pop()))
        return planned

    def cfg_scales(self, prompts: Sequence[str], params: GenerationParams) -> list[float]:
        """The guidance scale of each prompt: ``params.cfg_scale`` when given, else the model's own, which for a
        prompt that sets no timbre knob (by value or by word) is ``diffusion.cfg_scale_no_knobs`` if the model
        names one."""
        if params.cfg_scale is not None:
            return [float(params.cfg_scale)] * len(prompts)
        default, plain = self.space.default_cfg, self.bundle.config.diffusion.cfg_scale_no_knobs
        if plain is None:
            return [default] * len(prompts)
        knobs = params.knobs()
        own = {x: default if self.knob_values(x, knobs) else float(plain) for x in dict.fromkeys(prompts)}
        return [own[x] for x in prompts]

    def settings(self, params: GenerationParams | None, settings: Mapping[str, Any],
                 takes: Sequence[str] | None = None) -> GenerationParams:
        """``settings`` by name or alias over ``params`` (default: the defaults), resolved for this model. With
        ``takes`` (the call's own settings), one a call cannot apply (``refuse_call_settings``) is a ParamError."""
        p = GenerationParams.from_kwargs(settings, base=params or DEFAULTS)
        if takes is not None:
            refuse_call_settings(settings, p, takes)
        return self.resolve(p)

    def settings_warnings(self, p: GenerationParams) -> list[str]:
        """What settings this model cannot honour: timbre knobs on a model without them, stereo from a mono one."""
        knobs = p.knobs()
        out = []
        if knobs and not self.bundle.config.text.knobs:
            out.append(f"model {self.name!r} has no timbre knobs: {', '.join(sorted(knobs))} ignored")
        if p.channels == "stereo" and self.space.channels == 1:
            out.append(f"model {self.name!r} makes mono clips: channels 'stereo' ignored")
        return out

    def start_noise(self, seeds: Sequence[int], shape: Sequence[int]) -> Tensor:
        """Start noise (B, *shape): row k from a generator seeded ``seeds[k]`` (on the CPU: the same on every device)."""
        return torch.stack([torch.randn(tuple(shape), generator=torch.Generator().manual_seed(s)) for s in seeds])

    def latent_shape(self, duration: float) -> tuple[int, int]:
        """One clip's latent shape (C, W) at ``duration`` seconds."""
        return self.bundle.config.vae.latent_shape(self.frames(duration)[1])

    @torch.inference_mode()
    def encode(self, audio: Sequence[Any], duration: float | None = None, fit_steps: int = 0) -> Tensor:
        """Clips at the model's sample rate, each (T,) numpy or torch (or a file path, see ``clip``) → scaled
        latents (B, C, W).

        Each clip is finished like the training data (DC, onset at 1.5 ms, peak 0.95, cut or padded to
        ``duration``, default the model's) and encoded to its VAE posterior mean, then ``fit_steps`` steps of
        ``fit_latents`` bring its decoded mel closer to the clip's."""
        duration = self.bundle.config.duration if duration is None else duration
        samples, frames = self.frames(duration)
        rows = []
        for k, clip in enumerate(audio):
            x = self.clip(clip, f"input audio {k}")
            if x.ndim != 1 or x.shape[0] == 0 or not np.isfinite(x).all():
                raise UserInputError(f"input audio {k}: expected a finite mono clip (T,), got shape {x.shape}")
            rows.append(finish(x, self.sample_rate, normalize="peak", length=samples))
        if not rows:
            raise UserInputError("input audio: no clip given")
        wav = torch.from_numpy(np.stack(rows)).to(self.device)
        mel = self.mel(wav)[..., :frames]
        if fit_steps <= 0:
            return self.bundle.vae.encode(mel).float()
        # each clip alone: a clip gives the same latent whatever it is encoded with (a morph's end and its variation;
        # in a batch, float rounding differs, and fifty steps of a fit grow it)
        return torch.cat([self.fit_latents(self.bundle.vae.encode(mel[i : i + 1]).float(), mel[i : i + 1], fit_steps)
                          for i in range(len(rows))])

    FIT_LR = 0.05  # Adam's step on the scaled latents (about unit variance)
    FIT_FLOOR_DB = 60.0  # the mel within this of its peak counts 11x the rest in the fit

    def fit_latents(self, latents: Tensor, mel: Tensor, steps: int) -> Tensor:
        """Scaled latents (B, C, W) moved by ``steps`` Adam steps so that their decoded log-mel comes closer to
        ``mel`` (B, 128, F), the sound's part above its floor weighted most. The encoder's posterior mean loses
        what its training clips rarely held: a held-out kick's sub below 120 Hz (its 12 lowest bands 15 dB off;
        on 56 clips of two held-out kits, 7.2 dB off there and 4.8 dB over all bands, 3.6 and 3.1 dB after 50
        steps). The networks' weights do not change."""
        frames = mel.shape[-1]
        with torch.inference_mode(False), torch.enable_grad():
            target = mel.detach().clone().float()
            z = latents.detach().clone().requires_grad_(True)
            peak = target.amax(dim=(1, 2), keepdim=True)
            weight = 0.1 + (target > peak - self.FIT_FLOOR_DB / (20 / math.log(10))).float()
            opt = torch.optim.Adam([z], lr=self.FIT_LR)
            for _ in range(steps):
                loss = ((self.bundle.vae.decode(z, frames) - target).abs() * weight).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        return z.detach()

    def clip(self, audio: Any, name: str = "input audio") -> np.ndarray:
        """A clip as float32 samples: a numpy array, a tensor, a list, or a file path (read at the model's sample
        rate; AudioReadError names the file). UserInputError naming ``name`` for anything else."""
        if isinstance(audio, (str, os.PathLike)):
            from sampleforge.audio.io import read_audio

            return read_audio(audio, self.sample_rate)
        if isinstance(audio, Tensor):
            return audio.detach().cpu().float().numpy()
        try:
            return np.asarray(audio, np.float32)
        except (TypeError, ValueError):
            raise UserInputError(f"{name}: a mono clip (T,) of samples or a file path, got "
                                 f"{type(audio).__name__}") from None

    def cut_warnings(self, audio: Sequence[Any], duration: float, names: Sequence[str] = ("the input",)) -> list[str]:
        """A warning for each clip (T,) that sounds (within 60 dB of its peak) for longer than ``duration``: ``encode``
        keeps its first ``duration`` seconds from the onset and the rest is not heard."""
        out = []
        for clip, name in zip(audio, names, strict=True):
            x = np.abs(clip.detach().cpu().float().numpy() if isinstance(clip, Tensor) else np.asarray(clip, np.float32))
            ok = x.size > 0 and bool(np.isfinite(x).all()) and x.max() > 0
            loud = np.flatnonzero(x >= 1e-3 * x.max()) if ok else np.zeros(0, np.int64)
            seconds = (loud[-1] - loud[0] + 1) / self.sample_rate if loud.size else 0.0
            if seconds > duration + 0.05:
                out.append(f"{name} sounds for {seconds:.1f} s: the model hears its first {duration:g} s from the "
                           "onset (the duration setting)")
        return out

    @torch.inference_mode()
    def render(
        self,
        p: GenerationParams,
        cond: Tensor,
        uncond: Tensor,
        noise: Tensor,
        seeds: Sequence[int],
        *,
        vocoder: bool = True,
        callback: Callback | None = None,
        normalize: str | None = "peak",
        init: Tensor | None = None,
        strength: float = 1.0,
        cfg_scales: Sequence[float] | None = None,
        waveform: bool = True,
    ) -> Rendered:
        """The one sampling path, for resolved settings ``p``: cond/uncond (B, D), start noise (B, C, W),
        per-clip ``seeds`` for the sampler's later draws, optional ``init`` latents (B, C, W) at ``strength``
        and per-clip guidance scales (``cfg_scales``, default ``p.cfg_scale`` for all) → audio (B, samples),
        latents, mels and the raw waveform, on the CPU. Audio gets the natural tail (``finish(tail="natural")``).
        ``waveform`` False stops at the mels (audio and raw empty; ``sounded`` makes them)."""
        assert p.duration is not None and p.sampler is not None and p.steps is not None
        scale = p.cfg_scale if cfg_scales is None else cfg_scales  # None in p: a morph between two ends' scales
        assert scale is not None
        check_vocoder(vocoder)
        samples, frames = self.frames(p.duration)
        shape = self.bundle.config.vae.latent_shape(frames)
        generators = [torch.Generator(device=self.device).manual_seed(s) for s in seeds]
        dcfg = self.bundle.config.diffusion
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=p.precision == "bf16"):
            latents = generate_latents(
                self.bundle.unet, cond, uncond, shape,
                alphas_cumprod=self.alphas_cumprod, prediction=dcfg.prediction, steps=p.steps, sampler=p.sampler,
                cfg_scale=scale, schedule=dcfg.sampling_schedule,
                eta=p.eta, steps_offset=p.steps_offset, flow_shift=p.flow_shift, generator=generators,
                callback=callback, noise=noise.to(self.device), init=None if init is None else init.to(self.device),
                strength=strength,
            )
        latents = latents.float()
        mels = self.decode(latents, frames)
        if not waveform:
            return Rendered(torch.zeros(0), latents.cpu(), mels.cpu(), torch.zeros(0))
        return self.sounded(latents, mels, samples, vocoder=vocoder, normalize=normalize)

    def sounded(self, latents: Tensor, mels: Tensor, samples: int, *, vocoder: bool = True,
                normalize: str | None = "peak", griffin_lim: GriffinLim | None = None) -> Rendered:
        """Decoded ``mels`` (B, 128, F) of ``latents`` → ``Rendered`` with ``samples`` of audio: the vocoder (or
        ``griffin_lim``, when given), then ``finish`` as ``render`` does."""
        mels = mels.to(self.device)
        raw = (self.vocode(mels, samples, vocoder) if griffin_lim is None else griffin_lim(mels, length=samples)).float()
        wav = torch.nan_to_num(raw, nan=0.0, posinf=0.0, neginf=0.0)
        if normalize:
            wav = finish(wav, self.sample_rate, normalize=normalize, length=samples, tail="natural")
        return Rendered(wav.cpu(), latents.cpu(), mels.cpu(), raw.cpu())

    @torch.inference_mode()
    def run(
        self,
        params: GenerationParams,
        prompts: Sequence[str] | None = None,
        vocoder: bool = True,
        callback: Callback | None = None,
        normalize: str | None = "peak",
        noise: Tensor | None = None,
    ) -> Generation:
        """``params.count`` clips for each of ``prompts`` (default: ``[params.prompt]``), prompt-major.

        Clip k of the batch uses seed ``params.seed + k`` (its start noise and every later draw), so a batch
        equals generating each clip alone with its seed, for every sampler, up to float rounding (batched
        convolutions sum in another order: ~1e-5 in the mel, which Griffin-Lim can grow to ~1e-3).
        """
        planned = self.plan(params, prompts)
        p, batch, seeds = planned.params, planned.prompts, planned.seeds
        assert p.seed is not None and p.duration is not None and p.sampler is not None
        warnings = sorted({w for x in dict.fromkeys(batch) for w in [*self.check_prompt(x), *self.knob_warnings(x, p.knobs())]})
        warnings += self.settings_warnings(p)
        shape = self.latent_shape(p.duration)
        if noise is None:
            noise = self.start_noise(seeds, shape)  # per-clip seeds: clip k's noise and later draws from seed + k
        elif tuple(noise.shape) != (len(batch), *shape):
            raise UserInputError(f"noise has shape {tuple(noise.shape)}, expected {(len(batch), *shape)}")
        cond, uncond = self.condition(batch, p.knobs())
        scales = self.cfg_scales(batch, params)
        if (p.candidates or 1) > 1:
            r, kept, said = self.judged(p, batch, seeds, noise, cond, uncond, scales, vocoder=vocoder,
                                        callback=callback, normalize=normalize)
            g = r.generation(batch, seeds, p, warnings + said, self.sample_rate, scales)
            g.candidates = kept
            return g
        r = self.render(p, cond, uncond, noise, seeds, vocoder=vocoder, callback=callback, normalize=normalize,
                        cfg_scales=scales)
        return r.generation(batch, seeds, p, warnings, self.sample_rate, scales)

    def judges(self) -> tuple[Any, ...]:
        """The drum judges that keep candidates, loaded once: ``weights/classifier-v2`` and ``classifier-v1``,
        trained on different kits. A candidate is kept when every judge that knows the class hears it: one judge
        alone keeps clips that only it hears as the class (docs/runs/drums-v2/keyword-candidates-*.json)."""
        if self._judges is None:
            from sampleforge.bundle import resolve_model
            from sampleforge.eval.classifier import load_classifier

            self._judges = tuple(load_classifier(resolve_model(name), device=self.device) for name in JUDGES)
        return self._judges

    @torch.inference_mode()
    def judged(self, p: GenerationParams, batch: Sequence[str], seeds: Sequence[int], noise: Tensor, cond: Tensor,
               uncond: Tensor, scales: Sequence[float], *, vocoder: bool = True, callback: Callback | None = None,
               normalize: str | None = "peak", groups: Sequence[int] | None = None,
               noises: Callable[[Sequence[int], int], Tensor] | None = None
               ) -> tuple[Rendered, list[int | None], list[str]]:
        """``p.candidates`` (K) candidates a clip, in rounds: each round renders the clips still without one and keeps
        those every drum judge that knows the class (``judges``) hears as the prompt's class. Candidate 0 of clip k
        starts from its own noise and seed with the prompt's keywords at full strength; candidate j from seed
        ``candidate_seed(seed, j)``, its conditioning j/K of the way from full strength to the model's own (``cond``,
        with its keyword reach): a keyword the model holds back at weight w is given w + (1 - w)(1 - j/K). A clip
        none of whose candidates is judged its class is the model's own clip. Clips of a prompt that names no class
        judged here are rendered once. ``groups`` (a group id per clip: a kit pad's velocity layers) keeps a candidate
        for a group only where every judged clip of it is heard as its class, and ``noises(clips, j)`` gives the start
        noise of candidate j of those clips (default: from their candidate seeds). A clip whose keyword the model holds
        back is heard first through a quick Griffin-Lim (``QUICK_GL_ITERS``) and vocoded only when heard as its class
        there (``quick_screen``); a kept clip is always one the judges heard as vocoded. Returns (the clips, the
        candidate kept per clip, None where none was, warnings)."""
        check_vocoder(vocoder)
        judges = self.judges()
        for judge in judges:
            if judge.cfg.sample_rate != self.sample_rate:
                raise ParamError("candidates", f": the drum judges hear {judge.cfg.sample_rate} Hz clips, this model "
                                 f"makes {self.sample_rate} Hz")
        targets = [self._judged_as(x) for x in batch]
        full, _ = self.condition(batch, p.knobs(), keyword_reach=False)
        held = [not torch.equal(full[i], cond[i]) for i in range(len(batch))]  # a keyword the model holds back
        assert p.candidates is not None and p.duration is not None
        rows: dict[int, Rendered] = {}
        kept: list[int | None] = [None] * len(batch)
        first: dict[int, Rendered] = {}  # candidate 0, the model's own clip where the reach changes nothing
        pending = [i for i, t in enumerate(targets) if t is not None]
        group_of = list(range(len(batch))) if groups is None else list(groups)
        if len(group_of) != len(batch):
            raise ValueError(f"groups names {len(group_of)} clips, the batch has {len(batch)}")
        rounds, seen = p.candidates + 1, [0, 0]  # at most a round a candidate, then the own clips; [steps, done]

        def progress(r: int) -> Callback | None:
            """Round ``r``'s steps as part of one count over all the rounds there may be."""
            if callback is None or not pending and not first:  # no round judged: the own clips are the whole run
                return callback

            def report(i: int, total: int) -> None:
                seen[:] = [total, r * total + i]
                callback(r * total + i, rounds * total)

            return report

        samples, _ = self.frames(p.duration)
        for j in range(p.candidates):
            if not pending:
                break
            ids = torch.tensor(pending)
            cand = [seeds[i] if j == 0 else candidate_seed(seeds[i], j) for i in pending]
            start = noise[ids] if j == 0 else noises(pending, j) if noises else self.start_noise(cand, noise.shape[1:])
            toward_own = torch.lerp(full[ids], cond[ids], j / p.candidates)  # = full where nothing is held back
            r = self.render(p, toward_own, uncond[ids], start, cand, callback=progress(j),
                            cfg_scales=[scales[i] for i in pending], waveform=False)
            # a keyword the model holds back often takes the clip out of its class: such clips are judged first by
            # a quick Griffin-Lim, and only those heard as their class there get (and are judged by) the vocoder
            rows_heard = list(range(len(pending)))
            screened = [row for row in rows_heard if held[pending[row]]] if self.quick_screen else []
            if screened:
                quick = self.sounded(r.latents[screened], r.mels[screened], samples, normalize=normalize,
                                     griffin_lim=self.quick_griffin_lim)
                heard = self._heard(quick.audio, [targets[pending[row]] for row in screened])
                dropped = {row for row, ok in zip(screened, heard, strict=True) if not ok}
                rows_heard = [row for row in rows_heard if row not in dropped]
            heard_as = dict.fromkeys(pending, False)
            alone: dict[int, Rendered] = {}
            if rows_heard:
                sel = torch.tensor(rows_heard)
                sounded = self.sounded(r.latents[sel], r.mels[sel], samples, vocoder=vocoder, normalize=normalize)
                ok = self._heard(sounded.audio, [targets[pending[row]] for row in rows_heard])
                for k, (row, one) in enumerate(zip(rows_heard, sounded.clips(), strict=True)):
                    i = pending[row]
                    alone[i], heard_as[i] = one, ok[k]
                    if j == 0:
                        first[i] = one
            failed = {group_of[i] for i in pending if not heard_as[i]}
            for i in pending:
                if group_of[i] not in failed:
                    rows[i], kept[i] = alone[i], j
            pending = [i for i in pending if kept[i] is None]
        own = [i for i in range(len(batch)) if i not in rows and (i not in first or held[i])]
        if own:  # not judged, or no candidate held the class: the model's own clip, with its keyword reach
            ids = torch.tensor(own)
            r = self.render(p, cond[ids], uncond[ids], noise[ids], [seeds[i] for i in own], vocoder=vocoder,
                            normalize=normalize, callback=progress(p.candidates), cfg_scales=[scales[i] for i in own])
            rows.update(zip(own, r.clips(), strict=True))
        if callback is not None and first and seen[1] < rounds * seen[0]:  # the rounds not needed are done
            callback(rounds * seen[0], rounds * seen[0])
        rows.update({i: one for i, one in first.items() if i not in rows})  # full strength is its own clip
        out = Rendered(*(torch.cat([rows[i][f] for i in range(len(batch))]) for f in range(4)))
        said = []
        for prompt in dict.fromkeys(batch):  # each prompt once, in order
            of = [i for i, x in enumerate(batch) if x == prompt]
            note = candidates_note(prompt, [kept[i] for i in of], p.candidates, targets[of[0]] is not None)
            said += [note] if note else []
        return out, kept, said

    @functools.cached_property
    def quick_griffin_lim(self) -> GriffinLim:
        """The model's Griffin-Lim at ``QUICK_GL_ITERS`` iterations, none matching the mel: what ``judged`` first
        hears a clip by."""
        gl = self.bundle.config.griffin_lim
        return GriffinLim(self.bundle.config.mel, n_iter=QUICK_GL_ITERS, momentum=gl.momentum,
                          init=gl.init).to(self.device)

    def _heard(self, audio: Tensor, wants: Sequence[list[str | None] | None]) -> list[bool]:
        """Whether every drum judge hears each clip of ``audio`` (B, T) or (B, C, T) as what ``wants`` says of it
        (``_judged_as``: a class per judge, None where that judge does not know it)."""
        from sampleforge.eval.classifier import embed_and_classify

        mono = audio if audio.ndim == 2 else audio.mean(dim=1)
        heard = [[judge.cfg.classes[int(k)] for k in embed_and_classify(judge, mono)[1].argmax(1)]
                 for judge in self.judges()]
        return [want is not None and all(w is None or by[row] == w for by, w in zip(heard, want, strict=True))
                for row, want in enumerate(wants)]

    def _judged_as(self, prompt: str) -> list[str | None] | None:
        """What each drum judge must hear for a clip of ``prompt`` (None where it does not know the class), or None
        when no judge knows the class the prompt names (or it names none)."""
        category = self._one_class(keywords(prompt))
        own = [judge.cfg.judged_class(category) if category else None for judge in self.judges()]
        return own if any(w is not None for w in own) else None

    def judges_know(self, prompt: str) -> bool:
        """Whether a drum judge knows the class ``prompt`` names: ``candidates`` judges its clips."""
        return self._judged_as(prompt) is not None

    @torch.inference_mode()
    def vary(
        self,
        audio: Any,
        params: GenerationParams | None = None,
        *,
        vocoder: bool = True,
        callback: Callback | None = None,
        **settings: Any,
    ) -> Generation:
        """``count`` variations of one clip ``audio`` (T,) at the model's sample rate: encoded, noised to
        ``strength`` (0 = the clip through the VAE and vocoder, 1 = a fresh generation from ``prompt`` that
        ignores it) and denoised with ``prompt``; a file path is read at that rate. Clip k uses seed ``seed + k``.
        ``settings`` as in ``generate``."""
        p = self.settings(params, settings, takes=("strength", "prompt", "fit_steps"))
        audio = self.clip(audio)
        assert p.seed is not None and p.duration is not None
        not_judged(p, "variations")
        n = p.count
        seeds = [p.seed + k for k in range(n)]
        init = self.encode([audio], p.duration, p.fit_steps).expand(n, -1, -1)
        steered = self.check_prompt(p.prompt) if p.prompt.strip() else []  # no prompt: the clip says what it is
        steered += self.knob_warnings(p.prompt, p.knobs())
        warnings = self.cut_warnings([audio], p.duration) + steered + self.settings_warnings(p)
        cond, uncond = self.condition([p.prompt] * n, p.knobs())
        r = self.render(p, cond, uncond, self.start_noise(seeds, init.shape[1:]), seeds, vocoder=vocoder,
                        callback=callback, init=init, strength=p.strength)
        return r.generation([p.prompt] * n, seeds, p, warnings, self.sample_rate)

    def morph_plan(self, a: MorphEnd, b: MorphEnd, params: GenerationParams | None = None,
                   **settings: Any) -> tuple[GenerationParams, int, int, tuple[float, float]]:
        """What ``morph`` runs ``a`` to ``b`` with, known before it renders: the resolved settings (with the ends'
        guidance scale where they share one, as its result says them; None where they differ, as no one scale is
        every clip's), the two ends' seeds (``morph_seeds``) and each end's own guidance scale."""
        a, b = check_end(a, "a"), check_end(b, "b")
        asked = GenerationParams.from_kwargs(settings, base=params or DEFAULTS)
        refuse_call_settings(settings, asked, takes=("morph_steps", "strength", "fit_steps"))
        p = self.resolve(asked)
        assert p.seed is not None
        sa, sb = morph_seeds(a.seed, b.seed, p.seed)
        ca, cb = self.cfg_scales([a.prompt, b.prompt], asked)
        return dataclasses.replace(p, cfg_scale=ca if ca == cb else None), sa, sb, (ca, cb)

    @torch.inference_mode()
    def morph(
        self,
        a: MorphEnd,
        b: MorphEnd,
        params: GenerationParams | None = None,
        *,
        vocoder: bool = True,
        callback: Callback | None = None,
        **settings: Any,
    ) -> Generation:
        """``morph_steps`` clips from ``a`` to ``b`` (t = 0, 1/(N-1), ..., 1): the start noise is slerped between
        the two seeds' noise, the condition lerped between the two prompts (with the settings' knobs), the
        guidance scale between the two ends' own (``cfg_scales``; equal unless the model's differs by knobs), and,
        when both ends hold a clip, their latents lerped and used as ``init`` at ``strength``. The endpoints are
        the sources: clip 0 equals ``generate(a.prompt, seed=a.seed)`` (or ``vary(a.audio, prompt=a.prompt,
        seed=a.seed, strength=...)``), the last one the same for ``b``. ``a.seed`` defaults to the settings'
        seed, ``b.seed`` to ``a.seed + 1``; the clips between draw later noise from ``a.seed``. An end's clip may
        be a file path (read at the model's sample rate). The result's ``cfg_scales`` give each clip's guidance
        scale where the ends' differ (its ``params.cfg_scale`` is then None)."""
        a, b = check_end(a, "a"), check_end(b, "b")
        p, sa, sb, (ca, cb) = self.morph_plan(a, b, params, **settings)
        assert p.duration is not None
        not_judged(p, "morphs")
        if (a.audio is None) != (b.audio is None):
            raise UserInputError("morph: give a clip for both ends or for neither")
        count = p.morph_steps
        shape = self.latent_shape(p.duration)
        t = torch.linspace(0.0, 1.0, count)
        ends = self.start_noise([sa, sb], shape)
        noise = torch.stack([slerp(ends[0], ends[1], float(w)) for w in t])
        said = {w for end in (a, b) if end.prompt.strip() or end.audio is None for w in self.check_prompt(end.prompt)}
        said |= {w for end in (a, b) for w in self.knob_warnings(end.prompt, p.knobs())}
        warnings = sorted(said) + self.settings_warnings(p)  # an end that is a clip needs no prompt
        cond_ab, uncond = self.condition([a.prompt, b.prompt], p.knobs())
        w = t.to(self.device)[:, None]
        cond = torch.lerp(cond_ab[0:1].expand(count, -1), cond_ab[1:2].expand(count, -1), w)
        init = None
        if a.audio is not None and b.audio is not None:
            clips = [self.clip(a.audio, "a.audio"), self.clip(b.audio, "b.audio")]
            z = self.encode(clips, p.duration, p.fit_steps)
            warnings = self.cut_warnings(clips, p.duration, ("the first clip", "the second clip")) + warnings
            init = torch.lerp(z[0:1].expand(count, -1, -1), z[1:2].expand(count, -1, -1), w[..., None])
        seeds = [sb if k == count - 1 else sa for k in range(count)]
        scales = [(1.0 - float(x)) * ca + float(x) * cb for x in t]  # each end's own scale, lerped between
        r = self.render(p, cond, uncond[:1].expand(count, -1), noise, seeds, vocoder=vocoder, callback=callback,
                        init=init, strength=p.strength if init is not None else 1.0, cfg_scales=scales)
        prompts = [a.prompt if k < count / 2 else b.prompt for k in range(count)]
        return r.generation(prompts, seeds, p, warnings, self.sample_rate, scales)
