"""audio-diffusion-pytorch checkpoints as a backend, sampled with sampleforge's own samplers.

The supported model is the waveform ``DiffusionModel(net_t=UNetV0, VDiffusion, VSampler)`` that
tiny-audio-diffusion trains on drum one-shots (``DRUM_UNET``: stereo, 44.1 kHz, unconditional). A Lightning
``.ckpt`` is read with ``torch.load(weights_only=True)`` (tensors and plain containers only); the EMA weights
(``model_ema.ema_model.*``) are used when present, else ``model.*``. Another network shape goes in a JSON file
next to the checkpoint (``<name>.json`` or ``config.json``: the ``UNetV0`` keyword arguments).

v-diffusion in k-diffusion form: the network sees ``x_vp = x / sqrt(1 + s^2)`` at time ``t = atan(s) * 2 / pi``
and predicts ``v``; ``x0 = cos(a) x_vp - sin(a) v`` with ``a = t * pi / 2``. Our ``ddim`` on the levels
``s = tan(linspace(1, 0, steps + 1) * pi / 2)`` is the package's own ``VSampler`` (up to the first level, which
is capped at ``T_MAX`` because ``tan(pi / 2)`` is infinite).

The package imports ``torchaudio.transforms`` at module level for a mel front end this model does not use:
where torchaudio is absent, an empty stand-in module takes its place (``import_adp``).
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sampleforge.backends import memory
from sampleforge.backends.base import (
    DTYPES,
    BackendOptions,
    Callback,
    Generation,
    ParamSpace,
    RunMixin,
    batch,
    finish_foreign,
    fit_channels,
    resolve_in,
)
from sampleforge.errors import CheckpointError, UserInputError
from sampleforge.params import GenerationParams

SAMPLE_RATE = 44100
DRUM_LENGTH = 32768  # tiny-audio-diffusion exp/drum_diffusion.yaml `length` (0.743 s)
DRUM_UNET: dict[str, Any] = {  # exp/drum_diffusion.yaml
    "in_channels": 2,
    "channels": [32, 32, 64, 64, 128, 128, 256, 256],
    "factors": [1, 2, 2, 2, 2, 2, 2, 2],
    "items": [2, 2, 2, 2, 2, 2, 4, 4],
    "attentions": [0, 0, 0, 0, 0, 1, 1, 1],
    "attention_heads": 8,
    "attention_features": 64,
}
T_MAX = 1.0 - 1e-4  # the first level: tan(T_MAX * pi / 2) ~ 6366 instead of infinity
SAMPLERS = ("ddim", "euler", "euler_ancestral", "heun", "dpmpp_2m")
PREFIXES = ("model_ema.ema_model.", "model.", "")
INSTALL = "pip install --no-deps audio-diffusion-pytorch==0.1.3 a-unet==0.0.16 einops"


def import_adp() -> types.ModuleType:
    """``audio_diffusion_pytorch``, imported with an empty torchaudio stand-in where torchaudio is not installed.
    The stand-in leaves ``sys.modules`` once the package holds it: left there, it would tell other libraries in
    the process that torchaudio is installed (diffusers then fails to import its Stable Audio modules)."""
    for mod in ("audio_diffusion_pytorch", "a_unet", "einops"):
        if importlib.util.find_spec(mod) is None:
            raise CheckpointError(f"audio-diffusion-pytorch checkpoints need {mod}: {INSTALL}")
    if "audio_diffusion_pytorch" in sys.modules or "torchaudio" in sys.modules \
            or importlib.util.find_spec("torchaudio") is not None:
        import audio_diffusion_pytorch

        return audio_diffusion_pytorch
    stand_in = types.ModuleType("torchaudio")
    stand_in.transforms = types.ModuleType("torchaudio.transforms")  # type: ignore[attr-defined]
    sys.modules["torchaudio"] = stand_in
    sys.modules["torchaudio.transforms"] = stand_in.transforms  # type: ignore[attr-defined]
    try:
        import audio_diffusion_pytorch
    finally:
        del sys.modules["torchaudio"], sys.modules["torchaudio.transforms"]
    return audio_diffusion_pytorch


def build_model(unet: dict[str, Any] | None = None, seed: int | None = None) -> nn.Module:
    """``DiffusionModel(net_t=UNetV0, VDiffusion, VSampler, **unet)`` (default: the drum config), eval mode."""
    adp = import_adp()
    if seed is not None:
        torch.manual_seed(seed)
    model = adp.DiffusionModel(net_t=adp.UNetV0, diffusion_t=adp.VDiffusion, sampler_t=adp.VSampler,
                               **(unet or DRUM_UNET))
    return model.eval()


def downsample_factor(unet: dict[str, Any]) -> int:
    return int(math.prod(unet["factors"]))


def read_unet_config(ckpt: Path) -> dict[str, Any]:
    """The UNetV0 arguments next to ``ckpt`` (``<stem>.json`` or ``config.json``), else the drum config."""
    for side in (ckpt.with_suffix(".json"), ckpt.parent / "config.json"):
        if side.is_file():
            try:
                data = json.loads(side.read_text())
            except ValueError as exc:
                raise CheckpointError(f"{side}: not valid JSON ({exc})") from None
            if not isinstance(data, dict) or "channels" not in data:
                raise CheckpointError(f"{side}: expected the UNetV0 arguments (in_channels, channels, factors, ...)")
            return data
    return dict(DRUM_UNET)


def read_state(ckpt: Path, expected: Sequence[str]) -> dict[str, Tensor]:
    """The model's tensors from a Lightning checkpoint (EMA first), read without unpickling objects."""
    from sampleforge.legacy import load_weights_only

    obj = load_weights_only(ckpt)
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{ckpt}: no state_dict inside")
    for prefix in PREFIXES:
        if all(prefix + k in state for k in expected):
            return {k: state[prefix + k] for k in expected}
    missing = next(k for k in expected if "model." + k not in state)
    raise CheckpointError(f"{ckpt}: missing model.{missing} (not a checkpoint of this network; put its UNetV0 "
                          f"arguments in {ckpt.with_suffix('.json').name})")


class VDenoiser:
    """A v-diffusion network (time t in [0, 1]) as a VE denoiser ``(x, sigma, cond) -> x0``."""

    def __init__(self, net: nn.Module) -> None:
        self.net = net

    def __call__(self, x: Tensor, sigma: Tensor, cond: Any = None) -> Tensor:
        s = sigma.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)
        alpha, beta = 1 / (1 + s**2).sqrt(), s / (1 + s**2).sqrt()
        t = torch.atan(sigma.float()) * 2 / math.pi
        v = self.net(x * alpha, t.to(x.dtype))
        return alpha * (x * alpha) - beta * v


def v_sigmas(steps: int) -> Tensor:
    """(steps + 1,) VE levels of VSampler's linear time grid, the first capped at T_MAX, the last 0."""
    t = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    t[0] = T_MAX
    return torch.tan(t * math.pi / 2).clamp(min=0)


class ADPBackend(RunMixin):
    """An unconditional audio-diffusion-pytorch waveform model behind the backend interface."""

    kind = "audio-diffusion-pytorch"

    def __init__(self, ckpt: Path | None, options: BackendOptions | None = None, spec: str | None = None,
                 model: nn.Module | None = None, unet: dict[str, Any] | None = None) -> None:

        self.options = options or BackendOptions()
        self.device = self.options.torch_device()
        self.unet = unet or (read_unet_config(ckpt) if ckpt is not None else dict(DRUM_UNET))
        if model is None:
            if ckpt is None:
                raise CheckpointError("an audio-diffusion-pytorch backend needs a .ckpt file")
            model = build_model(self.unet)
            model.load_state_dict(read_state(ckpt, list(model.state_dict())))
        net: nn.Module = model.net  # type: ignore[assignment]
        if self.options.quantize == "int8":
            if self.device.type != "cpu" or self.options.precision != "fp32":
                raise UserInputError("int8 quantisation runs on the CPU in fp32 (use --device cpu --precision fp32)")
            net = memory.quantize_int8(net)
        self.net = net.to(self.device, DTYPES[self.options.precision]).eval().requires_grad_(False)
        self.path = ckpt
        self.name = ckpt.stem if ckpt is not None else "audio-diffusion-pytorch"
        self.id = spec or (str(ckpt) if ckpt else self.name)
        self.sample_rate = SAMPLE_RATE
        self.channels = int(self.unet["in_channels"])
        self.hop = downsample_factor(self.unet)
        self.precision = self.options.precision
        self.notes = ["CPU offload needs a CUDA device; running without it"] if self.options.offload == "model" \
            and not memory.cpu_offload_available(self.device) else []
        if self.options.decode_chunk is not None:
            self.notes.append("decode_chunk: a waveform model has no decoder; ignored")
        self._space = ParamSpace(
            samplers=SAMPLERS, min_duration=0.1, max_duration=30.0, default_duration=DRUM_LENGTH / SAMPLE_RATE,
            default_steps=50, default_cfg=0.0, channels=1 if self.options.channels == "mono" else self.channels,
            conditioned=False, sampling=("eta",),  # sampleforge's samplers on fixed v-diffusion levels
        )
        self.samplers = self._space.samplers

    @property
    def space(self) -> ParamSpace:
        return self._space

    def check_prompt(self, prompt: str) -> list[str]:
        return ["this model is unconditional: the prompt is ignored"] if prompt.strip() else []

    def vocab(self) -> dict[str, int]:
        return {}

    def length(self, duration: float) -> int:
        """Samples for ``duration`` seconds, rounded up to a multiple of the U-Net's downsampling."""
        n = int(round(duration * SAMPLE_RATE))
        return -(-n // self.hop) * self.hop

    def resolve(self, params: GenerationParams) -> GenerationParams:
        return resolve_in(self._space, params, self.precision)

    def run(self, params: GenerationParams, prompts: Sequence[str] | None = None, vocoder: bool = True,
            callback: Callback | None = None, normalize: str | None = "peak") -> Generation:
        """Clip k starts from ``torch.randn((C, T), generator=Generator().manual_seed(seed + k))``."""
        from sampleforge.diffusion.samplers import get_sampler

        p = self.resolve(params)
        b = batch(p, prompts)
        assert p.duration is not None and p.sampler is not None and p.steps is not None
        warnings = sorted({w for x in set(b.prompts) for w in self.check_prompt(x)}) + list(self.notes)
        if p.cfg_scale:
            warnings.append("this model is unconditional: cfg_scale has no effect")
        if p.knobs():
            warnings.append(f"{self.name} has no timbre knobs: {', '.join(sorted(p.knobs()))} ignored")
        length = self.length(p.duration)
        gens = [torch.Generator().manual_seed(s) for s in b.seeds]
        noise = torch.stack([torch.randn(self.channels, length, generator=g) for g in gens])
        sigmas = v_sigmas(p.steps)
        x = (noise * math.sqrt(float(sigmas[0]) ** 2 + 1)).to(self.device, DTYPES[self.precision])
        with memory.measure_peak(self.device) as peak, torch.inference_mode():
            out = get_sampler(p.sampler)(VDenoiser(self.net), x, sigmas, generator=gens, callback=callback,
                                         eta=p.eta)
        raw = out.float().cpu()[..., : int(round(p.duration * SAMPLE_RATE))]
        stats = {"sample_s": peak.seconds} | ({"sample_peak_mib": peak.mib} if peak.mib is not None else {})
        raw = fit_channels(raw, p.channels or self.options.channels)
        return Generation(audio=finish_foreign(raw, normalize), prompts=b.prompts, seeds=b.seeds, params=p,
                          warnings=warnings, latents=out.float().cpu(), raw=raw, stats=stats)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "format": "audio-diffusion-pytorch", "path": str(self.path), "id": self.id,
                "sample_rate": self.sample_rate, "unet": self.unet,
                "parameters": sum(p.numel() for p in self.net.parameters()),
                "samplers": {s: "sampleforge's sampler on v-diffusion levels" for s in SAMPLERS},
                "space": self._space.as_dict()}
