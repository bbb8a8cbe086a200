"""The one interface every model runs behind: what the CLI, the API and the service need from a model.

A backend is a loaded model. It tells its parameter space (``space``: samplers, durations, defaults), fills
the settings left to the model (``resolve(GenerationParams) -> GenerationParams``), makes audio
(``run(params, prompts) -> Generation`` with the per-stage tensors that ``sweep`` turns into statistics),
checks prompts, and describes itself for ``inspect``/``doctor``. sampleforge's own pipeline
(``pipeline.Generator``) is one backend; diffusers pipelines and audio-diffusion-pytorch checkpoints are others
(``backends.load_backend``). Every setting, load-time ones included, is declared in ``params.GenerationParams``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from sampleforge.errors import ParamError, UserInputError
from sampleforge.params import DEFAULTS, GenerationParams, check_seeds

Callback = Callable[[int, int], None]

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# settings only some models take: model kind -> refused where the model has no use for them
AUDIO_SETTINGS = ("init_audio", "init_noise", "mask_start", "mask_end")  # audio-to-audio and inpainting
MODEL_SETTINGS = (*AUDIO_SETTINGS, "candidates")  # what some models take and others refuse (ParamSpace.settings)
# how sampleforge's samplers step (noise per step, timestep offset, flow time shift): refused, when set, by a model
# whose sampler does not apply them (ParamSpace.sampling), so that no file records a setting that did nothing
SAMPLER_SETTINGS = ("eta", "steps_offset", "flow_shift")


@dataclass(frozen=True)
class BackendOptions:
    """How a model is loaded (from the load-time fields of ``GenerationParams``: precision, offload,
    quantize; decode_chunk and channels are defaults that a call's settings override)."""

    device: str | None = None
    precision: str = "fp32"
    offload: str = "none"
    quantize: str = "none"
    decode_chunk: float | None = None
    channels: str | None = None

    def torch_device(self) -> torch.device:
        """The device asked for, else the best available."""
        from sampleforge.devices import torch_device

        return torch_device(self.device)

    @classmethod
    def from_params(cls, params: GenerationParams, device: str | None = None) -> BackendOptions:
        return cls(device=device, precision=params.precision or "fp32", offload=params.offload,
                   quantize=params.quantize, decode_chunk=params.decode_chunk, channels=params.channels)


@dataclass(frozen=True)
class ParamSpace:
    """What a model accepts: samplers (the first is the default), durations in seconds, default settings."""

    samplers: tuple[str, ...]
    min_duration: float
    max_duration: float
    default_duration: float
    default_steps: int
    default_cfg: float
    channels: int = 1
    conditioned: bool = True  # False: the model ignores the prompt (an unconditional model)
    settings: tuple[str, ...] = ()  # the model-specific settings it takes (MODEL_SETTINGS)
    sampling: tuple[str, ...] = ()  # the SAMPLER_SETTINGS its sampler applies

    @property
    def default_sampler(self) -> str:
        return self.samplers[0]

    def as_dict(self) -> dict[str, Any]:
        return {
            "samplers": list(self.samplers), "default_sampler": self.default_sampler,
            "duration": {"min": self.min_duration, "max": self.max_duration, "default": self.default_duration},
            "default_steps": self.default_steps, "default_cfg_scale": self.default_cfg, "channels": self.channels,
            "conditioned": self.conditioned, "settings": list(self.settings),
        }


@dataclass
class Generation:
    """One batch of results: finished audio (B, T) or (B, C, T), what produced each clip, and the stages.

    ``latents``: what the sampler returned; ``mels``: the decoded spectrogram (mel models only); ``raw``: the
    waveform before finishing (NaN, clipping and level problems show here, not in the finished audio);
    ``stats``: the stages' seconds and peak memory (``<stage>_s``, ``<stage>_peak_mib``).
    """

    audio: Tensor
    prompts: list[str]
    seeds: list[int]
    params: GenerationParams  # as run: seed, sampler, duration and precision filled in
    warnings: list[str] = field(default_factory=list)
    latents: Tensor | None = None
    mels: Tensor | None = None
    raw: Tensor | None = None
    stats: dict[str, float] = field(default_factory=dict)
    cfg_scales: list[float] | None = None  # each clip's guidance scale where they differ (a batch of prompts
    # with and without timbre knobs, a morph between them); None: params.cfg_scale for every clip
    candidates: list[int | None] | None = None  # with ``candidates``: the one kept per clip (0, 1, ...), None where
    # the drum judges heard none as the prompt's class


@runtime_checkable
class Backend(Protocol):
    """A loaded model, ready to generate; holds no state between calls."""

    id: str
    name: str
    kind: str
    sample_rate: int
    device: torch.device
    samplers: tuple[str, ...]

    @property
    def space(self) -> ParamSpace: ...

    def check_prompt(self, prompt: str) -> list[str]: ...

    def vocab(self) -> dict[str, int]: ...

    def resolve(self, params: GenerationParams) -> GenerationParams: ...

    def run(self, params: GenerationParams, prompts: Sequence[str] | None = None, vocoder: bool = True,
            callback: Callback | None = None, normalize: str | None = "peak") -> Generation: ...

    def describe(self) -> dict[str, Any]: ...


class RunMixin:
    """``generate_full`` / ``generate`` (keyword settings, the reference API's style) on top of the ``run``
    of the class it is mixed into (every backend defines ``run``, see ``Backend``)."""

    run: Callable[..., Generation]
    resolve: Callable[[GenerationParams], GenerationParams]

    def plan(self, params: GenerationParams, prompts: Sequence[str] | None = None) -> Batch:
        """The settings, prompts and seeds ``run`` renders ``prompts`` (default: ``[params.prompt]``) with at the
        settings ``params``, known before rendering (a command names its files with them)."""
        return batch(self.resolve(params), prompts)

    def generate_full(self, prompts: str | Sequence[str], n: int | None = None, *, vocoder: bool = True,
                      callback: Callback | None = None, normalize: str | None = "peak",
                      params: GenerationParams | None = None, **settings: Any) -> Generation:
        """Like ``generate`` but returns a ``Generation`` with seeds, settings, warnings and the stages."""
        if n is not None:
            settings["n"] = n
        if params is not None and not isinstance(params, GenerationParams):
            raise UserInputError(f"params: a GenerationParams, got {type(params).__name__} (settings go as "
                                 "keywords: generate('kick', steps=25))")
        p = GenerationParams.from_kwargs(settings, base=params or DEFAULTS)
        refuse_call_settings(settings, p)
        if isinstance(prompts, str):
            prompts = [prompts]
        elif not isinstance(prompts, Sequence):
            raise UserInputError("prompts must be a string or a non-empty list of strings")
        return self.run(p, prompts, vocoder, callback, normalize)

    def generate(self, prompts: str | Sequence[str], n: int | None = None, *, vocoder: bool = True,
                 callback: Callback | None = None, params: GenerationParams | None = None,
                 **settings: Any) -> Tensor:
        """prompts (P) → finished audio (P * n, samples) (stereo models: (P * n, 2, samples)), peak 0.95.

        ``settings``: any ``GenerationParams`` field by name or alias (steps, cfg_scale, sampler, seed,
        duration, ...) over ``params``; clip k uses seed ``seed + k``. What the call warns of (an unknown keyword,
        a prompt naming two classes) is issued as a ``GenerationWarning`` (``generate_full`` returns it).
        """
        result = self.generate_full(prompts, n, vocoder=vocoder, callback=callback, params=params, **settings)
        issue_warnings(result.warnings)
        return result.audio

    def settings_warnings(self, p: GenerationParams) -> list[str]:
        """Settings this model takes but cannot honour (its ``space`` refuses those it does not take): none here."""
        return []

    def judges_know(self, prompt: str) -> bool:
        """Whether a drum judge knows the class ``prompt`` names (``candidates``); only sampleforge's models judge."""
        return False


@dataclass(frozen=True)
class Batch:
    """A resolved call: the settings with the model's defaults filled in, the batch expanded prompt-major."""

    params: GenerationParams
    prompts: list[str]
    seeds: list[int]


def issue_warnings(lines: Sequence[str], stacklevel: int = 3) -> None:
    """A call's warnings as Python warnings (``GenerationWarning``), where a caller of the Python API sees them."""
    import warnings

    from sampleforge.errors import GenerationWarning

    for line in lines:
        warnings.warn(line, GenerationWarning, stacklevel=stacklevel)


# settings a loaded model's generate() cannot apply -> where they go instead (given as keywords, they would be
# recorded in the Generation's params and do nothing)
NOT_FOR_A_CALL = {
    "prompt": "give the prompts as the first argument",
    "model": "this model is loaded already; load that one (Generator.from_pretrained)",
    "quantize": "applies when the model loads (sampleforge.generate(quantize=...), "
                "backends.load_backend(model, BackendOptions(quantize=...)))",
    "offload": "applies when the model loads (backends.load_backend(model, BackendOptions(offload=...)))",
    "format": "a file's setting: write the samples with sampleforge.audio.io.write_audio(path, wav, rate, "
              "format=...)",
    "length": "a file's setting: cut the samples with sampleforge.audio.finish.apply_length",
    "strength": "a variation's: Generator.vary or sampleforge.vary", "input": "a variation's: sampleforge.vary",
    "fit_steps": "a variation's or a morph's of clips: Generator.vary, Generator.morph",
    "morph_steps": "a morph's: Generator.morph or sampleforge.morph",
    **dict.fromkeys(("pieces", "round_robins", "velocity_layers", "relatedness"), "a kit's: sampleforge.make_kit"),
}


def refuse_call_settings(settings: Mapping[str, Any], p: GenerationParams, takes: Sequence[str] = ()) -> None:
    """A ParamError naming the first setting given in ``settings`` (by name or alias) that a call of a loaded
    model cannot apply (``NOT_FOR_A_CALL``, but for those the call ``takes``), unless it is the default (which asks
    for nothing)."""
    from sampleforge.params import ALIASES

    for key in settings:
        name = ALIASES.get(key, key)
        if name in NOT_FOR_A_CALL and name not in takes and getattr(p, name) != getattr(DEFAULTS, name):
            raise ParamError(key, f": {NOT_FOR_A_CALL[name]}")


def model_defaults(space: ParamSpace, params: GenerationParams) -> dict[str, Any]:
    """The model's own steps and cfg scale where ``params`` leaves them to the model (None)."""
    return {"steps": params.steps if params.steps is not None else space.default_steps,
            "cfg_scale": params.cfg_scale if params.cfg_scale is not None else space.default_cfg}


def resolve_in(space: ParamSpace, params: GenerationParams, precision: str) -> GenerationParams:
    """Fill the settings left to the model from ``space`` and check them against it (UserInputError naming
    the setting): steps, cfg scale, sampler, duration, and a random seed if none. A setting the model does not
    take (``space.settings``), or a ``SAMPLER_SETTINGS`` one its sampler does not apply (``space.sampling``) set
    to other than its default, is a ParamError naming it."""
    p = dataclasses.replace(
        params.with_seed(),
        **model_defaults(space, params),
        sampler=params.sampler or space.default_sampler,
        duration=params.duration if params.duration is not None else space.default_duration,
        precision=params.precision or precision,
    )
    if p.sampler not in space.samplers:
        raise ParamError("sampler", f": unknown sampler {p.sampler!r} for this model (valid: {', '.join(space.samplers)})")
    assert p.duration is not None
    if not space.min_duration <= p.duration <= space.max_duration:
        raise ParamError("duration", f"must be between {space.min_duration:g} and {space.max_duration:g} seconds "
                         f"for this model, got {p.duration:g}")
    given = [name for name in MODEL_SETTINGS if getattr(p, name) is not None and name not in space.settings]
    if given:
        raise ParamError(given[0], f": this model does not take it (its own settings: "
                         f"{', '.join(space.settings) or 'none'})", mentions=tuple(space.settings))
    unused = [name for name in SAMPLER_SETTINGS
              if getattr(p, name) != getattr(DEFAULTS, name) and name not in space.sampling]
    if unused:
        raise ParamError(unused[0], ": this model's sampler does not use it" +
                         (f" (it uses {', '.join(space.sampling)})" if space.sampling else ""),
                         mentions=space.sampling)
    if p.precision != precision:
        raise ParamError("precision", f": the model was loaded in {precision}; load it again for {p.precision}")
    return p


def batch(p: GenerationParams, prompts: Sequence[str] | None) -> Batch:
    """Expand ``count`` clips per prompt (prompt-major); clip k gets seed ``p.seed + k``, which must not pass the
    largest seed (ParamError naming ``seed``)."""
    assert p.seed is not None
    prompt_list = [p.prompt] if prompts is None else list(prompts)
    if not prompt_list or not all(isinstance(x, str) for x in prompt_list):
        raise UserInputError("prompts must be a string or a non-empty list of strings")
    clips = [x for x in prompt_list for _ in range(p.count)]
    check_seeds(p.seed, len(clips))
    return Batch(p, clips, [p.seed + k for k in range(len(clips))])


def peak_normalize(wav: Tensor, peak: float = 0.95) -> Tensor:
    """Scale each clip (B, ...) so its max |x| is ``peak``; silent clips stay silent; NaN/inf become 0."""
    wav = torch.nan_to_num(wav.float(), nan=0.0, posinf=0.0, neginf=0.0)
    top = wav.abs().reshape(wav.shape[0], -1).amax(dim=1).clamp(min=1e-12)
    scale = torch.where(top > 1e-9, peak / top, torch.zeros_like(top))
    return wav * scale.reshape(-1, *([1] * (wav.ndim - 1)))


def fit_channels(wav: Tensor, channels: str | None) -> Tensor:
    """(B, C, T) -> (B, T) when ``channels`` is "mono" (averaged) or C == 1; else unchanged."""
    if wav.ndim == 3 and (channels == "mono" or wav.shape[1] == 1):
        return wav.mean(dim=1)
    return wav


def read_init_audio(path: str, sample_rate: int, channels: int) -> Tensor:
    """An audio-to-audio model's start: the file as (1, channels, T) float32 at ``sample_rate`` (read as mono,
    soxr-resampled, the same signal in every channel); AudioReadError naming the file when it cannot be read."""
    from sampleforge.audio.io import read_audio

    return torch.from_numpy(read_audio(path, sample_rate))[None, None].expand(1, channels, -1)


def finish_foreign(raw: Tensor, normalize: str | None) -> Tensor:
    """Other people's models: peak-normalised (no drum-specific onset alignment or tail trimming), or only
    cleaned of NaN and kept within [-1, 1] when ``normalize`` is None."""
    return peak_normalize(raw) if normalize else torch.nan_to_num(raw.float()).clamp(-1, 1)
