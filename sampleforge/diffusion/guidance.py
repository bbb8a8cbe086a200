"""Classifier-free guidance as a denoiser wrapper: works with every sampler."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from sampleforge.diffusion.denoiser import Denoiser
from sampleforge.errors import UserInputError


def guidance(denoise: Denoiser, scale: float | Sequence[float], uncond: Tensor | None = None) -> Denoiser:
    """Wrap ``denoise`` with classifier-free guidance: ``D = D_u + scale * (D_c - D_u)``.

    The unconditional input comes from ``uncond`` (B, ...) or (1, ...) given here, or, when ``uncond`` is
    None, the wrapped denoiser is called with ``cond=(cond, uncond)``. Both passes run as ONE batched call
    (x, sigma and the conditions concatenated, uncond first); ``scale == 1`` runs only the conditional pass
    and ``scale == 0`` only the unconditional one. ``scale`` may also be one value per sample (B,): each
    sample is guided as it would be alone with its own scale.
    """
    scales = [float(scale)] if isinstance(scale, (int, float)) else [float(s) for s in scale]
    if not scales or not all(math.isfinite(s) for s in scales):
        raise UserInputError(f"cfg scale must be a finite number, got {scale}")
    per_row = scales if len(set(scales)) > 1 else None  # None: one scale for the whole batch
    one = scales[0]
    fixed_uncond = uncond

    def guided(x: Tensor, sigma: Tensor, cond: Any = None) -> Tensor:
        """x (B, ...), sigma (B,), cond (B, ...) or a (cond, uncond) pair -> guided x0 (B, ...)."""
        if fixed_uncond is None:
            if not (isinstance(cond, tuple) and len(cond) == 2):
                raise TypeError("cfg without a fixed uncond needs cond=(cond, uncond)")
            c, u = cond
        else:
            c, u = cond, fixed_uncond
        if per_row is None and one == 1:
            return denoise(x, sigma, c)
        u = u.expand_as(c) if u.shape[0] == 1 and c.shape[0] != 1 else u
        if u.shape != c.shape:
            raise ValueError(f"uncond shape {tuple(u.shape)} does not match cond shape {tuple(c.shape)}")
        if per_row is None and one == 0:
            return denoise(x, sigma, u)
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0])
        out_u, out_c = denoise(torch.cat([x, x]), torch.cat([sigma, sigma]), torch.cat([u, c])).chunk(2)
        if per_row is None:
            return out_u + one * (out_c - out_u)
        if len(per_row) != x.shape[0]:
            raise ValueError(f"{len(per_row)} cfg scales for a batch of {x.shape[0]}")
        rows = [out_u[i : i + 1] + s * (out_c[i : i + 1] - out_u[i : i + 1]) for i, s in enumerate(per_row)]
        return torch.cat(rows)  # each row with a Python float, as alone: the same rounding

    return guided
