"""The default torch device, the same for generation and training: CUDA > MPS > CPU."""

from __future__ import annotations

import torch


def auto_device() -> torch.device:
    """The fastest device available: CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


# Random draws from a seeded generator for tensors that may live elsewhere: a CUDA generator cannot fill a CPU tensor
# nor a CPU generator a CUDA one, so the numbers are drawn on the generator's device and moved to ``device``. The
# same seed gives the same numbers wherever the batch lives; without a generator, torch's global one on ``device``.
Shape = int | tuple[int, ...] | torch.Size


def _where(generator: torch.Generator | None, device: torch.device) -> torch.device:
    return generator.device if generator is not None else device


def uniform(shape: Shape, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """U[0, 1) of ``shape`` on ``device``."""
    return torch.rand(shape, generator=generator, device=_where(generator, device)).to(device)


def normal(shape: Shape, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """N(0, 1) of ``shape`` on ``device``."""
    return torch.randn(shape, generator=generator, device=_where(generator, device)).to(device)


def integers(high: int, shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Integers in [0, high) of ``shape`` on ``device``."""
    return torch.randint(0, high, shape, generator=generator, device=_where(generator, device)).to(device)
