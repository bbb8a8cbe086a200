"""Samplers: pure functions over a denoiser, all with one signature.

    sample_x(denoise, x, sigmas, *, cond=None, generator=None, callback=None, eta=None) -> x0

- ``denoise(x (B, ...), sigma (B,), cond) -> x0 (B, ...)`` (see denoiser.py; wrap it with guidance.cfg for CFG);
- ``x`` (B, ...) the starting point at noise level ``sigmas[0]`` (noise * sigmas[0] for VE models, pure noise
  for flow models); it is never modified in place;
- ``sigmas`` (N + 1,) strictly decreasing noise levels (VE sigmas, or flow times in [0, 1]); a final 0
  returns the clean sample, a non-zero end returns the state at that level;
- ``generator``: a torch.Generator, one per sample (a sequence of B generators: sample b draws only from
  generator b, so a batch equals its samples generated one by one), or None (torch's global RNG);
- ``callback(done, total)`` after each step, ``done`` = 1..total;
- ``eta``: the noise re-injected per step by the stochastic samplers (ddim, euler_ancestral). The
  deterministic samplers refuse a non-zero eta instead of ignoring it.
Device and dtype follow ``x``; samplers hold no state, so two jobs can sample at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from torch import Tensor

from sampleforge.devices import normal
from sampleforge.diffusion.denoiser import Denoiser
from sampleforge.errors import ParamError, UserInputError

GeneratorArg = torch.Generator | Sequence[torch.Generator] | None
Callback = Callable[[int, int], Any]


class Sampler(Protocol):
    def __call__(
        self,
        denoise: Denoiser,
        x: Tensor,
        sigmas: Tensor,
        *,
        cond: Any = None,
        generator: GeneratorArg = None,
        callback: Callback | None = None,
        eta: float | None = None,
    ) -> Tensor: ...


def randn_like(x: Tensor, generator: GeneratorArg = None) -> Tensor:
    """Standard normal noise shaped like x (B, ...), in x's dtype and on x's device.

    Drawn in float32 on the generator's device, then moved: the same seed gives the same noise on every
    device and dtype. With a sequence of generators, row b comes from generator b.
    """
    if generator is None:
        return torch.randn(x.shape, device=x.device, dtype=torch.float32).to(x.dtype)
    if isinstance(generator, torch.Generator):
        return normal(x.shape, generator, x.device).to(x)
    gens = list(generator)
    if len(gens) != x.shape[0]:
        raise UserInputError(f"got {len(gens)} generators for a batch of {x.shape[0]}")
    rows = [torch.randn(x.shape[1:], generator=g, device=g.device) for g in gens]
    return torch.stack(rows).to(x)


def _prepare(x: Tensor, sigmas: Tensor) -> Tensor:
    """Check a sigma grid and move it to x's device (float32 at least) -> (N + 1,)."""
    if sigmas.ndim != 1 or len(sigmas) < 2:
        raise UserInputError(
            f"sigmas must be a 1-D tensor of at least 2 levels, got shape {tuple(sigmas.shape)}"
        )
    s = sigmas.detach().to("cpu", torch.float64)
    if not bool(torch.isfinite(s).all()) or not bool((s[:-1] > 0).all()) or float(s[-1]) < 0:
        raise UserInputError("sigmas must be finite, positive, and may end with 0")
    if not bool((s[1:] < s[:-1]).all()):
        raise UserInputError("sigmas must be strictly decreasing")
    return (
        sigmas.detach().to(torch.promote_types(x.dtype, torch.float32)).to(x.device)
    )  # cast, then move (MPS)


def _no_eta(name: str, eta: float | None) -> None:
    if eta not in (None, 0, 0.0):
        raise UserInputError(
            f"sampler {name!r} is deterministic: eta={eta} has no meaning (use ddim or euler_ancestral)"
        )


def _check_eta(eta: float) -> float:
    if not (math.isfinite(eta) and eta >= 0):
        raise ParamError("eta", f"must be a finite number >= 0, got {eta}")
    return float(eta)


def ancestral_step(sigma: Tensor, sigma_next: Tensor, eta: float = 1.0) -> tuple[Tensor, Tensor]:
    """Split a step sigma -> sigma_next into a deterministic part down to ``sigma_down`` and fresh noise of
    std ``sigma_up`` (``sigma_down^2 + sigma_up^2 = sigma_next^2``). In VE form this is exactly DDIM's
    ``sigma_t(eta)``: eta = 0 is deterministic DDIM, eta = 1 is DDPM-like ancestral sampling."""
    if eta == 0 or float(sigma_next) == 0:
        return sigma_next, sigma_next * 0
    up = (sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2).sqrt() * eta
    up = torch.minimum(up, sigma_next)
    return (sigma_next**2 - up**2).sqrt(), up


def sample_euler(
    denoise: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond: Any = None,
    generator: GeneratorArg = None,
    callback: Callback | None = None,
    eta: float | None = None,
) -> Tensor:
    """Euler's method on the probability-flow ODE ``dx/dsigma = (x - D(x, sigma)) / sigma``. N model calls."""
    _no_eta("euler", eta)
    sigmas = _prepare(x, sigmas)
    n = len(sigmas) - 1
    ones = x.new_ones(x.shape[0])
    for i in range(n):
        denoised = denoise(x, sigmas[i] * ones, cond)
        d = (x - denoised) / sigmas[i]
        x = x + d * (sigmas[i + 1] - sigmas[i])
        if callback is not None:
            callback(i + 1, n)
    return x


def sample_ddim(
    denoise: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond: Any = None,
    generator: GeneratorArg = None,
    callback: Callback | None = None,
    eta: float | None = 0.0,
) -> Tensor:
    """DDIM (Song et al.) in VE form: ``x_next = x0 + sigma_down * eps + sigma_up * z``, eps = (x - x0) / sigma.

    eta = 0 (default) is deterministic DDIM, which equals Euler on the same sigmas; eta > 0 adds
    noise as diffusers' DDIMScheduler(eta) and equals euler_ancestral(eta). N model calls.
    """
    return _ancestral(denoise, x, sigmas, cond, generator, callback, _check_eta(0.0 if eta is None else eta))


def sample_euler_ancestral(
    denoise: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond: Any = None,
    generator: GeneratorArg = None,
    callback: Callback | None = None,
    eta: float | None = 1.0,
) -> Tensor:
    """Ancestral Euler (k-diffusion): an Euler step down to sigma_down, then fresh noise of std sigma_up.
    eta = 1 by default (full ancestral noise); eta = 0 is plain Euler. N model calls."""
    return _ancestral(denoise, x, sigmas, cond, generator, callback, _check_eta(1.0 if eta is None else eta))


def _ancestral(
    denoise: Denoiser, x: Tensor, sigmas: Tensor, cond: Any, generator: GeneratorArg, callback: Callback | None,
    eta: float,
) -> Tensor:
    """The step DDIM(eta) and ancestral Euler(eta) share: down to sigma_down along the predicted noise,
    then fresh noise of std sigma_up (none for eta = 0)."""
    sigmas = _prepare(x, sigmas)
    n = len(sigmas) - 1
    ones = x.new_ones(x.shape[0])
    for i in range(n):
        denoised = denoise(x, sigmas[i] * ones, cond)
        eps = (x - denoised) / sigmas[i]
        down, up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        x = denoised + down * eps
        if float(up) > 0:
            x = x + up * randn_like(x, generator)
        if callback is not None:
            callback(i + 1, n)
    return x


def sample_heun(
    denoise: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond: Any = None,
    generator: GeneratorArg = None,
    callback: Callback | None = None,
    eta: float | None = None,
) -> Tensor:
    """Heun's 2nd-order method (Karras et al. Alg. 1, no churn); the step to sigma = 0 is an Euler step.
    2N - 1 model calls."""
    _no_eta("heun", eta)
    sigmas = _prepare(x, sigmas)
    n = len(sigmas) - 1
    ones = x.new_ones(x.shape[0])
    for i in range(n):
        denoised = denoise(x, sigmas[i] * ones, cond)
        d = (x - denoised) / sigmas[i]
        dt = sigmas[i + 1] - sigmas[i]
        x_euler = x + d * dt
        if float(sigmas[i + 1]) == 0:
            x = x_euler
        else:
            d2 = (x_euler - denoise(x_euler, sigmas[i + 1] * ones, cond)) / sigmas[i + 1]
            x = x + (d + d2) / 2 * dt
        if callback is not None:
            callback(i + 1, n)
    return x


def sample_dpmpp_2m(
    denoise: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond: Any = None,
    generator: GeneratorArg = None,
    callback: Callback | None = None,
    eta: float | None = None,
) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022), multistep 2nd order in log-sigma; first order on the first step
    and on the step to sigma = 0 (as diffusers' DPMSolverMultistepScheduler with ``final_sigmas_type="zero"``).
    N model calls."""
    _no_eta("dpmpp_2m", eta)
    sigmas = _prepare(x, sigmas)
    n = len(sigmas) - 1
    ones = x.new_ones(x.shape[0])
    old_denoised: Tensor | None = None
    for i in range(n):
        denoised = denoise(x, sigmas[i] * ones, cond)
        if float(sigmas[i + 1]) == 0:
            x = denoised
        else:
            h = sigmas[i].log() - sigmas[i + 1].log()  # lambda = -log sigma; h > 0
            if old_denoised is None:
                d = denoised
            else:
                r = (sigmas[i - 1].log() - sigmas[i].log()) / h
                d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = (sigmas[i + 1] / sigmas[i]) * x - torch.expm1(-h) * d
        old_denoised = denoised
        if callback is not None:
            callback(i + 1, n)
    return x


def _check_flow_times(sigmas: Tensor) -> None:
    if float(sigmas.max()) > 1 or float(sigmas.min()) < 0:
        raise UserInputError("flow samplers take times in [0, 1] (see schedules.flow_times)")


def sample_flow_euler(
    denoise: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond: Any = None,
    generator: GeneratorArg = None,
    callback: Callback | None = None,
    eta: float | None = None,
) -> Tensor:
    """Euler on a flow-matching ODE: ``x_next = x + (t_next - t) v`` with ``v = (x - x0) / t`` (the model's
    velocity, see FlowDenoiser). ``sigmas`` are times from 1 down to 0. N model calls."""
    _no_eta("flow_euler", eta)
    _check_flow_times(sigmas)
    return sample_euler(denoise, x, sigmas, cond=cond, callback=callback)


def sample_flow_heun(
    denoise: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond: Any = None,
    generator: GeneratorArg = None,
    callback: Callback | None = None,
    eta: float | None = None,
) -> Tensor:
    """Heun on a flow-matching ODE (times from 1 to 0; an Euler step to t = 0). 2N - 1 model calls."""
    _no_eta("flow_heun", eta)
    _check_flow_times(sigmas)
    return sample_heun(denoise, x, sigmas, cond=cond, callback=callback)


def sample_flow_pingpong(
    denoise: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond: Any = None,
    generator: GeneratorArg = None,
    callback: Callback | None = None,
    eta: float | None = None,
) -> Tensor:
    """Ping-pong sampling of a (distilled) flow model: at each time t jump to the clean estimate x0, then
    re-noise it to the next time with fresh noise, ``x_next = (1 - t_next) x0 + t_next noise`` (Stable Audio
    Open Small's sampler). Always stochastic: the noise comes from ``generator``. N model calls."""
    if eta not in (None, 0, 0.0):
        raise ParamError("eta", f"has no meaning for sampler 'pingpong', which re-noises fully at every step; got {eta}")
    _check_flow_times(sigmas)
    s = _prepare(x, sigmas)
    n = len(s) - 1
    for i in range(n):
        x0 = denoise(x, s[i], cond)
        t_next = s[i + 1]
        x = x0 if float(t_next) == 0 else (1 - t_next) * x0 + t_next * randn_like(x, generator)
        if callback is not None:
            callback(i + 1, n)
    return x


SAMPLERS: dict[str, Sampler] = {
    "ddim": sample_ddim,
    "euler": sample_euler,
    "euler_ancestral": sample_euler_ancestral,
    "heun": sample_heun,
    "dpmpp_2m": sample_dpmpp_2m,
    "flow_euler": sample_flow_euler,
    "flow_heun": sample_flow_heun,
    "pingpong": sample_flow_pingpong,
}
FLOW_SAMPLERS: frozenset[str] = frozenset({"flow_euler", "flow_heun", "pingpong"})
# for distilled flow models, whose clean estimate is good at every time; sampleforge's own models are not
DISTILLED_SAMPLERS: frozenset[str] = frozenset({"pingpong"})
STOCHASTIC_SAMPLERS: frozenset[str] = frozenset({"ddim", "euler_ancestral"})


def get_sampler(name: str) -> Sampler:
    """The sampler called ``name``; an unknown name raises UserInputError listing the valid ones."""
    try:
        return SAMPLERS[name]
    except KeyError:
        raise UserInputError(f"unknown sampler {name!r} (valid: {', '.join(SAMPLERS)})") from None
