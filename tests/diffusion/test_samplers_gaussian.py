"""Closed-form check: data x0 ~ N(MU, STD^2) with its exact denoiser.

For the ODE samplers the exact answer is known per sample (the probability-flow ODE maps
x = MU + z * sqrt(STD^2 + sigma_max^2) to MU + STD * z), so we measure the discretisation error itself,
its size at 50 steps and its order of convergence. For the stochastic samplers we compare mean and std.
"""

from __future__ import annotations

import math

import pytest
import torch

from sampleforge.diffusion.samplers import SAMPLERS
from sampleforge.diffusion.schedules import flow_times, karras_sigmas

N = 20000
# (max abs error at 50 steps allowed, order of convergence)
ODE_SAMPLERS = {
    "euler": (0.15, 1),
    "ddim": (0.15, 1),
    "heun": (0.02, 2),
    "dpmpp_2m": (0.02, 2),
    "flow_euler": (0.08, 1),
    "flow_heun": (0.003, 2),
}


def _z() -> torch.Tensor:
    return torch.randn(N, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def _run(name: str, steps: int, toys, z: torch.Tensor, **kw) -> torch.Tensor:
    if name.startswith("flow_"):
        return SAMPLERS[name](toys.gaussian_flow_denoiser, z, flow_times(steps), **kw)
    sigmas = karras_sigmas(0.002, 80.0, steps)
    x = toys.MU + z * math.sqrt(toys.STD**2 + float(sigmas[0]) ** 2)
    return SAMPLERS[name](toys.gaussian_denoiser, x, sigmas, **kw)


@pytest.mark.parametrize("name", sorted(ODE_SAMPLERS))
def test_ode_sampler_converges_to_exact_map(name: str, toys) -> None:
    tol, order = ODE_SAMPLERS[name]
    z = _z()
    exact = toys.MU + toys.STD * z
    errs = {n: float((_run(name, n, toys, z) - exact).abs().max()) for n in (10, 25, 50, 100)}
    assert errs[50] < tol, errs
    assert errs[10] > errs[25] > errs[50] > errs[100], errs
    rate = math.log2(errs[50] / errs[100])  # ~1 for first-order methods, ~2 for second-order ones
    assert abs(rate - order) < 0.35, (rate, errs)
    out = _run(name, 50, toys, z)
    assert float(out.mean()) == pytest.approx(float(exact.mean()), abs=0.01)
    assert float(out.std()) == pytest.approx(float(exact.std()), rel=0.06)


@pytest.mark.parametrize(("name", "eta"), [("euler_ancestral", 1.0), ("ddim", 1.0), ("ddim", 0.5)])
def test_stochastic_sampler_matches_distribution(name: str, eta: float, toys) -> None:
    def std_err(steps: int) -> float:
        out = _run(name, steps, toys, _z(), eta=eta, generator=torch.Generator().manual_seed(1))
        assert float(out.mean()) == pytest.approx(toys.MU, abs=4 * toys.STD / math.sqrt(N))
        return abs(float(out.std()) - toys.STD)

    e25, e50, e100 = std_err(25), std_err(50), std_err(100)
    assert e50 < 0.12 * toys.STD, e50
    assert e100 < e25, (e25, e100)


def test_ancestral_noise_matters(toys) -> None:
    """Different seeds give different samples; eta = 0 gives the deterministic (euler) answer."""
    z = _z()[:100]
    a = _run("euler_ancestral", 10, toys, z, generator=torch.Generator().manual_seed(1))
    b = _run("euler_ancestral", 10, toys, z, generator=torch.Generator().manual_seed(2))
    assert float((a - b).abs().max()) > 0.1
    torch.testing.assert_close(_run("euler_ancestral", 10, toys, z, eta=0.0), _run("euler", 10, toys, z))
