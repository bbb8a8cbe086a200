"""Generation: prompts → keyword ids → condition → latent diffusion → log-mel → waveform → finished one-shots.

``Generator.from_pretrained("drums-v1").generate(["punchy 808 kick"], n=4, seed=1) -> Tensor (4, 88200)``.
A Generator holds only its (read-only) networks, so one instance can serve concurrent jobs.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sampleforge.audio.finish import finish
from sampleforge.audio.griffinlim import GriffinLim
from sampleforge.backends.base import BackendOptions, Generation, ParamSpace, RunMixin
from sampleforge.bundle import DEFAULT_MODEL, Bundle, load_bundle, model_id
from sampleforge.devices import auto_device
from sampleforge.diffusion.samplers import FLOW_SAMPLERS, SAMPLERS
from sampleforge.diffusion.sampling import generate_latents
from sampleforge.errors import UserInputError
from sampleforge.params import PRECISIONS, SPECS, GenerationParams
from sampleforge.text.keywords import classes_named, keywords
from sampleforge.timbre import KEYWORD_MIN_CLIPS, WORD_KNOBS, knobs_from_words

Callback = Callable[[int, int], None]


MAX_DURATION = 10.0  # seconds: sampleforge models make one-shots
NATIVE_PRECISIONS = ("fp32", "bf16")


class Generator(RunMixin):
    """A loaded sampleforge model ready to generate (the ``sampleforge`` backend). Stateless between calls."""

    kind = "sampleforge"

    def __init__(self, bundle: Bundle, device: torch.device | str | None = None, precision: str | None = None,
                 quantize: str = "none") -> None:
        self.precision: str = SPECS["precision"].check(precision) or PRECISIONS[0]
        if self.precision not in NATIVE_PRECISIONS:
            raise UserInputError(f"precision: sampleforge models run in {' or '.join(NATIVE_PRECISIONS)}, "
                                 f"got {self.precision}")
        self.device = torch.device(device) if device is not None else auto_device()
        if SPECS["quantize"].check(quantize) == "int8":
            from sampleforge.backends.memory import quantize_int8

            if self.device.type != "cpu":
                raise UserInputError("quantize: int8 quantisation runs on the CPU only (use --device cpu)")
            bundle.unet = quantize_int8(bundle.unet)  # type: ignore[assignment]
        self.bundle = bundle.to(self.device)
        cfg = bundle.config
        self.name = cfg.name
        self.id = model_id(bundle.path) if bundle.path is not None else cfg.name
        self.sample_rate = cfg.sample_rate
        flow = cfg.diffusion.prediction == "flow"
        self.samplers = tuple(name for name in SAMPLERS if (name in FLOW_SAMPLERS) == flow)  # the first: default
        self.alphas_cumprod = cfg.diffusion.alphas_cumprod().to(self.device)
        gl = cfg.griffin_lim
        self.griffin_lim = GriffinLim(cfg.mel, n_iter=gl.n_iter, momentum=gl.momentum, init=gl.init).to(self.device)

    @classmethod
    def from_pretrained(
        cls,
        path_or_name: str | os.PathLike[str] = DEFAULT_MODEL,
        device: torch.device | str | None = None,
        components: dict[str, Path | None] | None = None,
        precision: str | None = None,
    ) -> Any:
        """Load a model folder or a shipped model by name (``components`` overrides single weight files).
        ``precision="bf16"``: the U-Net runs under bfloat16 autocast (see ``GenerationParams.precision``).
        Other people's models (a diffusers folder, ``hf:OWNER/NAME``, an audio-diffusion-pytorch ``.ckpt``)
        load through ``backends.load_backend`` and answer the same calls."""
        from sampleforge.backends.resolve import resolve

        if components is None and resolve(path_or_name).format != "sampleforge":
            from sampleforge.backends import load_backend

            return load_backend(path_or_name, BackendOptions(device=None if device is None else str(device),
                                                             precision=precision or PRECISIONS[0]))
        return cls(load_bundle(path_or_name, components=components), device, precision)

    @classmethod
    def from_options(cls, path_or_name: str | os.PathLike[str], options: BackendOptions) -> Generator:
        """Load with the backend options (precision fp32/bf16, int8 quantisation of the U-Net on the CPU)."""
        return cls(load_bundle(path_or_name), options.device, options.precision, options.quantize)

    # -- the backend interface -------------------------------------------------------------------------
    @property
    def space(self) -> ParamSpace:
        """Samplers (DDPM or flow, as the model was trained), durations and defaults."""
        return ParamSpace(samplers=self.samplers, min_duration=float(SPECS["duration"].ge or 0.1),
                          max_duration=MAX_DURATION, default_duration=float(self.bundle.config.duration),
                          default_steps=int(SPECS["steps"].default), default_cfg=float(SPECS["cfg_scale"].default))

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "format": "sampleforge", "path": str(self.bundle.path), "id": self.id,
                "sample_rate": self.sample_rate, "precision": self.precision, "space": self.space.as_dict()}

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
        words = keywords(prompt)
        named = classes_named(words)
        values = knobs_from_words(words, knobs, named[0] if len(named) == 1 else None)
        return {k: v for k, v in values.items() if k in names}

    def model_words(self, prompt: str) -> str:
        """The prompt's words the keyword encoder gets: knob words that fewer than ``KEYWORD_MIN_CLIPS``
        training clips carry are left to their knobs (a model without knobs gets every word)."""
        knobs = set(self.bundle.config.text.knobs)
        if not knobs:
            return prompt
        counts = self.bundle.vocab.counts
        return " ".join(w for w in keywords(prompt)
                        if not (set(WORD_KNOBS.get(w, {})) & knobs and counts.get(w, 0) < KEYWORD_MIN_CLIPS))

    @torch.inference_mode()
    def condition(
        self, prompts: Sequence[str], knobs: Mapping[str, float | None] | None = None
    ) -> tuple[Tensor, Tensor]:
        """prompts (+ timbre knobs for all of them) → (cond (B, D), uncond (B, D))."""
        words = [self.model_words(p) for p in prompts]
        ids, _ = self.bundle.vocab.encode_batch(words, self.bundle.config.text.max_tokens)
        ids = ids.to(self.device)
        names = self.bundle.config.text.knobs
        if not names:
            return self.bundle.text(ids), self.bundle.text.null(len(prompts))
        rows = []
        for prompt in prompts:
            values = self.knob_values(prompt, knobs)
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
    def resolve(self, params: GenerationParams) -> GenerationParams:
        """Fill the settings left to the model (sampler, duration, precision) and a random seed if none."""
        p = dataclasses.replace(
            params.with_seed(),
            sampler=params.sampler or self.samplers[0],
            duration=params.duration if params.duration is not None else self.bundle.config.duration,
            precision=params.precision or self.precision,
        )
        assert p.duration is not None
        if p.duration > MAX_DURATION:
            raise UserInputError(f"duration must be at most {MAX_DURATION:g} seconds for sampleforge models, "
                                 f"got {p.duration:g}")
        if p.precision not in NATIVE_PRECISIONS:
            raise UserInputError(f"precision: sampleforge models run in {' or '.join(NATIVE_PRECISIONS)}")
        unused = [n for n in ("init_audio", "init_noise", "mask_start", "mask_end") if getattr(p, n) is not None]
        if unused:
            raise UserInputError(f"{unused[0]}: sampleforge models do not take it (Stable Audio 3 does)")
        return p

    @torch.inference_mode()
    def run(
        self,
        params: GenerationParams,
        prompts: Sequence[str] | None = None,
        vocoder: bool = True,
        callback: Callback | None = None,
        normalize: str | None = "peak",
    ) -> Generation:
        """``params.count`` clips for each of ``prompts`` (default: ``[params.prompt]``), prompt-major.

        Clip k of the batch uses seed ``params.seed + k`` (its start noise and every later draw), so a batch
        equals generating each clip alone with its seed, for every sampler, up to float rounding (batched
        convolutions sum in another order: ~1e-5 in the mel, which Griffin-Lim can grow to ~1e-3).
        """
        p = self.resolve(params)
        assert p.seed is not None and p.duration is not None and p.sampler is not None
        prompt_list = [p.prompt] if prompts is None else list(prompts)
        if not prompt_list or not all(isinstance(x, str) for x in prompt_list):
            raise UserInputError("prompts must be a string or a non-empty list of strings")
        batch = [x for x in prompt_list for _ in range(p.count)]
        seeds = [p.seed + k for k in range(len(batch))]
        warnings = sorted({w for x in prompt_list for w in self.check_prompt(x)})
        knobs = p.knobs()
        if knobs and not self.bundle.config.text.knobs:
            warnings.append(f"model {self.name!r} has no timbre knobs: {', '.join(sorted(knobs))} ignored")

        samples, frames = self.frames(p.duration)
        shape = self.bundle.config.vae.latent_shape(frames)
        # per-clip seeds: clip k's start noise and later draws come from its own generator (seed + k)
        noise = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(s)) for s in seeds])
        generators = [torch.Generator(device=self.device).manual_seed(s) for s in seeds]
        cond, uncond = self.condition(batch, knobs)
        dcfg = self.bundle.config.diffusion
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=p.precision == "bf16"):
            latents = generate_latents(
                self.bundle.unet, cond, uncond, shape,
                alphas_cumprod=self.alphas_cumprod, prediction=dcfg.prediction, steps=p.steps, sampler=p.sampler,
                cfg_scale=p.cfg_scale, schedule=dcfg.sampling_schedule, eta=p.eta, steps_offset=p.steps_offset,
                flow_shift=p.flow_shift, generator=generators, callback=callback, noise=noise.to(self.device),
            )
        latents = latents.float()
        mels = self.decode(latents, frames)
        raw = self.vocode(mels, samples, vocoder).float()
        wav = torch.nan_to_num(raw, nan=0.0, posinf=0.0, neginf=0.0)
        if normalize:
            wav = finish(wav, self.sample_rate, normalize=normalize, length=samples)
        return Generation(audio=wav.cpu(), prompts=batch, seeds=seeds, params=p, warnings=warnings,
                          latents=latents.cpu(), mels=mels.cpu(), raw=raw.cpu())
