"""Parity with diffusers' DDIMScheduler and DPMSolverMultistepScheduler (test-only reference).

Both sides are driven by the same toy network from the same noise. diffusers works in VP space
(x_vp = x_ve / sqrt(1 + sigma^2)); our samplers in VE space; we compare the VP states step by step by
running our (stateless) sampler on the first k+1 sigmas of the grid.
"""

from __future__ import annotations

import math

import pytest
import torch

from sampleforge.diffusion.denoiser import DiscreteDenoiser
from sampleforge.diffusion.samplers import SAMPLERS, randn_like
from sampleforge.diffusion.schedules import sampling_sigmas

diffusers = pytest.importorskip("diffusers")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # numpy 2 note inside diffusers

STEPS = 20
PRED = {"eps": "epsilon", "v": "v_prediction", "x0": "sample"}


def _noise() -> torch.Tensor:
    return torch.randn(2, 3, 4, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def _run_ours(sampler: str, denoise, noise, sigmas, k: int, **kw) -> torch.Tensor:
    """Our VP state after k steps (k = len(sigmas) - 1 is the final sample)."""
    x = noise * math.sqrt(float(sigmas[0]) ** 2 + 1)
    out = SAMPLERS[sampler](denoise, x, sigmas[: k + 1], **kw)
    return out / math.sqrt(float(sigmas[k]) ** 2 + 1)


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
@pytest.mark.parametrize(("spacing", "offset"), [("leading", 0), ("leading", 1), ("trailing", 0)])
def test_ddim_eta0_matches_diffusers(toys, prediction: str, spacing: str, offset: int) -> None:
    sch = diffusers.DDIMScheduler(
        num_train_timesteps=1000,
        beta_schedule="linear",
        clip_sample=False,
        set_alpha_to_one=True,
        steps_offset=offset,
        timestep_spacing=spacing,
        prediction_type=PRED[prediction],
    )
    sch.set_timesteps(STEPS)
    ac = sch.alphas_cumprod.double()
    net = toys.make_toy_net(ac, prediction)
    denoise = DiscreteDenoiser(net, ac, prediction)
    sigmas = sampling_sigmas(ac, STEPS, spacing, steps_offset=offset)
    noise = _noise()
    x = noise.clone()
    for k, t in enumerate(sch.timesteps, start=1):
        x = sch.step(net(x, t.double().expand(2), None), t, x, eta=0.0).prev_sample
        if k in (1, 7, STEPS - 1, STEPS):
            ours = _run_ours("ddim", denoise, noise, sigmas, k)
            torch.testing.assert_close(ours, x, rtol=0, atol=1e-5, msg=f"step {k}")
    assert 0.2 < float(x.std()) < 2  # a real sample, not a collapsed one


def test_ddim_with_eta_matches_diffusers(toys) -> None:
    """eta > 0: the same per-step noise (drawn by our sampler's generator) fed to diffusers."""
    eta = 0.7
    sch = diffusers.DDIMScheduler(beta_schedule="linear", clip_sample=False, timestep_spacing="leading")
    sch.set_timesteps(STEPS)
    ac = sch.alphas_cumprod.double()
    net = toys.make_toy_net(ac, "eps")
    sigmas = sampling_sigmas(ac, STEPS, "leading")
    noise = _noise()
    g = torch.Generator().manual_seed(5)
    draws = [randn_like(noise, g) for _ in range(STEPS - 1)] + [torch.zeros_like(noise)]
    x = noise.clone()
    for t, z in zip(sch.timesteps, draws, strict=True):
        x = sch.step(net(x, t.double().expand(2), None), t, x, eta=eta, variance_noise=z).prev_sample
    ours = _run_ours(
        "ddim", DiscreteDenoiser(net, ac, "eps"), noise, sigmas, STEPS, eta=eta,
        generator=torch.Generator().manual_seed(5),
    )  # fmt: skip
    torch.testing.assert_close(ours, x, rtol=0, atol=1e-5)


@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("steps", [8, 20])
def test_dpmpp_2m_matches_diffusers(toys, prediction: str, steps: int) -> None:
    sch = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=1000,
        beta_schedule="linear",
        algorithm_type="dpmsolver++",
        solver_order=2,
        solver_type="midpoint",
        timestep_spacing="trailing",
        final_sigmas_type="zero",
        prediction_type=PRED[prediction],
    )
    sch.set_timesteps(steps)
    ac = sch.alphas_cumprod.double()
    sigmas = sampling_sigmas(ac, steps, "trailing")
    torch.testing.assert_close(sigmas, sch.sigmas.double(), rtol=1e-6, atol=0)  # same grid
    net = toys.make_toy_net(ac, prediction)
    denoise = DiscreteDenoiser(net, ac, prediction)
    noise = _noise()
    x = noise.clone()
    for k, t in enumerate(sch.timesteps, start=1):
        x = sch.step(net(x, t.double().expand(2), None), t, x).prev_sample
        if k in (1, 2, 3, steps - 1, steps):
            ours = _run_ours("dpmpp_2m", denoise, noise, sigmas, k)
            torch.testing.assert_close(ours, x, rtol=0, atol=1e-4, msg=f"step {k}")


def test_ddim_and_euler_are_one_method_in_float32(toys) -> None:
    """The VE DDIM update and the Euler ODE step are the same map (here in float32, the pipeline's dtype)."""
    sch = diffusers.DDIMScheduler(beta_schedule="linear", clip_sample=False)
    ac = sch.alphas_cumprod.double()
    denoise = DiscreteDenoiser(toys.make_toy_net(ac, "eps"), ac, "eps")
    sigmas = sampling_sigmas(ac, 30, "trailing")
    x = _noise().float() * math.sqrt(float(sigmas[0]) ** 2 + 1)
    a = SAMPLERS["ddim"](denoise, x, sigmas)
    b = SAMPLERS["euler"](denoise, x, sigmas)
    assert a.dtype == torch.float32
    torch.testing.assert_close(a, b, rtol=0, atol=2e-5)
