"""Generation: prompts → keyword ids → condition → latent diffusion → log-mel → waveform → finished one-shots.

``Generator.from_pretrained("drums-v1").generate(["punchy 808 kick"], n=4, seed=1) -> Tensor (4, 88200)``.
A Generator holds only its (read-only) networks, so one instance can serve concurrent jobs.
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from sampleforge.audio.finish import finish
from sampleforge.audio.griffinlim import GriffinLim
from sampleforge.bundle import DEFAULT_MODEL, Bundle, load_bundle, model_id
from sampleforge.diffusion.samplers import SAMPLERS
from sampleforge.diffusion.sampling import generate_latents
from sampleforge.errors import UserInputError
from sampleforge.text.keywords import keywords
from sampleforge.timbre import KNOBS, WORD_KNOBS, knobs_from_words

Callback = Callable[[int, int], None]

# "bf16": the U-Net's convolutions and matmuls in bfloat16 (autocast; norms, the sampler's arithmetic, the VAE
# and the vocoder stay float32). On this 2-core AVX512-BF16 CPU a U-Net call at batch 32 (16 clips + CFG) took
# 39 ms instead of 78; at batch 2 it saves nothing (per-op overhead). Its prediction differs by ~0.8 % (relative
# L2) from float32, so the same seed gives a close but not identical clip.
PRECISIONS = ("fp32", "bf16")
MAX_STEPS = 1000
MAX_DURATION = 10.0
MIN_DURATION = 0.1


def auto_device() -> torch.device:
    """CUDA > MPS > CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass
class Generation:
    """One batch of results: audio (B, samples) and what produced each clip."""

    audio: Tensor
    prompts: list[str]
    seeds: list[int]
    warnings: list[str] = field(default_factory=list)
    latents: Tensor | None = None
    mels: Tensor | None = None


def validate(steps: int, cfg_scale: float, n: int, duration: float, sampler: str) -> None:
    """Raise UserInputError naming the first bad generation setting."""
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise UserInputError(f"steps must be an integer between 1 and {MAX_STEPS}, got {steps!r}")
    if isinstance(cfg_scale, bool) or not isinstance(cfg_scale, (int, float)) or not math.isfinite(cfg_scale) \
            or not 0.0 <= cfg_scale <= 30.0:
        raise UserInputError(f"cfg_scale must be a finite number between 0 and 30, got {cfg_scale!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UserInputError(f"count must be a positive integer, got {n!r}")
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not math.isfinite(duration) \
            or not MIN_DURATION <= duration <= MAX_DURATION:
        raise UserInputError(f"duration must be between {MIN_DURATION} and {MAX_DURATION} seconds, got {duration!r}")
    if sampler not in SAMPLERS:
        raise UserInputError(f"unknown sampler {sampler!r} (valid: {', '.join(sorted(SAMPLERS))})")


def validate_knobs(knobs: Mapping[str, float | None] | None) -> dict[str, float]:
    """{knob: quantile 0-1 or None} -> the set ones; UserInputError naming an unknown knob or a bad value."""
    out: dict[str, float] = {}
    for name, value in (knobs or {}).items():
        if name not in KNOBS:
            raise UserInputError(f"unknown timbre knob {name!r} (valid: {', '.join(KNOBS)})")
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise UserInputError(f"{name} must be a number between 0 and 1, got {value!r}")
        out[name] = float(value)
    return out


class Generator:
    """A loaded model ready to generate. Stateless between calls."""

    def __init__(self, bundle: Bundle, device: torch.device | str | None = None, precision: str = "fp32") -> None:
        if precision not in PRECISIONS:
            raise UserInputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.precision = precision
        self.device = torch.device(device) if device is not None else auto_device()
        self.bundle = bundle.to(self.device)
        cfg = bundle.config
        self.name = cfg.name
        self.id = model_id(bundle.path) if bundle.path is not None else cfg.name
        self.sample_rate = cfg.sample_rate
        self.alphas_cumprod = cfg.diffusion.alphas_cumprod().to(self.device)
        gl = cfg.griffin_lim
        self.griffin_lim = GriffinLim(cfg.mel, n_iter=gl.n_iter, momentum=gl.momentum, init=gl.init).to(self.device)

    @classmethod
    def from_pretrained(
        cls,
        path_or_name: str | os.PathLike[str] = DEFAULT_MODEL,
        device: torch.device | str | None = None,
        components: dict[str, Path | None] | None = None,
        precision: str = "fp32",
    ) -> Generator:
        """Load a model folder or a shipped model by name (``components`` overrides single weight files).
        ``precision="bf16"``: the U-Net runs under bfloat16 autocast (see ``PRECISIONS``)."""
        return cls(load_bundle(path_or_name, components=components), device, precision)

    # -- prompts ---------------------------------------------------------------------------------------
    def vocab(self) -> dict[str, int]:
        """Keyword → count in the training data."""
        return dict(self.bundle.vocab.counts)

    def check_prompt(self, prompt: str) -> list[str]:
        """Warnings for a prompt (unknown keywords are reported, never silently dropped; near misses get a
        "did you mean"; no known word, two classes, and thinly supported descriptors are said)."""
        knob_words = [w for w, v in WORD_KNOBS.items() if set(v) & set(self.bundle.config.text.knobs)]
        return self.bundle.vocab.prompt_warnings(prompt, self.bundle.config.text.max_tokens, knob_words)

    def knob_values(self, prompt: str, knobs: Mapping[str, float | None] | None = None) -> dict[str, float]:
        """The timbre knobs a prompt asks for: ``knobs`` given explicitly, then those its words stand for
        (``timbre.WORD_KNOBS``); only the knobs this model was trained with. Unset knobs are absent."""
        names = self.bundle.config.text.knobs
        if not names:
            return {}
        values = knobs_from_words(keywords(prompt), knobs)
        return {k: v for k, v in values.items() if k in names}

    @torch.inference_mode()
    def condition(
        self, prompts: Sequence[str], knobs: Mapping[str, float | None] | None = None
    ) -> tuple[Tensor, Tensor]:
        """prompts (+ timbre knobs for all of them) → (cond (B, D), uncond (B, D))."""
        ids, _ = self.bundle.vocab.encode_batch(list(prompts), self.bundle.config.text.max_tokens)
        ids = ids.to(self.device)
        names = self.bundle.config.text.knobs
        if not names:
            return self.bundle.text(ids), self.bundle.text.null(len(prompts))
        rows = []
        for p in prompts:
            values = self.knob_values(p, knobs)
            rows.append([values.get(k, float("nan")) for k in names])
        table = torch.tensor(rows, dtype=torch.float32, device=self.device)  # (B, K), NaN = unset
        return self.bundle.text(ids, table), self.bundle.text.null(len(prompts))

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
    @torch.inference_mode()
    def generate_full(
        self,
        prompts: str | Sequence[str],
        n: int = 1,
        steps: int = 50,
        cfg_scale: float = 3.0,
        sampler: str = "ddim",
        seed: int | None = None,
        duration: float | None = None,
        vocoder: bool = True,
        callback: Callback | None = None,
        normalize: str | None = "peak",
        precision: str | None = None,
        knobs: Mapping[str, float | None] | None = None,
    ) -> Generation:
        """Like ``generate`` but returns a ``Generation`` with seeds, warnings, latents and mels.
        ``precision`` overrides the generator's for this call ("fp32" or "bf16")."""
        precision = self.precision if precision is None else precision
        if precision not in PRECISIONS:
            raise UserInputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        prompt_list = [prompts] if isinstance(prompts, str) else list(prompts)
        if not prompt_list or not all(isinstance(p, str) for p in prompt_list):
            raise UserInputError("prompts must be a string or a non-empty list of strings")
        duration = self.bundle.config.duration if duration is None else duration
        validate(steps, cfg_scale, n, duration, sampler)
        if seed is None:
            seed = secrets.randbelow(2**31)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise UserInputError(f"seed must be a non-negative integer, got {seed!r}")
        batch = [p for p in prompt_list for _ in range(n)]
        seeds = [seed + k for k in range(len(batch))]
        warnings = sorted({w for p in prompt_list for w in self.check_prompt(p)})
        knobs = validate_knobs(knobs)
        if knobs and not self.bundle.config.text.knobs:
            warnings.append(f"model {self.name!r} has no timbre knobs: {', '.join(sorted(knobs))} ignored")

        samples, frames = self.frames(duration)
        shape = self.bundle.config.vae.latent_shape(frames)
        # per-clip seeds: clip k's start noise and later draws come from its own generator (seed + k)
        noise = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds])
        generators = [torch.Generator(device=self.device).manual_seed(s) for s in seeds]
        cond, uncond = self.condition(batch, knobs)
        dcfg = self.bundle.config.diffusion
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            latents = generate_latents(
                self.bundle.unet, cond, uncond, shape,
                alphas_cumprod=self.alphas_cumprod, prediction=dcfg.prediction, steps=steps, sampler=sampler,
                cfg_scale=float(cfg_scale), schedule=dcfg.sampling_schedule, generator=generators, callback=callback,
                noise=noise.to(self.device),
            )
        latents = latents.float()
        mels = self.decode(latents, frames)
        wav = self.vocode(mels, samples, vocoder)
        wav = torch.nan_to_num(wav.float(), nan=0.0, posinf=0.0, neginf=0.0)
        if normalize:
            wav = finish(wav, self.sample_rate, normalize=normalize, length=samples)
        return Generation(audio=wav.cpu(), prompts=batch, seeds=seeds, warnings=warnings,
                          latents=latents.cpu(), mels=mels.cpu())

    def generate(
        self,
        prompts: str | Sequence[str],
        n: int = 1,
        steps: int = 50,
        cfg_scale: float = 3.0,
        sampler: str = "ddim",
        seed: int | None = None,
        duration: float | None = None,
        vocoder: bool = True,
        callback: Callback | None = None,
    ) -> Tensor:
        """prompts (P) → finished audio (P * n, samples), float32, peak 0.95.

        Clip k of the batch (prompt-major order) uses seed ``seed + k`` (its start noise and every later draw),
        so a batch equals generating each clip alone with its seed, for every sampler — up to float rounding
        (batched convolutions sum in another order: ~1e-5 in the mel, which Griffin-Lim's phase iterations can
        grow to ~1e-3 in the waveform).
        """
        return self.generate_full(prompts, n, steps, cfg_scale, sampler, seed, duration, vocoder, callback).audio
