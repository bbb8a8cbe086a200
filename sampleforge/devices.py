"""The default torch device, the same for generation and training: CUDA > MPS > CPU."""

from __future__ import annotations

import torch

from sampleforge.errors import UserInputError


def torch_device(spec: torch.device | str | None) -> torch.device:
    """``spec`` (cpu, cuda, cuda:N, mps; None or "": ``auto_device``) as a device this machine has; else a
    UserInputError naming it (a misspelt name, or a GPU this torch build or machine does not have)."""
    if spec is None or spec == "":
        return auto_device()
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError):
        raise UserInputError(f"device {str(spec)!r}: not a device name (cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}, but no GPU is visible"
            raise UserInputError(f"device {str(spec)!r}: CUDA is not available (torch {torch.__version__}: {build}); "
                                 "use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserInputError(f"device {str(spec)!r}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                                 f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise UserInputError(f"device {str(spec)!r}: Apple's MPS is not available on this machine; use --device cpu")
    elif device.type != "cpu":
        raise UserInputError(f"device {str(spec)!r}: sampleforge runs on cpu, cuda or mps")
    return device


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
