"""One entry point for the pipeline: network + conditions -> latents (denoiser, guidance, sigmas, noise, sampler)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from sampleforge.diffusion.denoiser import PREDICTIONS, DiscreteDenoiser, FlowDenoiser, Network
from sampleforge.diffusion.guidance import guidance
from sampleforge.diffusion.samplers import (
    FLOW_SAMPLERS,
    SAMPLERS,
    Callback,
    GeneratorArg,
    get_sampler,
    randn_like,
)
from sampleforge.diffusion.schedules import SPACINGS, flow_times, sampling_sigmas
from sampleforge.errors import ParamError, UserInputError

SCHEDULES: tuple[str, ...] = ("uniform", *SPACINGS)  # "uniform" = "leading", diffusers DDIM's default


def generate_latents(
    net: Network,
    cond: Tensor,
    uncond: Tensor,
    shape: Sequence[int],
    *,
    steps: int,
    sampler: str,
    cfg_scale: float | Sequence[float],
    alphas_cumprod: Tensor | None = None,
    prediction: str = "eps",
    schedule: str = "uniform",
    eta: float | None = None,
    generator: GeneratorArg = None,
    callback: Callback | None = None,
    noise: Tensor | None = None,
    steps_offset: int = 0,
    flow_shift: float = 1.0,
    init: Tensor | None = None,
    strength: float = 1.0,
) -> Tensor:
    """Sample latents (B, *shape) from ``net`` conditioned on ``cond`` (B, D) with CFG against ``uncond``.

    - ``net(x_in (B', *shape), t (B',), cond (B', D)) -> (B', *shape)``, B' = B or 2B (CFG batches both passes);
      prediction "eps" | "v" | "x0" (a DDPM model on ``alphas_cumprod`` (T,), t a float timestep) or "flow"
      (a velocity model, t in [0, 1]; ``alphas_cumprod`` unused).
    - ``shape``: ONE sample's latent shape, (C, W).
    - ``sampler``: a name in SAMPLERS; flow models take flow_euler / flow_heun (or pingpong, for
      distilled ones), DDPM models the others.
    - ``schedule``: "uniform" (= "leading", diffusers DDIM), "trailing", "linspace" or "karras" for DDPM
      models; flow models use uniform times, shifted by ``flow_shift``.
    - ``eta``: None = the sampler's default (ddim 0, euler_ancestral 1).
    - ``steps_offset`` shifts the "uniform" schedule's timesteps; ``flow_shift`` a flow model's times.
    - start noise: ``noise`` (B, *shape) standard normal if given, else drawn from ``generator`` (one
      generator, or B generators: sample b uses generator b for its start noise and every later draw, so
      seeds s, s+1, ... in one batch give the same clips as one by one). It is scaled to the first level:
      ``sqrt(sigma_max^2 + 1)`` for DDPM models (exactly a DDPM's unit-variance x_T), 1 for flow.
    - ``init`` (B, *shape) clean latents to start from (audio-to-audio) with ``strength`` in [0, 1]: the
      sampler runs only the last ``round(strength * steps)`` steps of its grid, from ``init`` noised to that
      level (``init + sigma * noise``; flow: ``(1 - t) init + t noise``). Strength 0 returns ``init``; strength
      1 (or no ``init``) starts from pure noise and ignores ``init``.
    - ``callback(done, total)`` after each step. Runs under ``torch.no_grad``; device/dtype follow ``cond``.
    """
    batch = _check_inputs(cond, uncond, prediction, sampler)
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0.0 <= strength <= 1.0:
        raise ParamError("strength", f"must be a number between 0 and 1, got {strength!r}")
    sample_fn = get_sampler(sampler)
    device, dtype = cond.device, cond.dtype
    if prediction == "flow":
        if schedule != "uniform":
            raise UserInputError(
                f"flow models use uniform (optionally shifted) times, not schedule {schedule!r}"
            )
        if steps_offset:
            raise ParamError("steps_offset", "applies to DDPM models; a flow model takes flow_shift",
                             mentions=("flow_shift",))
        sigmas = flow_times(steps, flow_shift)  # float64 on the CPU; samplers cast and move it
        denoiser: DiscreteDenoiser | FlowDenoiser = FlowDenoiser(net)
        start_scale = 1.0
    else:
        if alphas_cumprod is None:
            raise UserInputError(f"a {prediction!r}-prediction model needs its training alphas_cumprod")
        if schedule not in SCHEDULES:
            raise UserInputError(f"unknown schedule {schedule!r} (valid: {', '.join(SCHEDULES)})")
        if flow_shift != 1.0:
            raise ParamError("flow_shift", "applies to flow models only")
        if steps_offset and schedule != "uniform":
            raise ParamError("steps_offset", f"applies to the 'uniform' (leading) spacing; this model samples "
                             f"{schedule!r}")
        spacing = "leading" if schedule == "uniform" else schedule
        sigmas = sampling_sigmas(alphas_cumprod, steps, spacing, steps_offset=steps_offset)
        denoiser = DiscreteDenoiser(net, alphas_cumprod, prediction)
        start_scale = math.sqrt(float(sigmas[0]) ** 2 + 1)

    full_shape = (batch, *(int(s) for s in shape))
    if noise is None:
        noise = randn_like(torch.empty(full_shape, device=device, dtype=dtype), generator)
    elif tuple(noise.shape) != full_shape:
        raise UserInputError(f"noise has shape {tuple(noise.shape)}, expected {full_shape}")
    noise = noise.to(device=device, dtype=dtype)
    if init is not None and strength < 1.0:
        if tuple(init.shape) != full_shape:
            raise UserInputError(f"init has shape {tuple(init.shape)}, expected {full_shape}")
        init = init.to(device=device, dtype=dtype)
        run = int(round(strength * steps))
        if run == 0:
            return init.clone()
        sigmas = sigmas[steps - run :]
        level = float(sigmas[0])
        x = (1.0 - level) * init + level * noise if prediction == "flow" else init + level * noise
    else:
        x = noise * start_scale
    guided = guidance(denoiser, cfg_scale, uncond=uncond.to(device=device, dtype=dtype))
    with torch.no_grad():
        return sample_fn(guided, x, sigmas, cond=cond, generator=generator, callback=callback, eta=eta)


def _check_inputs(cond: Tensor, uncond: Tensor, prediction: str, sampler: str) -> int:
    """Validate generate_latents' arguments; returns the batch size."""
    if cond.ndim < 2:
        raise UserInputError(f"cond must be (B, D), got shape {tuple(cond.shape)}")
    if uncond.shape[1:] != cond.shape[1:] or uncond.shape[0] not in (1, cond.shape[0]):
        raise UserInputError(
            f"uncond shape {tuple(uncond.shape)} does not match cond shape {tuple(cond.shape)}"
        )
    if prediction not in PREDICTIONS:
        raise UserInputError(f"unknown prediction {prediction!r} (valid: {', '.join(PREDICTIONS)})")
    if sampler not in SAMPLERS:
        get_sampler(sampler)  # raises, listing the valid names
    if (prediction == "flow") != (sampler in FLOW_SAMPLERS):
        valid = sorted(FLOW_SAMPLERS) if prediction == "flow" else sorted(set(SAMPLERS) - FLOW_SAMPLERS)
        raise ParamError("sampler", f"{sampler!r} does not fit a {prediction!r} model (use one of: {', '.join(valid)})")
    return int(cond.shape[0])
