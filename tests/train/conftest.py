"""A toy regression task for the training loop: a tiny MLP fitting y = sin(x) @ w on 24 items.

It uses every source of randomness the loop must restore on resume: dropout and dataset augmentation
draw from the global torch RNG, the target noise from the loss generator.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.utils.data import Dataset


class ToyDataset(Dataset[tuple[Tensor, Tensor]]):
    def __init__(self, n: int, augment: bool) -> None:
        g = torch.Generator().manual_seed(1234)
        self.x = torch.randn(n, 4, generator=g)
        self.y = torch.sin(self.x) @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
        self.augment = augment
        self.epochs: list[int] = []
        self.fetched: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        self.fetched.append(i)
        x = self.x[i]
        if self.augment:
            x = x + 0.01 * torch.randn(4)  # global RNG
        return x, self.y[i]


class ToyTask:
    name = "toy"

    def __init__(
        self,
        init_seed: int = 0,
        n: int = 24,
        dropout: float = 0.1,
        noise: float = 0.01,
        augment: bool = True,
        hook: Callable[[int], None] | None = None,
    ) -> None:
        g = torch.Generator().manual_seed(init_seed)
        self.model = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Dropout(dropout), nn.Linear(32, 1))
        with torch.no_grad():
            for p in self.model.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        self.n, self.noise, self.augment, self.hook = n, noise, augment, hook
        self.calls = 0
        self.previews: list[tuple[int, bool, bool]] = []  # (step, model.training, grad enabled)
        self.data: ToyDataset | None = None

    def dataset(self) -> ToyDataset:
        self.data = ToyDataset(self.n, self.augment)
        return self.data

    def collate(self, items: list[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
        return torch.stack([x for x, _ in items]), torch.stack([y for _, y in items])

    def loss(self, model: nn.Module, batch: Any, generator: torch.Generator) -> tuple[Tensor, dict[str, Any]]:
        self.calls += 1
        if self.hook is not None:
            self.hook(self.calls)
        x, y = batch  # (B, 4), (B, 1)
        target = y + self.noise * torch.randn(y.shape, generator=generator)
        err = model(x) - target
        return err.pow(2).mean(), {"mae": err.abs().mean().detach()}

    def preview(self, model: nn.Module, out_dir: Path, step: int) -> None:
        self.previews.append((step, model.training, torch.is_grad_enabled()))
        rank = os.environ.get("RANK", "0")
        (out_dir / f"rank{rank}.json").write_text(json.dumps({"step": step}))

    def export(self, model: nn.Module, out_dir: Path) -> None:
        state = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(out_dir / "model.safetensors"))


@pytest.fixture
def toy() -> type[ToyTask]:
    return ToyTask


def weights(path: Path) -> dict[str, Tensor]:
    return load_file(str(path))


@pytest.fixture
def load_weights() -> Callable[[Path], dict[str, Tensor]]:
    return weights
