"""The drum waveform-diffusion peer a user would otherwise pick, rebuilt for timing only.

tiny-audio-diffusion (github.com/crlandsc/tiny-audio-diffusion, ``exp/drum_diffusion.yaml``) trains
audio-diffusion-pytorch's ``DiffusionModel(net_t=UNetV0, VDiffusion, VSampler)`` on drum one-shots:
stereo, 44.1 kHz, ``length: 32768`` samples (2^15 = 0.743 s), unconditional (so no CFG: one U-Net
forward per step), 50 sampling steps. We build that network with random weights; speed does not
depend on the weights.

Install (benchmark-only extra ``bench``)::

    .venv/bin/pip install --no-deps audio-diffusion-pytorch==0.1.3 a-unet==0.0.16 einops

``--no-deps`` because their declared dependencies would add torchaudio (which we never use and which
may not match our torch) and data-science-types (stub packages that shadow numpy's own type hints).
audio-diffusion-pytorch imports ``torchaudio.transforms`` at module level for a mel front end we do not
use; :func:`build_peer` puts an empty stand-in module in ``sys.modules`` when torchaudio is absent.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from benchmarks import timing
from sampleforge.backends import adp

SAMPLE_RATE = adp.SAMPLE_RATE
PEER_LENGTH = adp.DRUM_LENGTH  # exp/drum_diffusion.yaml `length`
PEER_CHANNELS = 2  # exp/drum_diffusion.yaml `channels` (stereo)
PEER_STEPS = 50  # exp/drum_diffusion.yaml SampleLogger `sampling_steps: [50]`
PEER_DOWNSAMPLE = adp.downsample_factor(adp.DRUM_UNET)  # lengths must be multiples of it
PEER_UNET: dict[str, Any] = adp.DRUM_UNET  # the drum configuration (sampleforge/backends/adp.py runs its checkpoints)


def peer_missing() -> str | None:
    """None when the peer can be built, else the sentence telling how to install it."""
    for mod in ("audio_diffusion_pytorch", "a_unet", "einops"):
        if importlib.util.find_spec(mod) is None:
            return (
                f"{mod} is not installed; for the peer comparison run: .venv/bin/pip install --no-deps "
                "audio-diffusion-pytorch==0.1.3 a-unet==0.0.16 einops"
            )
    return None


def build_peer(seed: int = 0) -> nn.Module:
    """tiny-audio-diffusion's drum ``DiffusionModel`` with random weights, in eval mode."""
    return adp.build_model(PEER_UNET, seed=seed)


def peer_length(seconds: float) -> int:
    """Samples for ``seconds`` of audio, rounded up to a length the U-Net accepts."""
    n = int(round(seconds * SAMPLE_RATE))
    return -(-n // PEER_DOWNSAMPLE) * PEER_DOWNSAMPLE


def forward_fn(model: nn.Module, length: int, batch: int = 1) -> Callable[[], Any]:
    """One U-Net forward of ``model`` on fixed noise (batch, 2, length), as a call to time (no warm-up)."""
    net: Any = model.net
    x = torch.randn(batch, PEER_CHANNELS, length)
    sigma = torch.full((batch,), 0.5)

    def forward() -> Any:
        with torch.inference_mode():
            return net(x, sigma)

    return forward


def time_forward(model: nn.Module, length: int, batch: int = 1, repeats: int = 3) -> tuple[float, float]:
    """(wall, CPU) median seconds of one U-Net forward on noise (batch, 2, length), after a warm-up call.

    CPU seconds are this process's, summed over threads: on a busy shared machine they estimate the wall time
    an idle machine would give (for one thread)."""
    forward = forward_fn(model, length, batch)
    forward()
    times = timing.in_turn({"forward": forward}, repeats)["forward"]
    return timing.median(times["wall"]), timing.median(times["cpu"])


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
