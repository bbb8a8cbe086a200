"""Classifier-free guidance as a denoiser wrapper: works with every sampler."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from sampleforge.diffusion.denoiser import Denoiser
from sampleforge.errors import UserInputError


def guidance(denoise: Denoiser, scale: float, uncond: Tensor | None = None) -> Denoiser:
    """Wrap ``denoise`` with classifier-free guidance: ``D = D_u + scale * (D_c - D_u)``.

    The unconditional input comes from ``uncond`` (B, ...) or (1, ...) given here, or, when ``uncond`` is
    None, the wrapped denoiser is called with ``cond=(cond, uncond)``. Both passes run as ONE batched call
    (x, sigma and the conditions concatenated, uncond first); ``scale == 1`` runs only the conditional pass
    and ``scale == 0`` only the unconditional one.
    """
    if not math.isfinite(scale):
        raise UserInputError(f"cfg scale must be a finite number, got {scale}")
    fixed_uncond = uncond

    def guided(x: Tensor, sigma: Tensor, cond: Any = None) -> Tensor:
        """x (B, ...), sigma (B,), cond (B, ...) or a (cond, uncond) pair -> guided x0 (B, ...)."""
        if fixed_uncond is None:
            if not (isinstance(cond, tuple) and len(cond) == 2):
                raise TypeError("cfg without a fixed uncond needs cond=(cond, uncond)")
            c, u = cond
        else:
            c, u = cond, fixed_uncond
        if scale == 1:
            return denoise(x, sigma, c)
        u = u.expand_as(c) if u.shape[0] == 1 and c.shape[0] != 1 else u
        if u.shape != c.shape:
            raise ValueError(f"uncond shape {tuple(u.shape)} does not match cond shape {tuple(c.shape)}")
        if scale == 0:
            return denoise(x, sigma, u)
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0])
        out_u, out_c = denoise(torch.cat([x, x]), torch.cat([sigma, sigma]), torch.cat([u, c])).chunk(2)
        return out_u + scale * (out_c - out_u)

    return guided
