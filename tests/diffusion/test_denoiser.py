"""Denoiser wrappers: exact x0 from exact eps / v / x0 / velocity predictions; sigma <-> t."""

from __future__ import annotations

import pytest
import torch

from sampleforge.diffusion.denoiser import DiscreteDenoiser, FlowDenoiser
from sampleforge.diffusion.schedules import alphas_cumprod
from sampleforge.errors import UserInputError


def _oracle(ac: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, prediction: str, seen: dict):
    """A network that knows x0 and eps and answers in the given parameterisation; it records its inputs."""

    def net(x_in: torch.Tensor, t: torch.Tensor, cond) -> torch.Tensor:
        seen["x_in"], seen["t"], seen["cond"] = x_in, t, cond
        a = ac[t.round().long()].to(x_in).reshape(-1, 1, 1)
        return {"eps": eps, "v": a.sqrt() * eps - (1 - a).sqrt() * x0, "x0": x0}[prediction]

    return net


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
def test_discrete_denoiser_recovers_x0(prediction: str) -> None:
    ac = alphas_cumprod(dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    x0, eps = (
        torch.randn(3, 4, 5, generator=g, dtype=torch.float64),
        torch.randn(3, 4, 5, generator=g, dtype=torch.float64),
    )
    t = torch.tensor([0, 500, 999])
    sigma = ((1 - ac[t]) / ac[t]).sqrt()
    seen: dict = {}
    d = DiscreteDenoiser(_oracle(ac, x0, eps, prediction, seen), ac, prediction)
    out = d(x0 + sigma.reshape(-1, 1, 1) * eps, sigma, "the-cond")
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-9)
    # the network saw the DDPM input sqrt(a) x0 + sqrt(1 - a) eps, the integer timestep and the cond
    a = ac[t].reshape(-1, 1, 1)
    torch.testing.assert_close(seen["x_in"], a.sqrt() * x0 + (1 - a).sqrt() * eps)
    torch.testing.assert_close(seen["t"], t.double(), rtol=0, atol=1e-6)
    assert seen["cond"] == "the-cond"


def test_sigma_to_t_interpolates_in_log_sigma() -> None:
    ac = alphas_cumprod()
    d = DiscreteDenoiser(lambda x, t, c: x, ac)
    ts = torch.tensor([0.0, 0.25, 17.5, 500.0, 998.9, 999.0])
    torch.testing.assert_close(d.sigma_to_t(d.t_to_sigma(ts)), ts, rtol=0, atol=1e-6)
    assert d.sigma_to_t(torch.tensor([1e-9, 0.0, 1e6])).tolist() == [0.0, 0.0, 999.0]  # clamped
    assert d.sigma_to_t(torch.tensor([1.0], dtype=torch.float16)).dtype == torch.float32
    assert d.sigma_min == pytest.approx(0.01, rel=1e-3) and 150 < d.sigma_max < 160


def test_flow_denoiser_recovers_x0() -> None:
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(3, 2, 2, generator=g), torch.randn(3, 2, 2, generator=g)
    t = torch.tensor([1.0, 0.5, 0.1])
    seen = {}

    def net(x, tt, cond):
        seen["t"] = tt
        return noise - x0

    d = FlowDenoiser(net, time_scale=1000.0)
    out = d((1 - t.reshape(-1, 1, 1)) * x0 + t.reshape(-1, 1, 1) * noise, t)
    torch.testing.assert_close(out, x0)
    torch.testing.assert_close(seen["t"], t * 1000)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        d(x0, torch.tensor([1.5, 0.5, 0.1]))


def test_denoiser_errors() -> None:
    ac = alphas_cumprod()
    with pytest.raises(UserInputError, match="valid: eps, v, x0"):
        DiscreteDenoiser(lambda x, t, c: x, ac, "flow")
    with pytest.raises(UserInputError, match="decreasing"):
        DiscreteDenoiser(lambda x, t, c: x, ac.flip(0))
    bad = DiscreteDenoiser(lambda x, t, c: x[:, :1], ac)
    with pytest.raises(ValueError, match="returned shape"):
        bad(torch.zeros(2, 3), torch.ones(2))
    with pytest.raises(ValueError, match="sigma must be a scalar or have shape"):
        DiscreteDenoiser(lambda x, t, c: x, ac)(torch.zeros(2, 3), torch.ones(3))
