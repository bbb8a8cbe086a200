"""Toy networks and closed-form denoisers shared by the diffusion tests."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import Tensor

from sampleforge.diffusion.schedules import alphas_cumprod

MU, STD = 1.5, 0.5  # the Gaussian data distribution N(MU, STD^2) of the closed-form tests


def _col(v: Tensor, x: Tensor) -> Tensor:
    return v.to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))


def make_toy_net(ac: Tensor, prediction: str) -> Callable[[Tensor, Tensor, Any], Tensor]:
    """A DDPM network on schedule ``ac`` (T,) predicting eps / v / x0: the exact Gaussian denoiser of
    N(0.5, 0.25) plus a non-linear, t- and cond-dependent perturbation (so every input matters)."""

    def net(x: Tensor, t: Tensor, cond: Any) -> Tensor:
        tb = _col(t, x)
        lo = tb.floor().long().clamp(0, len(ac) - 2)
        w = tb - lo
        a = (1 - w) * ac.to(x)[lo] + w * ac.to(x)[lo + 1]
        x0 = 0.5 + a.sqrt() * 0.25 * (x - a.sqrt() * 0.5) / (a * 0.25 + 1 - a)
        x0 = x0 + 0.05 * torch.tanh(x) * torch.cos(tb / 200)
        if cond is not None:
            x0 = x0 + 0.1 * _col(cond.to(x.dtype).mean(dim=1), x)
        eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        if prediction == "eps":
            return eps
        if prediction == "v":
            return a.sqrt() * eps - (1 - a).sqrt() * x0
        return x0

    return net


def toy_flow_net(x: Tensor, t: Tensor, cond: Any) -> Tensor:
    """A flow velocity network: the exact velocity of N(0.5, 0.25) data plus a small perturbation."""
    tb = _col(t, x)
    s2 = 0.25
    x0 = 0.5 + (1 - tb) * s2 / ((1 - tb) ** 2 * s2 + tb**2) * (x - (1 - tb) * 0.5)
    x0 = x0 + 0.05 * torch.tanh(x) * torch.cos(3 * tb)
    if cond is not None:
        x0 = x0 + 0.1 * _col(cond.to(x.dtype).mean(dim=1), x)
    return (x - x0) / tb.clamp(min=1e-3)


def gaussian_denoiser(x: Tensor, sigma: Tensor, cond: Any = None) -> Tensor:
    """The exact VE denoiser E[x0 | x0 + sigma * eps] for x0 ~ N(MU, STD^2)."""
    s = _col(sigma, x)
    return MU + STD**2 / (STD**2 + s**2) * (x - MU)


def gaussian_flow_denoiser(x: Tensor, t: Tensor, cond: Any = None) -> Tensor:
    """The exact E[x0 | (1 - t) x0 + t * noise] for x0 ~ N(MU, STD^2)."""
    tb = _col(t, x)
    return MU + (1 - tb) * STD**2 / ((1 - tb) ** 2 * STD**2 + tb**2) * (x - (1 - tb) * MU)


class CallCounter:
    """Wraps a denoiser/network and counts calls and the batch sizes they saw."""

    def __init__(self, fn: Callable[..., Tensor]) -> None:
        self.fn = fn
        self.calls = 0
        self.batches: list[int] = []

    def __call__(self, x: Tensor, s: Tensor, cond: Any = None) -> Tensor:
        self.calls += 1
        self.batches.append(x.shape[0])
        return self.fn(x, s, cond)


@pytest.fixture(scope="session")
def linear_ac() -> Tensor:
    return alphas_cumprod("linear")


@pytest.fixture(scope="session")
def toys() -> SimpleNamespace:
    """The helpers above, for tests (conftest modules cannot be imported under --import-mode=importlib)."""
    return SimpleNamespace(
        make_toy_net=make_toy_net,
        toy_flow_net=toy_flow_net,
        gaussian_denoiser=gaussian_denoiser,
        gaussian_flow_denoiser=gaussian_flow_denoiser,
        CallCounter=CallCounter,
        MU=MU,
        STD=STD,
    )
