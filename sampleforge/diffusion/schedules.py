"""Noise schedules: training-time DDPM schedules and the sigma grids samplers walk down.

Conventions (k-diffusion's variance-exploding view of a DDPM):
- a discrete model is trained on ``x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps`` with ``a_t = alphas_cumprod[t]``,
  ``t = 0..T-1``; the same point in VE coordinates is ``x_t / sqrt(a_t) = x0 + sigma_t eps`` with
  ``sigma_t = sqrt((1 - a_t) / a_t)``.
- a sampling grid is a 1-D tensor of ``steps + 1`` decreasing sigmas ending with 0.
- flow-matching grids are times from 1 (pure noise) to 0 (data), with ``x_t = (1 - t) x0 + t noise``.

Every function returns a tensor and takes ``device``/``dtype`` (float64 by default: schedules are small and
their precision matters at the ends; samplers cast to the latents' dtype).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sampleforge.errors import UserInputError

BETA_SCHEDULES: tuple[str, ...] = ("linear", "scaled_linear", "cosine")
SPACINGS: tuple[str, ...] = ("leading", "trailing", "linspace", "karras")


def betas_linear(
    num_steps: int = 1000,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """DDPM's linear betas (Ho et al.; the reference design's 1e-4..0.02) -> (num_steps,)."""
    return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64).to(device=device, dtype=dtype)


def betas_scaled_linear(
    num_steps: int = 1000,
    beta_start: float = 0.00085,
    beta_end: float = 0.012,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Latent diffusion's "scaled_linear" betas (linear in sqrt(beta), as diffusers) -> (num_steps,)."""
    root = torch.linspace(beta_start**0.5, beta_end**0.5, num_steps, dtype=torch.float64)
    return (root**2).to(device=device, dtype=dtype)


def betas_cosine(
    num_steps: int = 1000,
    s: float = 0.008,
    max_beta: float = 0.999,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Nichol & Dhariwal's cosine schedule (diffusers' "squaredcos_cap_v2") -> betas (num_steps,).

    ``alpha_bar(t) = cos((t + s) / (1 + s) * pi / 2)^2``, betas capped at ``max_beta``.
    """

    def alpha_bar(u: float) -> float:
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    betas = [
        min(1 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), max_beta) for i in range(num_steps)
    ]
    return torch.tensor(betas, dtype=torch.float64).to(device=device, dtype=dtype)


def alphas_cumprod(
    schedule: str = "linear",
    num_steps: int = 1000,
    beta_start: float | None = None,
    beta_end: float | None = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """The cumulative product of (1 - beta) for a named schedule -> (num_steps,), decreasing from ~1.

    ``beta_start``/``beta_end`` default to the schedule's own defaults (ignored by "cosine", which
    refuses them rather than dropping them silently).
    """
    if num_steps < 2:
        raise UserInputError(f"a schedule needs at least 2 timesteps, got {num_steps}")
    if schedule == "linear":
        betas = betas_linear(num_steps, *_betas_range(beta_start, beta_end, 1e-4, 0.02))
    elif schedule == "scaled_linear":
        betas = betas_scaled_linear(num_steps, *_betas_range(beta_start, beta_end, 0.00085, 0.012))
    elif schedule == "cosine":
        if beta_start is not None or beta_end is not None:
            raise UserInputError("the cosine schedule takes no beta_start/beta_end")
        betas = betas_cosine(num_steps)
    else:
        raise UserInputError(f"unknown beta schedule {schedule!r} (valid: {', '.join(BETA_SCHEDULES)})")
    if not (0 < float(betas.min()) and float(betas.max()) < 1):
        raise UserInputError(f"betas must lie in (0, 1), got {float(betas.min())}..{float(betas.max())}")
    return torch.cumprod(1 - betas, dim=0).to(device=device, dtype=dtype)


def _betas_range(start: float | None, end: float | None, d_start: float, d_end: float) -> tuple[float, float]:
    return (d_start if start is None else start), (d_end if end is None else end)


def sigmas_from_alphas_cumprod(alphas_cumprod: Tensor) -> Tensor:
    """VE noise levels of a DDPM schedule: (T,) alphas_cumprod -> (T,) ``sqrt((1 - a) / a)``, increasing."""
    return ((1 - alphas_cumprod) / alphas_cumprod).sqrt()


def sampling_timesteps(
    num_train_steps: int, steps: int, spacing: str = "leading", steps_offset: int = 0
) -> Tensor:
    """The discrete timesteps a ``steps``-step sampler visits, highest first -> int64 (steps,).

    Matches diffusers' DDIMScheduler ``timestep_spacing``:
    - "leading": ``arange(steps) * (T // steps) + steps_offset`` (the DDIM paper; diffusers' default);
    - "trailing": ``round(arange(T, 0, -T / steps)) - 1`` (starts at the noisiest step T - 1);
    - "linspace": ``round(linspace(0, T - 1, steps))``.
    """
    if steps < 1 or steps > num_train_steps:
        raise UserInputError(f"steps must be in 1..{num_train_steps}, got {steps}")
    if spacing == "leading":
        ts = torch.arange(steps, dtype=torch.int64) * (num_train_steps // steps) + steps_offset
    elif spacing == "trailing":
        ratio = num_train_steps / steps
        ts = torch.tensor([round(num_train_steps - i * ratio) - 1 for i in range(steps)], dtype=torch.int64)
        return ts
    elif spacing == "linspace":
        ts = torch.linspace(0, num_train_steps - 1, steps, dtype=torch.float64).round().to(torch.int64)
    else:
        raise UserInputError(f"unknown timestep spacing {spacing!r} (valid: leading, trailing, linspace)")
    if int(ts.max()) >= num_train_steps:
        raise UserInputError(f"steps_offset {steps_offset} puts a timestep past {num_train_steps - 1}")
    return ts.flip(0)


def karras_sigmas(
    sigma_min: float,
    sigma_max: float,
    steps: int,
    rho: float = 7.0,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Karras et al. (2022) noise levels -> (steps + 1,): ``steps`` levels from sigma_max to sigma_min
    evenly spaced in ``sigma^(1/rho)``, then a final 0."""
    if not 0 < sigma_min < sigma_max:
        raise UserInputError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
    if steps < 1:
        raise UserInputError(f"steps must be >= 1, got {steps}")
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)]).to(device=device, dtype=dtype)


def sampling_sigmas(
    alphas_cumprod: Tensor,
    steps: int,
    spacing: str = "leading",
    *,
    steps_offset: int = 0,
    rho: float = 7.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """The VE sigma grid for a ``steps``-step sampler of a discrete model -> (steps + 1,), ending with 0.

    ``spacing`` "leading" | "trailing" | "linspace" pick training timesteps as diffusers' DDIMScheduler
    (``sampling_timesteps``) and take their exact sigmas; "karras" spaces ``steps`` sigmas between the
    schedule's smallest and largest (rho=7). The final 0 is the clean sample (diffusers'
    ``set_alpha_to_one=True`` / ``final_sigmas_type="zero"``).
    """
    train_sigmas = sigmas_from_alphas_cumprod(alphas_cumprod.detach().cpu().to(torch.float64))
    if spacing == "karras":
        sig = karras_sigmas(float(train_sigmas[0]), float(train_sigmas[-1]), steps, rho)
    else:
        ts = sampling_timesteps(len(train_sigmas), steps, spacing, steps_offset)
        sig = torch.cat([train_sigmas[ts], train_sigmas.new_zeros(1)])
    return sig.to(device=device, dtype=dtype)


def flow_times(
    steps: int,
    shift: float = 1.0,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> Tensor:
    """Flow-matching time grid -> (steps + 1,) from 1 (noise) to 0 (data).

    Uniform in t, optionally shifted towards the noisy end (SD3's time shift):
    ``t' = shift * t / (1 + (shift - 1) * t)``; ``shift = 1`` is the uniform grid.
    """
    if steps < 1:
        raise UserInputError(f"steps must be >= 1, got {steps}")
    if not shift > 0:
        raise UserInputError(f"flow time shift must be > 0, got {shift}")
    t = torch.linspace(1, 0, steps + 1, dtype=torch.float64)
    t = shift * t / (1 + (shift - 1) * t)
    return t.to(device=device, dtype=dtype)
