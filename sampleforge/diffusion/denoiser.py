"""Denoisers: turn a network into ``denoise(x, sigma, cond) -> x0``, the one thing samplers call.

The samplers never see the parameterisation: the denoisers map the network output to x0 with the
prediction type's own inverse (``prediction.py``), the same object that gives the training target.

Discrete DDPM networks are called in k-diffusion's VE convention: the sampler's state is
``x = x0 + sigma * eps``; the network sees ``x * c_in`` with ``c_in = 1 / sqrt(sigma^2 + 1)`` (exactly the
DDPM input ``sqrt(a_t) x0 + sqrt(1 - a_t) eps``) and a float timestep found by interpolating
``log sigma`` over the training schedule.

Flow-matching networks use ``x_t = (1 - t) x0 + t * noise`` (t = 1 is pure noise, t = 0 data) and predict the
velocity ``v = noise - x0 = dx_t/dt``; their "sigma" is t, so ``x0 = x_t - t * v``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from sampleforge.diffusion.prediction import FLOW_TIME_SCALE, PREDICTIONS, get_prediction
from sampleforge.diffusion.schedules import sigmas_from_alphas_cumprod
from sampleforge.errors import UserInputError

# net(x_in (B, C, W), t (B,) float timestep, cond) -> (B, C, W)
Network = Callable[[Tensor, Tensor, Any], Tensor]
# denoise(x (B, C, W), sigma (B,), cond) -> x0 estimate (B, C, W)
Denoiser = Callable[[Tensor, Tensor, Any], Tensor]

__all__ = ["PREDICTIONS", "DiscreteDenoiser", "FlowDenoiser", "Network", "Denoiser"]


def _per_sample(sigma: Tensor | float, x: Tensor) -> Tensor:
    """sigma as a (B,) tensor in x's dtype/device (a scalar is broadcast)."""
    s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if s.ndim == 0:
        s = s.expand(x.shape[0])
    if s.shape != (x.shape[0],):
        raise ValueError(f"sigma must be a scalar or have shape ({x.shape[0]},), got {tuple(s.shape)}")
    return s


def _work_dtype(device: torch.device) -> torch.dtype:
    """float64 for the schedule maths, except on Apple's MPS, which has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


def _bcast(s: Tensor, x: Tensor) -> Tensor:
    """(B,) -> (B, 1, 1, ...) to broadcast against x."""
    return s.reshape(-1, *([1] * (x.ndim - 1)))


class DiscreteDenoiser:
    """Wrap a DDPM network predicting eps, v or x0 as a VE denoiser ``(x, sigma, cond) -> x0``.

    ``alphas_cumprod`` (T,) is the training schedule; the network gets the float timestep whose
    interpolated log-sigma equals ``log sigma`` (so it is an integer on the training grid).
    """

    def __init__(self, net: Network, alphas_cumprod: Tensor, prediction: str = "eps") -> None:
        if prediction not in PREDICTIONS or PREDICTIONS[prediction].flow:
            raise UserInputError(
                f"unknown prediction {prediction!r} for a discrete model (valid: eps, v, x0)"
            )
        ac = alphas_cumprod.detach().cpu().to(torch.float64)
        if (
            ac.ndim != 1
            or len(ac) < 2
            or not bool(((ac > 0) & (ac < 1)).all())
            or not bool((ac[1:] < ac[:-1]).all())
        ):
            raise UserInputError("alphas_cumprod must be a 1-D tensor decreasing strictly inside (0, 1)")
        self.net = net
        self.prediction = get_prediction(prediction)
        self.sigmas = sigmas_from_alphas_cumprod(ac)  # (T,) increasing, float64 on CPU
        self.log_sigmas = self.sigmas.log()

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    def sigma_to_t(self, sigma: Tensor) -> Tensor:
        """Noise levels (any shape) -> float timesteps (same shape, at least float32) by linear
        interpolation in log sigma; clamped to [0, T - 1] outside the schedule."""
        wd = _work_dtype(sigma.device)
        log_s = self.log_sigmas.to(wd).to(sigma.device)
        ls = sigma.to(wd).clamp(min=float(self.sigmas[0])).log()
        hi = torch.searchsorted(log_s, ls.reshape(-1)).clamp(1, len(log_s) - 1).reshape(ls.shape)
        lo = hi - 1
        w = ((ls - log_s[lo]) / (log_s[hi] - log_s[lo])).clamp(0, 1)
        return (lo + w).to(torch.promote_types(sigma.dtype, torch.float32))  # fp16 cannot hold 999.5

    def t_to_sigma(self, t: Tensor) -> Tensor:
        """Float timesteps -> noise levels, interpolating log sigma (inverse of ``sigma_to_t``)."""
        wd = _work_dtype(t.device)
        log_s = self.log_sigmas.to(wd).to(t.device)
        tt = t.to(wd).clamp(0, len(log_s) - 1)
        lo = tt.floor().long().clamp(max=len(log_s) - 2)
        w = tt - lo
        return ((1 - w) * log_s[lo] + w * log_s[lo + 1]).exp().to(t.dtype)

    def __call__(self, x: Tensor, sigma: Tensor | float, cond: Any = None) -> Tensor:
        """x (B, ...) at noise level sigma (B,) or scalar -> x0 estimate (B, ...)."""
        s = _per_sample(sigma, x)
        sb = _bcast(s, x)
        c_in = 1 / (sb**2 + 1).sqrt()
        out = self.net(x * c_in, self.sigma_to_t(s), cond)
        if out.shape != x.shape:
            raise ValueError(f"the network returned shape {tuple(out.shape)} for input {tuple(x.shape)}")
        return self.prediction.x0(out, x * c_in, c_in, sb * c_in)  # DDPM x_t, sqrt(a), sqrt(1 - a)


class FlowDenoiser:
    """Wrap a flow-matching velocity network ``net(x_t, t * time_scale, cond) -> v`` as ``(x, t, cond) -> x0``.

    Convention: ``x_t = (1 - t) x0 + t noise``, ``v = noise - x0``, t in [0, 1] (the samplers' "sigma").
    ``time_scale`` multiplies t before the network (``FLOW_TIME_SCALE`` for the networks sampleforge trains).
    """

    sigma_min = 0.0
    sigma_max = 1.0

    def __init__(self, net: Network, time_scale: float = FLOW_TIME_SCALE) -> None:
        self.net = net
        self.time_scale = time_scale

    def __call__(self, x: Tensor, t: Tensor | float, cond: Any = None) -> Tensor:
        """x_t (B, ...) at time t (B,) or scalar -> x0 estimate (B, ...)."""
        s = _per_sample(t, x)
        if bool((s < 0).any()) or bool((s > 1).any()):
            raise ValueError("flow-matching times must lie in [0, 1]")
        v = self.net(x, s * self.time_scale, cond)
        if v.shape != x.shape:
            raise ValueError(f"the network returned shape {tuple(v.shape)} for input {tuple(x.shape)}")
        sb = _bcast(s, x)
        return PREDICTIONS["flow"].x0(v, x, 1 - sb, sb)
