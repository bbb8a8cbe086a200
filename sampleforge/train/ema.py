"""Exponential moving average of a model's weights (the weights we preview and ship).

    shadow <- decay * shadow + (1 - decay) * weight          after every optimizer step
    decay   = min(ema_decay, (1 + step) / (10 + step))        with warmup (step counts from 0)

Warmup lets the average follow the fast early changes instead of remembering the random init.
Every floating-point parameter and buffer is averaged; integer buffers (e.g. BatchNorm's
``num_batches_tracked``) are copied as they are.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from sampleforge.errors import CheckpointError


def _entries(model: nn.Module) -> Iterator[tuple[str, Tensor]]:
    """Named parameters then named buffers (shared tensors once); use under no_grad."""
    for name, p in model.named_parameters():
        yield name, p
    for name, b in model.named_buffers():
        yield name, b


class EMA:
    """A shadow copy of ``model``'s weights, averaged by :meth:`update`.

    Make it after moving the model to its device: :meth:`update` caches the model's tensors.
    """

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.warmup = warmup
        self.shadow: dict[str, Tensor] = {name: t.detach().clone() for name, t in _entries(model)}
        self._cache: Any = None

    def decay_at(self, step: int) -> float:
        """The decay used by the update after optimizer step ``step`` (0-based)."""
        if self.warmup:
            return min(self.decay, (1 + step) / (10 + step))
        return self.decay

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Move the shadow towards ``model``'s current weights; ``step`` is the 0-based optimizer step."""
        avg_dst, avg_src, copies = self._pairs(model)
        for dst, src in copies:
            dst.copy_(src)
        if avg_dst:
            torch._foreach_lerp_(avg_dst, avg_src, 1.0 - self.decay_at(step))  # dst += w * (src - dst)

    def _pairs(self, model: nn.Module) -> tuple[list[Tensor], list[Tensor], list[tuple[Tensor, Tensor]]]:
        """(averaged shadows, their sources, copied pairs), cached per model: walking modules costs."""
        if self._cache is None or self._cache[0]() is not model:
            avg_dst, avg_src, copies = [], [], []
            for name, t in _entries(model):
                dst = self.shadow[name]
                if dst.is_floating_point():
                    avg_dst.append(dst)
                    avg_src.append(t)
                else:
                    copies.append((dst, t))
            self._cache = (weakref.ref(model), avg_dst, avg_src, copies)
        return self._cache[1], self._cache[2], self._cache[3]

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite ``model``'s parameters and buffers with the averaged ones (same architecture)."""
        for name, t in _entries(model):
            if name not in self.shadow:
                raise CheckpointError(f"EMA has no entry {name!r}; was it made from another model?")
            t.copy_(self.shadow[name])

    def state_dict(self) -> dict[str, Tensor]:
        """The shadow tensors by name (not copies: save them, don't modify them)."""
        return dict(self.shadow)

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore the shadow; names and shapes must match exactly."""
        missing = sorted(set(self.shadow) - set(state))
        unexpected = sorted(set(state) - set(self.shadow))
        if missing or unexpected:
            what = f"missing key {missing[0]!r}" if missing else f"unexpected key {unexpected[0]!r}"
            raise CheckpointError(f"EMA weights: {what}; were they saved from another model?")
        for name, dst in self.shadow.items():
            src = state[name]
            if src.shape != dst.shape:
                raise CheckpointError(
                    f"EMA weights: {name!r} has shape {tuple(src.shape)}, the model {tuple(dst.shape)}"
                )
            dst.copy_(src)
