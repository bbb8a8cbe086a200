"""generate_latents: the pipeline's entry point."""

from __future__ import annotations

import math

import pytest
import torch

from sampleforge.diffusion.denoiser import DiscreteDenoiser
from sampleforge.diffusion.guidance import guidance
from sampleforge.diffusion.samplers import SAMPLERS
from sampleforge.diffusion.sampling import generate_latents
from sampleforge.diffusion.schedules import sampling_sigmas
from sampleforge.errors import UserInputError

SHAPE = (2, 8, 11)
COND = torch.tensor([[0.5, -1.0], [2.0, 1.0], [0.0, 0.3]])
UNCOND = torch.zeros(1, 2)


def _gens(seed: int, n: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed + i) for i in range(n)]


@pytest.mark.parametrize("sampler", ["ddim", "euler_ancestral", "dpmpp_2m"])
def test_batch_with_seeds_equals_one_by_one(sampler: str, linear_ac, toys) -> None:
    net = toys.make_toy_net(linear_ac, "v")
    kw = dict(alphas_cumprod=linear_ac, prediction="v", steps=6, sampler=sampler, cfg_scale=2.5)
    batch = generate_latents(net, COND, UNCOND, SHAPE, generator=_gens(42, 3), **kw)
    assert batch.shape == (3, *SHAPE) and batch.dtype == torch.float32
    for b in range(3):
        one = generate_latents(net, COND[b : b + 1], UNCOND, SHAPE, generator=_gens(42 + b, 1), **kw)
        torch.testing.assert_close(one, batch[b : b + 1], rtol=0, atol=1e-5)


def test_explicit_noise_equals_generator_noise_and_manual_pipeline(linear_ac, toys) -> None:
    net = toys.make_toy_net(linear_ac, "eps")
    noise = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(7))
    got = generate_latents(
        net, COND, UNCOND, SHAPE, alphas_cumprod=linear_ac, steps=5, sampler="ddim", cfg_scale=3.0, noise=noise,
        schedule="karras",
    )
    same = generate_latents(
        net, COND, UNCOND, SHAPE, alphas_cumprod=linear_ac, steps=5, sampler="ddim", cfg_scale=3.0,
        schedule="karras", generator=torch.Generator().manual_seed(7),
    )  # fmt: skip
    torch.testing.assert_close(got, same)
    # by hand: denoiser -> cfg -> sigmas -> start at sqrt(sigma_max^2 + 1) -> ddim
    sigmas = sampling_sigmas(linear_ac, 5, "karras")
    guided = guidance(DiscreteDenoiser(net, linear_ac, "eps"), 3.0, uncond=UNCOND)
    ref = SAMPLERS["ddim"](guided, noise * math.sqrt(float(sigmas[0]) ** 2 + 1), sigmas, cond=COND)
    torch.testing.assert_close(got, ref)


def test_flow_model_and_progress(toys) -> None:
    counter = toys.CallCounter(toys.toy_flow_net)
    progress: list[tuple[int, int]] = []
    out = generate_latents(
        counter, COND, UNCOND, SHAPE, prediction="flow", sampler="flow_heun", steps=4, cfg_scale=1.0,
        generator=torch.Generator().manual_seed(0), callback=lambda i, n: progress.append((i, n)),
    )  # fmt: skip
    assert out.shape == (3, *SHAPE) and bool(torch.isfinite(out).all())
    assert progress == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert counter.calls == 7 and set(counter.batches) == {3}  # cfg 1: no unconditional pass


def test_cfg_scale_changes_output_and_doubles_batch(linear_ac, toys) -> None:
    counter = toys.CallCounter(toys.make_toy_net(linear_ac, "eps"))
    kw = dict(alphas_cumprod=linear_ac, steps=3, sampler="ddim")
    a = generate_latents(counter, COND, UNCOND, SHAPE, cfg_scale=1.0, generator=_gens(0, 3), **kw)
    b = generate_latents(counter, COND, UNCOND, SHAPE, cfg_scale=4.0, generator=_gens(0, 3), **kw)
    assert counter.batches == [3, 3, 3, 6, 6, 6]
    assert float((a - b).abs().mean()) > 0.01


def test_generate_latents_errors(linear_ac, toys) -> None:
    net = toys.make_toy_net(linear_ac, "eps")
    ok = dict(alphas_cumprod=linear_ac, steps=2, sampler="ddim", cfg_scale=3.0)
    cases = [
        (dict(sampler="flow_euler"), "does not fit a 'eps' model"),
        (dict(sampler="nope"), "valid: ddim"),
        (dict(schedule="cosine"), "unknown schedule"),
        (dict(steps=0), "steps must be in 1..1000"),
        (dict(cfg_scale=float("inf")), "finite"),
        (dict(flow_shift=2.0), "flow_shift applies to flow models"),
        (dict(steps_offset=1, schedule="karras"), r"steps_offset applies to the 'uniform' \(leading\) spacing"),
        (dict(prediction="score"), "unknown prediction"),
        (dict(alphas_cumprod=None), "needs its training alphas_cumprod"),
        (dict(noise=torch.zeros(2, *SHAPE)), "noise has shape"),
        (dict(eta=0.5, sampler="heun"), "deterministic"),
    ]
    for kw, msg in cases:
        with pytest.raises(UserInputError, match=msg):
            generate_latents(net, COND, UNCOND, SHAPE, **{**ok, **kw})
    with pytest.raises(UserInputError, match="uncond shape"):
        generate_latents(net, COND, torch.zeros(2, 2), SHAPE, **ok)
    with pytest.raises(UserInputError, match="not schedule 'karras'"):
        generate_latents(
            toys.toy_flow_net, COND, UNCOND, SHAPE, prediction="flow", sampler="flow_euler", schedule="karras",
            steps=2, cfg_scale=3.0,
        )
    with pytest.raises(UserInputError, match="a flow model takes flow_shift"):
        generate_latents(
            toys.toy_flow_net, COND, UNCOND, SHAPE, prediction="flow", sampler="flow_euler", steps=2, cfg_scale=3.0,
            steps_offset=1,
        )


def test_partial_start_runs_only_the_last_steps(linear_ac, toys) -> None:
    net, ac = toys.make_toy_net(linear_ac, "eps"), linear_ac
    cond, uncond = torch.zeros(2, 2), torch.zeros(1, 2)
    init = torch.randn(2, 2, 8, 11, generator=torch.Generator().manual_seed(1))
    calls: list[int] = []
    kw = dict(alphas_cumprod=ac, steps=10, sampler="ddim", cfg_scale=3.0, noise=torch.zeros_like(init), init=init)
    out = generate_latents(net, cond, uncond, (2, 8, 11), strength=0.3, callback=lambda i, n: calls.append(n), **kw)
    assert calls == [3, 3, 3] and out.shape == init.shape  # the last 3 of 10 steps
    torch.testing.assert_close(generate_latents(net, cond, uncond, (2, 8, 11), strength=0.0, **kw), init)
    with pytest.raises(UserInputError, match="strength"):
        generate_latents(net, cond, uncond, (2, 8, 11), strength=1.5, **kw)


    full = generate_latents(net, cond, uncond, (2, 8, 11), alphas_cumprod=ac, steps=10, sampler="ddim",
                            cfg_scale=3.0, noise=kw["noise"])
    torch.testing.assert_close(generate_latents(net, cond, uncond, (2, 8, 11), strength=1.0, **kw), full)
