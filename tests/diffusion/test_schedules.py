"""Training schedules and sampling grids, against diffusers where it defines them."""

from __future__ import annotations

import pytest
import torch

from sampleforge.diffusion.schedules import (
    alphas_cumprod,
    flow_times,
    karras_sigmas,
    sampling_sigmas,
    sampling_timesteps,
    sigmas_from_alphas_cumprod,
)
from sampleforge.errors import UserInputError

diffusers = pytest.importorskip("diffusers")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.mark.parametrize(
    ("ours", "theirs", "kw"),
    [
        ("linear", "linear", {}),
        ("linear", "linear", {"beta_start": 0.00085, "beta_end": 0.012}),
        ("scaled_linear", "scaled_linear", {"beta_start": 0.00085, "beta_end": 0.012}),
        ("cosine", "squaredcos_cap_v2", {}),
    ],
)
def test_alphas_cumprod_match_diffusers(ours: str, theirs: str, kw: dict) -> None:
    ref = diffusers.DDIMScheduler(beta_schedule=theirs, **kw).alphas_cumprod.double()
    ac = alphas_cumprod(ours, 1000, **kw)
    assert ac.shape == (1000,) and ac.dtype == torch.float64
    torch.testing.assert_close(ac, ref, rtol=2e-5, atol=1e-7)
    assert bool((ac[1:] < ac[:-1]).all())


def test_reference_design_default_is_linear_1e4_to_002() -> None:
    ac = alphas_cumprod()
    assert float(ac[0]) == pytest.approx(1 - 1e-4)
    sig = sigmas_from_alphas_cumprod(ac)
    assert float(sig[0]) == pytest.approx((1e-4 / (1 - 1e-4)) ** 0.5)
    assert 150 < float(sig[-1]) < 160  # sigma_max of the 1000-step linear schedule


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("steps", [1, 7, 20, 50, 1000])
def test_timesteps_match_diffusers_ddim(spacing: str, steps: int) -> None:
    for offset in (0, 1) if spacing == "leading" and steps < 1000 else (0,):
        sch = diffusers.DDIMScheduler(timestep_spacing=spacing, steps_offset=offset)
        sch.set_timesteps(steps)
        assert torch.equal(sampling_timesteps(1000, steps, spacing, offset), sch.timesteps)


@pytest.mark.parametrize("steps", [5, 25])
def test_karras_sigmas_match_diffusers(steps: int) -> None:
    sch = diffusers.DPMSolverMultistepScheduler(use_karras_sigmas=True, algorithm_type="dpmsolver++")
    sch.set_timesteps(steps)
    ours = sampling_sigmas(sch.alphas_cumprod.double(), steps, "karras")
    assert ours.shape == (steps + 1,) and float(ours[-1]) == 0
    torch.testing.assert_close(ours, sch.sigmas.double(), rtol=1e-5, atol=0)


def test_sampling_sigmas_shape_device_dtype() -> None:
    ac = alphas_cumprod()
    s = sampling_sigmas(ac, 10, "trailing", dtype=torch.float32, device="cpu")
    assert s.shape == (11,) and s.dtype == torch.float32 and float(s[-1]) == 0
    assert float(s[0]) == pytest.approx(float(sigmas_from_alphas_cumprod(ac)[-1]), rel=1e-6)
    k = karras_sigmas(0.1, 10.0, 4, rho=7.0)
    assert k.tolist()[0] == pytest.approx(10.0) and k.tolist()[3] == pytest.approx(0.1) and k.tolist()[4] == 0


def test_flow_times() -> None:
    t = flow_times(4)
    assert t.tolist() == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])
    shifted = flow_times(4, shift=3.0)
    assert shifted[0] == 1 and shifted[-1] == 0
    assert bool((shifted[1:-1] > t[1:-1]).all())  # a shift > 1 spends more steps at high noise
    assert bool((shifted[1:] < shifted[:-1]).all())


def test_schedule_errors() -> None:
    with pytest.raises(UserInputError, match="valid: linear, scaled_linear, cosine"):
        alphas_cumprod("quadratic")
    with pytest.raises(UserInputError, match="cosine"):
        alphas_cumprod("cosine", beta_start=0.1)
    with pytest.raises(UserInputError, match="steps must be in 1..1000"):
        sampling_timesteps(1000, 0)
    with pytest.raises(UserInputError, match="spacing"):
        sampling_timesteps(1000, 10, "uniformish")
    with pytest.raises(UserInputError, match="steps_offset"):
        sampling_timesteps(1000, 1000, "leading", steps_offset=1)
    with pytest.raises(UserInputError, match="sigma_min < sigma_max"):
        karras_sigmas(1.0, 0.5, 4)
    with pytest.raises(UserInputError, match="shift"):
        flow_times(4, shift=0)
