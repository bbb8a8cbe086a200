"""Prediction types: the training target and the sampler's inverse are two sides of one object."""

from __future__ import annotations

import pytest
import torch

from sampleforge.diffusion.denoiser import DiscreteDenoiser, FlowDenoiser
from sampleforge.diffusion.prediction import FLOW_TIME_SCALE, PREDICTIONS, get_prediction, training_example
from sampleforge.diffusion.schedules import alphas_cumprod
from sampleforge.errors import UserInputError


def _round_trip(trained_as: str, sampled_as: str) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Train-side example with a perfect network (it outputs the target), then the sampler's denoiser at
    the same noise level -> (x0 estimate, true x0, what the network saw)."""
    ac = alphas_cumprod("scaled_linear", dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(6, 3, 5, dtype=torch.float64, generator=g)
    ex = training_example(get_prediction(trained_as), x0, g, ac)
    seen: dict = {}

    def perfect(x_in: torch.Tensor, time: torch.Tensor, cond: object) -> torch.Tensor:
        seen["x_in"], seen["time"] = x_in, time
        return ex.target

    if PREDICTIONS[sampled_as].flow:
        t = ex.time.double() / FLOW_TIME_SCALE
        return FlowDenoiser(perfect)(ex.x_t, t), x0, {**seen, "x_t": ex.x_t, "ex_time": ex.time}
    a = ac[ex.time.long()]
    sigma = ((1 - a) / a).sqrt()  # the VE level whose DDPM input is the training x_t
    x = ex.x_t / a.sqrt().view(-1, 1, 1)
    out = DiscreteDenoiser(perfect, ac, sampled_as)(x, sigma)
    return out, x0, {**seen, "x_t": ex.x_t, "ex_time": ex.time}


@pytest.mark.parametrize("name", list(PREDICTIONS))
def test_training_target_round_trips_through_the_sampler(name: str) -> None:
    out, x0, seen = _round_trip(name, name)
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-6)  # levels are drawn in float32
    torch.testing.assert_close(seen["x_in"], seen["x_t"], rtol=0, atol=1e-10)  # the net saw the training input
    torch.testing.assert_close(seen["time"].double(), seen["ex_time"].double(), rtol=0, atol=1e-4)


@pytest.mark.parametrize("trained_as, sampled_as", [("v", "eps"), ("eps", "x0"), ("x0", "v")])
def test_a_mismatched_pair_does_not_round_trip(trained_as: str, sampled_as: str) -> None:
    out, x0, _ = _round_trip(trained_as, sampled_as)
    assert float((out - x0).abs().max()) > 0.1


def test_flow_levels_cover_the_unit_interval_and_ddpm_the_schedule() -> None:
    g = torch.Generator().manual_seed(1)
    x0 = torch.zeros(512, 2)
    flow = training_example(PREDICTIONS["flow"], x0, g)
    t = flow.time / FLOW_TIME_SCALE
    assert 0 <= float(t.min()) < 0.05 and 0.95 < float(t.max()) <= 1
    ac = alphas_cumprod()
    ddpm = training_example(PREDICTIONS["eps"], x0, g, ac)
    assert ddpm.time.min() >= 0 and ddpm.time.max() <= len(ac) - 1 and torch.equal(ddpm.time, ddpm.time.round())
    with pytest.raises(UserInputError, match="alphas_cumprod"):
        training_example(PREDICTIONS["v"], x0, g)
    with pytest.raises(UserInputError, match="valid: eps, v, x0, flow"):
        get_prediction("score")


@pytest.mark.parametrize("name", ["eps", "v", "flow"])
def test_training_examples_land_on_the_latents_device_whatever_the_generators(name: str) -> None:
    """The training loop's generator lives on the training device and the latents may live elsewhere (there is
    no GPU here: latents on the "meta" device stand in for a CUDA batch drawn with a CPU generator, the mismatch
    a CUDA generator with CPU draws would also hit). Every tensor of the example follows the latents."""
    x0 = torch.zeros(3, 4, 8, device="meta")
    ac = torch.linspace(0.999, 0.01, 1000)
    ex = training_example(PREDICTIONS[name], x0, torch.Generator().manual_seed(0), ac)
    assert {t.device.type for t in (ex.x_t, ex.time, ex.target)} == {"meta"}
    assert ex.x_t.shape == ex.target.shape == x0.shape and ex.time.shape == (3,)
