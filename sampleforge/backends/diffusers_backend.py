"""diffusers pipelines as a backend: Stable Audio Open 1.0 (``StableAudioPipeline``), Stable Audio 3
(``StableAudio3Pipeline`` with its audio-to-audio and inpaint variants) and ``AudioLDM2Pipeline``.

The pipeline samples the latents (``output_type="latent"``); decoding is ours, so that it can run in chunks
and so that ``sweep`` sees every stage. Seeds go through CPU ``torch.Generator``s (one per clip: clip k uses
seed + k), so a seed gives the same audio on any device and equals the direct pipeline call with
``generator=torch.Generator().manual_seed(seed)``. ``duration`` maps to the pipeline's length argument and
``cfg_scale`` to its ``guidance_scale``.
"""

from __future__ import annotations

import inspect
import json
import logging
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sampleforge.backends import memory, schedulers
from sampleforge.backends.base import (
    AUDIO_SETTINGS,
    DTYPES,
    BackendOptions,
    Callback,
    Generation,
    ParamSpace,
    RunMixin,
    batch,
    finish_foreign,
    fit_channels,
    read_init_audio,
    resolve_in,
)
from sampleforge.errors import CheckpointError, ParamError, UserInputError
from sampleforge.params import GenerationParams

log = logging.getLogger("sampleforge.backends")

FAMILIES = {
    "StableAudioPipeline": "stable-audio",
    "StableAudio3Pipeline": "stable-audio-3",
    "StableAudio3AudioToAudioPipeline": "stable-audio-3",
    "StableAudio3InpaintPipeline": "stable-audio-3",
    "AudioLDM2Pipeline": "audioldm2",
}
SETTINGS = {"stable-audio-3": AUDIO_SETTINGS}
MAX_DURATION = 600.0
DECODE_OVERLAP = 8  # latent frames of context on each side of a decode chunk


@contextmanager
def quiet() -> Iterator[None]:
    """The libraries' deprecation notices and numerical warnings stay out of the user's terminal."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def silence_libraries() -> None:
    """diffusers' and transformers' progress bars and info logs stay out of the user's terminal."""
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    # critical only: diffusers logs an "error" when a folder ships .bin weights instead of .safetensors and then
    # loads them fine; a load that fails raises, and that is what the user is told
    diffusers.utils.logging.set_verbosity(logging.CRITICAL)


@dataclass(frozen=True)
class Geometry:
    """How one family's latents map to time: ``time_dim`` of the latents, output samples per latent frame."""

    time_dim: int
    samples_per_frame: float


def _family(path: Path) -> tuple[str, str]:
    index = json.loads((path / "model_index.json").read_text())
    cls = str(index.get("_class_name"))
    if cls not in FAMILIES:
        raise CheckpointError(f"{path}: {cls} is not supported (supported: {', '.join(sorted(FAMILIES))})")
    return cls, FAMILIES[cls]


class DiffusersBackend(RunMixin):
    """A diffusers audio pipeline behind sampleforge's backend interface."""

    kind = "diffusers"

    def __init__(self, path: Path, options: BackendOptions | None = None, spec: str | None = None) -> None:
        import diffusers

        silence_libraries()
        self.options = options or BackendOptions()
        self.path = path
        self.pipeline_class, self.family = _family(path)
        self.device = self.options.torch_device()
        dtype = DTYPES[self.options.precision]
        cls = getattr(diffusers, "StableAudio3Pipeline" if self.family == "stable-audio-3" else self.pipeline_class)
        try:
            with quiet():
                pipe = cls.from_pretrained(str(path), dtype=dtype, local_files_only=True)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"{path}: {self.pipeline_class} does not load: {first}") from None
        pipe.set_progress_bar_config(disable=True)
        self.notes: list[str] = []
        self.precision = self.options.precision
        if self.options.quantize == "int8":
            if self.device.type != "cpu" or self.options.precision != "fp32":
                raise UserInputError("int8 quantisation runs on the CPU in fp32 (use --device cpu --precision fp32)")
            name = "unet" if self.family == "audioldm2" else "transformer"
            setattr(pipe, name, memory.quantize_int8(getattr(pipe, name)))
        if self.options.offload == "model" and memory.cpu_offload_available(self.device):
            pipe.enable_model_cpu_offload(device=self.device)
        else:
            if self.options.offload == "model":
                self.notes.append("CPU offload needs a CUDA device; running without it")
            pipe.to(self.device)
        self.pipe = pipe
        self.name = path.name if not (spec or "").startswith("hf:") else str(spec)[3:]
        self.id = spec or str(path)
        self.native_scheduler = pipe.scheduler
        self.sample_rate = self._sample_rate()
        self._space = self._make_space()
        self.samplers = self._space.samplers

    # ---- the model's geometry ------------------------------------------------------------------------
    def _sample_rate(self) -> int:
        if self.family == "audioldm2":
            return int(self.pipe.vocoder.config.sampling_rate)
        return int(self.pipe.vae.config.sampling_rate)

    def geometry(self) -> Geometry:
        if self.family == "audioldm2":
            voc = self.pipe.vocoder.config
            per_mel_frame = float(torch.tensor(voc.upsample_rates).prod())
            return Geometry(2, per_mel_frame * self.pipe.vae_scale_factor)
        if self.family == "stable-audio":
            return Geometry(-1, float(self.pipe.vae.hop_length))
        return Geometry(-1, float(self.pipe.vae.downsampling_ratio))

    def call_defaults(self) -> tuple[int, float]:
        """The pipeline's own steps and guidance scale: its ``__call__`` defaults (Stable Audio 3 leaves steps
        to its scheduler: 8 for the distilled ping-pong model, else 100, as the pipeline decides)."""
        params = inspect.signature(type(self.pipe).__call__).parameters
        steps = params["num_inference_steps"].default
        if steps is None and self.family == "stable-audio-3":
            steps = 8 if self.native_scheduler.config.get("stochastic_sampling") else 100
        return int(steps), float(params["guidance_scale"].default)

    def _make_space(self) -> ParamSpace:
        sr = self.sample_rate
        steps, cfg = self.call_defaults()
        if self.family == "stable-audio":
            top = self.pipe.transformer.config.sample_size * self.pipe.vae.hop_length / sr
            channels = int(self.pipe.vae.config.audio_channels)
        elif self.family == "stable-audio-3":
            top, channels = MAX_DURATION, int(self.pipe.vae.config.audio_channels)
        else:
            top, channels = MAX_DURATION, 1
        low = self.geometry().samples_per_frame / sr
        default = min(10.0, top)
        return ParamSpace(
            samplers=schedulers.sampler_names(self.family), min_duration=max(low, 0.1),
            max_duration=float(top), default_duration=float(default), default_steps=steps, default_cfg=cfg,
            channels=1 if self.options.channels == "mono" else channels, settings=SETTINGS.get(self.family, ()),
            sampling=self._sampling(),
        )

    def _sampling(self) -> tuple[str, ...]:
        """The sampler settings some sampler of this pipeline applies: DDIM's eta (AudioLDM2's own scheduler), a
        flow model's fixed time shift (Stable Audio 3)."""
        names = schedulers.sampler_names(self.family)
        eta = any(schedulers.takes_eta(self.family, n, self.native_scheduler) for n in names)
        shift = self.family == "stable-audio-3" and schedulers.shifts_time(self.native_scheduler)
        return ("eta",) * eta + ("flow_shift",) * shift

    @property
    def space(self) -> ParamSpace:
        return self._space

    # ---- prompts -------------------------------------------------------------------------------------
    def check_prompt(self, prompt: str) -> list[str]:
        """Text models read any prompt; only an over-long one is worth a warning."""
        tok = getattr(self.pipe, "tokenizer", None)
        limit = getattr(tok, "model_max_length", None)
        if tok is None or not isinstance(limit, int) or limit > 100_000:
            return []
        n = len(tok(prompt).input_ids)
        return [f"prompt is {n} tokens; the text encoder reads the first {limit}"] if n > limit else []

    def vocab(self) -> dict[str, int]:
        return {}

    # ---- generation ----------------------------------------------------------------------------------
    def _length_kwargs(self, duration: float) -> dict[str, Any]:
        if self.family == "stable-audio":
            return {"audio_start_in_s": 0.0, "audio_end_in_s": duration}
        if self.family == "audioldm2":
            return {"audio_length_in_s": duration}
        return {"duration": duration}

    def _pipeline_for(self, p: GenerationParams) -> tuple[Any, dict[str, Any]]:
        """The pipeline object and extra call arguments (SA3: text-to-audio, audio-to-audio or inpainting)."""
        if p.init_audio is None:
            given = [n for n in ("init_noise", "mask_start", "mask_end") if getattr(p, n) is not None]
            if given:
                raise ParamError(given[0], "needs the audio to start from (init_audio)", mentions=("init_audio",))
            return self.pipe, {}
        import diffusers

        audio = read_init_audio(p.init_audio, self.sample_rate, int(self.pipe.vae.config.audio_channels))
        if p.mask_start is not None or p.mask_end is not None:
            pipe = diffusers.StableAudio3InpaintPipeline.from_pipe(self.pipe)
            return pipe, {"audio": audio, "mask_start_seconds": p.mask_start, "mask_end_seconds": p.mask_end}
        pipe = diffusers.StableAudio3AudioToAudioPipeline.from_pipe(self.pipe)
        return pipe, {"audio": audio, "init_noise_level": 1.0 if p.init_noise is None else p.init_noise}

    def _progress(self, callback: Callback | None, steps: int) -> dict[str, Any]:
        if callback is None:
            return {}
        if self.family == "stable-audio-3":
            def on_step_end(pipe: Any, i: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
                callback(i + 1, steps)
                return kwargs

            return {"callback_on_step_end": on_step_end}
        return {"callback": lambda i, t, latents: callback(i + 1, steps), "callback_steps": 1}

    def sample(self, p: GenerationParams, prompts: list[str], seeds: list[int],
               callback: Callback | None = None) -> Tensor:
        """The pipeline's sampling loop only -> latents (B, ...)."""
        assert p.sampler is not None and p.duration is not None and p.steps is not None
        steps, duration = p.steps, p.duration
        pipe, extra = self._pipeline_for(p)
        pipe.scheduler = schedulers.build_scheduler(self.family, p.sampler, self.native_scheduler, p.flow_shift)
        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        if "audio" in extra:  # one reference clip for every prompt of the batch
            extra["audio"] = extra["audio"].to(self.device, self.pipe.vae.dtype).expand(len(prompts), -1, -1)
        kwargs: dict[str, Any] = {
            "prompt": prompts, "num_inference_steps": steps, "guidance_scale": p.cfg_scale,
            "generator": generators if len(generators) > 1 else generators[0],
            "output_type": "latent", **self._length_kwargs(duration), **extra, **self._progress(callback, steps),
        }
        if self.family == "audioldm2":
            kwargs["num_waveforms_per_prompt"] = 1
        if p.eta is not None:  # resolve() let it through only for a scheduler that takes it
            kwargs["eta"] = p.eta
        accepted = inspect.signature(pipe.__call__).parameters
        kwargs = {k: v for k, v in kwargs.items() if k in accepted}  # SA3 audio-to-audio: no guidance_scale
        try:
            with quiet():
                return pipe(**kwargs).audios
        finally:
            pipe.scheduler = self.native_scheduler

    def decode(self, latents: Tensor, duration: float, chunk: float | None = None) -> tuple[Tensor, Tensor | None]:
        """latents -> (waveform (B, C, T) cut to ``duration``, mel (AudioLDM2) or None); in chunks of
        ``chunk`` seconds when set."""
        geo = self.geometry()
        vae = self.pipe.vae
        if self.family == "audioldm2":
            def run(z: Tensor) -> Tensor:
                return vae.decode(z / vae.config.scaling_factor).sample
        else:
            def run(z: Tensor) -> Tensor:
                return vae.decode(z).sample
        with torch.inference_mode():
            decoded = self._decode_pieces(run, latents.to(vae.dtype), geo, chunk)
            mel = None
            if self.family == "audioldm2":
                mel = decoded
                wav = self.pipe.mel_spectrogram_to_waveform(decoded).unsqueeze(1)
            else:
                wav = decoded
        wav = wav[..., : int(duration * self.sample_rate)].float()
        if hasattr(self.pipe, "maybe_free_model_hooks"):
            self.pipe.maybe_free_model_hooks()
        return wav, mel

    def _decode_pieces(self, run: Callable[[Tensor], Tensor], latents: Tensor, geo: Geometry,
                       chunk_s: float | None) -> Tensor:
        if chunk_s is None:
            return run(latents)
        frames = max(1, int(round(chunk_s * self.sample_rate / geo.samples_per_frame)))
        return memory.in_chunks(run, latents, frames, DECODE_OVERLAP, dim=geo.time_dim)

    def resolve(self, params: GenerationParams) -> GenerationParams:
        """Fill sampler ("native"), duration and seed from the model; check them against it: eta only for a
        sampler that takes it, flow_shift not with audio-to-audio (the shift would move the start level that
        ``init_noise`` sets)."""
        p = resolve_in(self._space, params, self.precision)
        assert p.sampler is not None
        if p.eta is not None and not schedulers.takes_eta(self.family, p.sampler, self.native_scheduler):
            takers = [n for n in self._space.samplers if schedulers.takes_eta(self.family, n, self.native_scheduler)]
            raise ParamError("eta", f": sampler {p.sampler!r} does not use it (only {', '.join(takers)})",
                             mentions=("sampler",))
        if p.flow_shift != 1.0 and p.init_audio is not None and p.mask_start is None and p.mask_end is None:
            raise ParamError("flow_shift", ": does not combine with init_audio (it would move the noise level that "
                             "init_noise sets)", mentions=("init_audio", "init_noise"))
        return p

    def run(self, params: GenerationParams, prompts: Sequence[str] | None = None, vocoder: bool = True,
            callback: Callback | None = None, normalize: str | None = "peak") -> Generation:
        """``params.count`` clips per prompt -> Generation with audio (B, T) (mono) or (B, C, T), peak 0.95
        unless ``normalize`` is None. ``vocoder`` is accepted for the interface (the model's own is used)."""
        p = self.resolve(params)
        b = batch(p, prompts)
        assert p.duration is not None
        warnings = list(self.notes)
        if p.knobs():
            warnings.append(f"{self.name} has no timbre knobs: {', '.join(sorted(p.knobs()))} ignored")
        with memory.measure_peak(self.device) as sample_peak:
            latents = self.sample(p, b.prompts, b.seeds, callback)
        chunk = p.decode_chunk if p.decode_chunk is not None else self.options.decode_chunk
        with memory.measure_peak(self.device) as decode_peak:
            raw, mel = self.decode(latents, p.duration, chunk)
        if self.family == "stable-audio-3":
            raw = raw.clamp(-1.0, 1.0)  # as the pipeline does
        stats = {"sample_s": sample_peak.seconds, "decode_s": decode_peak.seconds}
        for label, peak in (("sample", sample_peak), ("decode", decode_peak)):
            if peak.mib is not None:
                stats[f"{label}_peak_mib"] = peak.mib
        raw = fit_channels(raw.cpu(), p.channels or self.options.channels)
        return Generation(audio=finish_foreign(raw, normalize), prompts=b.prompts, seeds=b.seeds, params=p,
                          warnings=warnings, latents=latents.float().cpu(),
                          mels=None if mel is None else mel.float().cpu(), raw=raw, stats=stats)

    def describe(self) -> dict[str, Any]:
        comps = {}
        for name, comp in self.pipe.components.items():
            if isinstance(comp, torch.nn.Module):
                comps[name] = {"class": type(comp).__name__,
                               "parameters": sum(p.numel() for p in comp.parameters()),
                               "dtype": str(next(comp.parameters(), torch.empty(0)).dtype).replace("torch.", "")}
            elif comp is not None:
                comps[name] = {"class": type(comp).__name__}
        return {"kind": self.kind, "format": "diffusers", "pipeline": self.pipeline_class, "family": self.family,
                "path": str(self.path), "id": self.id, "sample_rate": self.sample_rate,
                "components": comps, "samplers": schedulers.describe(self.family, self.native_scheduler),
                "space": self._space.as_dict(), "options": asdict(self.options)}
