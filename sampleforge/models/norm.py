"""The group normalisation the VAE and the U-Net share."""

from __future__ import annotations

from torch import nn

MAX_GROUPS = 16


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm over ``channels`` in as many groups as divide them, up to 16: 16 for the usual multiples of 16,
    one per channel below that, and 12 for 24 channels rather than a failure. The group count leaves the state
    dict unchanged (one scale and shift per channel)."""
    groups = next(g for g in range(min(MAX_GROUPS, channels), 0, -1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)
