"""Training losses on a batch that lives on another device than the run's generator.

There is no GPU here. A model and batch on the "meta" device, with the run's generator on the CPU, stand in for a
CUDA run: any tensor a loss makes on the wrong device (a draw on the CPU, a weight built at construction) meets a
meta tensor and raises, as it would meet a CUDA one.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from sampleforge.models.vae import MelVAE, VAEConfig
from sampleforge.train.recipe import DataConfig, RecipeConfig
from sampleforge.train.vae import VAETask


@pytest.mark.parametrize("delta_weight", [0.0, 1.0])
def test_the_vae_loss_follows_the_batch_device(delta_weight: float) -> None:
    task = VAETask.__new__(VAETask)  # the loss alone: no data set to build
    task.ctx = SimpleNamespace(data=DataConfig(augment=True),
                               recipe=RecipeConfig(delta_weight=delta_weight, low_band_weight=2.0))
    task.band_weight = torch.linspace(1.0, 3.0, 128).view(1, -1, 1)  # built on the CPU, as the task does
    vae = MelVAE(VAEConfig(channels=[16, 16], latent_channels=4)).to("meta")
    mel = torch.zeros(2, 128, 24, device="meta")
    loss, logs = task.loss(vae, {"mel": mel}, torch.Generator().manual_seed(0))
    assert loss.device.type == "meta" and loss.dim() == 0
    assert {"l1", "kl"} <= set(logs) and ("delta" in logs) == (delta_weight > 0)
