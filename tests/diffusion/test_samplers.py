"""Sampler contract: registry, one signature, purity, noise from the generator, device/dtype, regressions."""

from __future__ import annotations

import pytest
import torch

from sampleforge.diffusion.denoiser import DiscreteDenoiser, FlowDenoiser
from sampleforge.diffusion.samplers import SAMPLERS, STOCHASTIC_SAMPLERS, get_sampler, randn_like
from sampleforge.diffusion.schedules import alphas_cumprod, flow_times, sampling_sigmas
from sampleforge.errors import UserInputError

COND = torch.tensor([[0.5, -1.0], [2.0, 1.0]])


def _setup(name: str, toys, dtype=torch.float32, steps: int = 8):
    """(denoiser, start x (2, 2, 4, 4), sigmas) for a sampler, the start drawn from seed 1234."""
    g = torch.Generator().manual_seed(1234)
    if name.startswith("flow_") or name == "pingpong":
        return (
            FlowDenoiser(toys.toy_flow_net, time_scale=1.0),
            torch.randn(2, 2, 4, 4, generator=g).to(dtype),
            flow_times(steps),
        )
    ac = alphas_cumprod()
    sigmas = sampling_sigmas(ac, steps, "trailing", dtype=torch.float32)
    x = (torch.randn(2, 2, 4, 4, generator=g) * (sigmas[0] ** 2 + 1).sqrt()).to(dtype)
    return DiscreteDenoiser(toys.make_toy_net(ac, "eps"), ac, "eps"), x, sigmas


# Seeded regression values (mean, std, y[0,0,0,0], y[1,1,3,2]) for 8 steps of a fixed toy network.
# They guard against accidental changes; if a change is intended, re-record them and say why.
REGRESSION = {
    ("ddim", 0.0): [0.548884, 0.379606, 0.434999, 0.097252],
    ("ddim", 0.5): [0.533668, 0.382278, 0.084711, 0.415469],
    ("euler", None): [0.548884, 0.379606, 0.434999, 0.097252],
    ("euler_ancestral", None): [0.567247, 0.409029, 0.188487, 0.568846],
    ("heun", None): [0.550408, 0.454979, 0.427116, -0.011861],
    ("dpmpp_2m", None): [0.545829, 0.409401, 0.431896, 0.044937],
    ("flow_euler", None): [0.598384, 0.481991, 0.41545, 0.093226],
    ("flow_heun", None): [0.624146, 0.575915, 0.403073, 0.026231],
    ("pingpong", None): [0.689817, 0.500149, 0.115713, 0.825244],
}


def test_registry_covers_design() -> None:
    assert set(SAMPLERS) == {
        "ddim",
        "euler",
        "euler_ancestral",
        "heun",
        "dpmpp_2m",
        "flow_euler",
        "flow_heun",
        "pingpong",
    }
    assert {name for name, _ in REGRESSION} == set(SAMPLERS)


def test_get_sampler_lists_valid_names() -> None:
    assert get_sampler("heun") is SAMPLERS["heun"]
    with pytest.raises(UserInputError, match=r"unknown sampler 'plms' \(valid: ddim, euler, .*flow_heun, pingpong\)"):
        get_sampler("plms")


@pytest.mark.parametrize(("name", "eta"), sorted(REGRESSION, key=str))
def test_seeded_regression_values(name: str, eta: float | None, toys) -> None:
    denoise, x, sigmas = _setup(name, toys)
    g = torch.Generator().manual_seed(1234)
    torch.randn(2, 2, 4, 4, generator=g)  # the same generator state as when the values were recorded
    kw = {} if eta is None else {"eta": eta}
    y = SAMPLERS[name](denoise, x, sigmas, cond=COND, generator=g, **kw)
    got = [float(y.mean()), float(y.std()), float(y[0, 0, 0, 0]), float(y[1, 1, 3, 2])]
    assert got == pytest.approx(REGRESSION[(name, eta)], abs=2e-5)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_pure_deterministic_and_input_untouched(name: str, toys) -> None:
    denoise, x, sigmas = _setup(name, toys)
    x_before = x.clone()
    calls: list[tuple[int, int]] = []
    a = SAMPLERS[name](
        denoise,
        x,
        sigmas,
        cond=COND,
        generator=torch.Generator().manual_seed(3),
        callback=lambda i, n: calls.append((i, n)),
    )
    b = SAMPLERS[name](denoise, x, sigmas, cond=COND, generator=torch.Generator().manual_seed(3))
    assert torch.equal(x, x_before)
    assert torch.equal(a, b)  # no state kept between calls
    assert calls == [(i, 8) for i in range(1, 9)]
    assert a.shape == x.shape and bool(torch.isfinite(a).all())


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_dtype_follows_input(name: str, toys) -> None:
    denoise, x, sigmas = _setup(name, toys, dtype=torch.float64)
    y = SAMPLERS[name](denoise, x, sigmas, cond=COND.double(), generator=torch.Generator().manual_seed(3))
    assert y.dtype == torch.float64
    y32 = SAMPLERS[name](denoise, x.float(), sigmas, cond=COND, generator=torch.Generator().manual_seed(3))
    assert y32.dtype == torch.float32
    torch.testing.assert_close(y32.double(), y, rtol=0, atol=1e-4)  # same noise on either dtype


def test_cond_reaches_the_network(toys) -> None:
    denoise, x, sigmas = _setup("heun", toys)
    a = SAMPLERS["heun"](denoise, x, sigmas, cond=COND)
    b = SAMPLERS["heun"](denoise, x, sigmas, cond=COND + 1)
    assert float((a - b).abs().mean()) > 0.05


def test_ddim_with_eta_equals_euler_ancestral(toys) -> None:
    denoise, x, sigmas = _setup("ddim", toys)
    for eta in (0.3, 1.0):
        a = SAMPLERS["ddim"](denoise, x, sigmas, eta=eta, generator=torch.Generator().manual_seed(9))
        b = SAMPLERS["euler_ancestral"](
            denoise, x, sigmas, eta=eta, generator=torch.Generator().manual_seed(9)
        )
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_flow_samplers_are_euler_and_heun_on_flow_times(toys) -> None:
    denoise, x, sigmas = _setup("flow_euler", toys)
    torch.testing.assert_close(
        SAMPLERS["flow_euler"](denoise, x, sigmas), SAMPLERS["euler"](denoise, x, sigmas)
    )
    torch.testing.assert_close(
        SAMPLERS["flow_heun"](denoise, x, sigmas), SAMPLERS["heun"](denoise, x, sigmas)
    )
    with pytest.raises(UserInputError, match=r"times in \[0, 1\]"):
        SAMPLERS["flow_euler"](denoise, x, sigmas * 2)


def test_pingpong_renoises_from_the_generator_and_ends_on_the_clean_estimate(toys) -> None:
    denoise, x, sigmas = _setup("pingpong", toys)
    a = SAMPLERS["pingpong"](denoise, x, sigmas, cond=COND, generator=torch.Generator().manual_seed(1))
    b = SAMPLERS["pingpong"](denoise, x, sigmas, cond=COND, generator=torch.Generator().manual_seed(2))
    assert float((a - b).abs().mean()) > 1e-3  # fresh noise at every step, from the generator
    one = SAMPLERS["pingpong"](denoise, x, sigmas[[0, -1]], cond=COND)
    torch.testing.assert_close(one, denoise(x, sigmas[0], COND))  # one step: the clean estimate itself
    with pytest.raises(UserInputError, match="re-noises fully"):
        SAMPLERS["pingpong"](denoise, x, sigmas, eta=0.5)


def test_model_call_counts(toys) -> None:
    for name, expected in {"euler": 8, "ddim": 8, "dpmpp_2m": 8, "heun": 15, "euler_ancestral": 8}.items():
        denoise, x, sigmas = _setup(name, toys)
        counter = toys.CallCounter(denoise)
        SAMPLERS[name](counter, x, sigmas)
        assert counter.calls == expected, name


def test_non_zero_end_returns_intermediate_state(toys) -> None:
    denoise, x, sigmas = _setup("euler", toys)
    half = SAMPLERS["euler"](denoise, x, sigmas[:5])
    rest = SAMPLERS["euler"](denoise, half, sigmas[4:])
    torch.testing.assert_close(rest, SAMPLERS["euler"](denoise, x, sigmas))


def test_per_sample_generators_make_batches_separable(toys) -> None:
    """With one generator per sample, sample b of a batch equals that sample sampled alone."""
    denoise, x, sigmas = _setup("euler_ancestral", toys)
    gens = [torch.Generator().manual_seed(s) for s in (10, 11)]
    batch = SAMPLERS["euler_ancestral"](denoise, x, sigmas, cond=COND, generator=gens)
    for b, seed in enumerate((10, 11)):
        one = SAMPLERS["euler_ancestral"](
            denoise, x[b : b + 1], sigmas, cond=COND[b : b + 1], generator=torch.Generator().manual_seed(seed)
        )
        torch.testing.assert_close(one, batch[b : b + 1], rtol=0, atol=1e-5)
    with pytest.raises(UserInputError, match="3 generators for a batch of 2"):
        randn_like(x, [torch.Generator()] * 3)


@pytest.mark.parametrize("name", sorted(set(SAMPLERS) - STOCHASTIC_SAMPLERS - {"pingpong"}))
def test_deterministic_samplers_refuse_eta(name: str, toys) -> None:
    denoise, x, sigmas = _setup(name, toys)
    with pytest.raises(UserInputError, match="deterministic"):
        SAMPLERS[name](denoise, x, sigmas, eta=0.5)
    SAMPLERS[name](denoise, x, sigmas, eta=0.0)  # 0 is accepted: it means the same thing


def test_bad_sigmas_and_eta(toys) -> None:
    denoise, x, sigmas = _setup("euler", toys)
    for bad, msg in [
        (sigmas[:1], "at least 2"),
        (sigmas.flip(0), "positive"),
        (torch.tensor([3.0, 3.0, 0.0]), "strictly decreasing"),
        (torch.tensor([float("nan"), 0.0]), "finite"),
    ]:
        with pytest.raises(UserInputError, match=msg):
            SAMPLERS["euler"](denoise, x, bad)
    with pytest.raises(UserInputError, match="eta"):
        SAMPLERS["ddim"](denoise, x, sigmas, eta=-1.0)


def test_the_sampler_setting_names_every_registered_sampler() -> None:
    """The setting's names (listed apart so that checking a setting loads no torch) are the registries' names."""
    from sampleforge.backends.schedulers import mapped_names
    from sampleforge.params import SAMPLER_NAMES, SPECS

    assert SAMPLER_NAMES == tuple(dict.fromkeys([*SAMPLERS, *mapped_names()]))
    assert SPECS["sampler"].choices == SAMPLER_NAMES
