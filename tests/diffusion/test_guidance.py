"""Classifier-free guidance wrapper: one batched forward, scale 1 = conditional only."""

from __future__ import annotations

import pytest
import torch

from sampleforge.diffusion.guidance import guidance
from sampleforge.errors import UserInputError


def _denoise(x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """A toy denoiser whose output depends on x, sigma and cond (B, D)."""
    return x * 0.5 + sigma.reshape(-1, 1) * 0.1 + cond.sum(dim=1, keepdim=True)


X = torch.arange(6.0).reshape(2, 3)
SIGMA = torch.tensor([1.0, 2.0])
COND = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
UNCOND = torch.tensor([[0.0, 0.5]])


def test_scale_one_is_the_conditional_pass_only(toys) -> None:
    counter = toys.CallCounter(_denoise)
    out = guidance(counter, 1.0, uncond=UNCOND)(X, SIGMA, COND)
    torch.testing.assert_close(out, _denoise(X, SIGMA, COND))
    assert counter.calls == 1 and counter.batches == [2]


def test_guided_output_and_one_batched_forward(toys) -> None:
    counter = toys.CallCounter(_denoise)
    out = guidance(counter, 3.0, uncond=UNCOND)(X, SIGMA, COND)
    assert counter.calls == 1 and counter.batches == [4]  # cond and uncond in ONE forward
    c = _denoise(X, SIGMA, COND)
    u = _denoise(X, SIGMA, UNCOND.expand(2, -1))
    torch.testing.assert_close(out, u + 3.0 * (c - u))


def test_pair_form_and_scale_zero(toys) -> None:
    u = UNCOND.expand(2, -1)
    torch.testing.assert_close(
        guidance(_denoise, 2.0)(X, SIGMA, (COND, u)), guidance(_denoise, 2.0, uncond=u)(X, SIGMA, COND)
    )
    counter = toys.CallCounter(_denoise)
    torch.testing.assert_close(guidance(counter, 0.0)(X, SIGMA, (COND, u)), _denoise(X, SIGMA, u))
    assert counter.calls == 1


def test_guidance_errors() -> None:
    with pytest.raises(UserInputError, match="finite"):
        guidance(_denoise, float("nan"))
    with pytest.raises(TypeError, match=r"cond=\(cond, uncond\)"):
        guidance(_denoise, 2.0)(X, SIGMA, COND)
    with pytest.raises(ValueError, match="does not match"):
        guidance(_denoise, 2.0, uncond=torch.zeros(2, 5))(X, SIGMA, COND)


def test_one_scale_per_sample_guides_each_as_it_would_be_alone() -> None:
    both = guidance(_denoise, [2.0, 5.0], uncond=UNCOND)(X, SIGMA, COND)
    for i, scale in enumerate((2.0, 5.0)):
        alone = guidance(_denoise, scale, uncond=UNCOND)(X[i : i + 1], SIGMA[i : i + 1], COND[i : i + 1])
        assert torch.equal(both[i : i + 1], alone)  # exactly: the same arithmetic per row
    same = guidance(_denoise, [3.0, 3.0], uncond=UNCOND)(X, SIGMA, COND)
    assert torch.equal(same, guidance(_denoise, 3.0, uncond=UNCOND)(X, SIGMA, COND))
    with pytest.raises(ValueError, match="2 cfg scales for a batch of 3"):
        guidance(_denoise, [2.0, 5.0], uncond=UNCOND)(torch.zeros(3, 3), torch.ones(3), torch.zeros(3, 2))
    with pytest.raises(UserInputError, match="finite"):
        guidance(_denoise, [2.0, float("inf")])
