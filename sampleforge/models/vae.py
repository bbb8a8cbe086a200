"""Mel VAE: log-mel (B, 128, F) ⇄ latent (B, C, ceil(F / 2^d)).

A 1-D convolutional, KL-regularised autoencoder over time: the 128 mel bands are the input channels and time is
downsampled ``d`` times by 2. Frames are padded with the log floor up to a multiple of ``2^d`` before encoding and
cropped after decoding, so any clip length works. Latents are multiplied by ``scale_factor`` (measured on the
training data and stored in the config) so that diffusion sees ~unit variance.

Why 1-D and not a 2-D (C x H x W) latent: on a CPU a 2-D U-Net over small feature maps is dominated by per-op
overhead; a 1-D U-Net over the same number of latent values treats the frequency axis as channels, so every op
is one dense matmul-like conv, about ten times cheaper per step. Default: d = 3, C = 32 → a 2-s clip is a 32 x 22 latent
(704 numbers for 22,144 mel values).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sampleforge.models.norm import group_norm


@dataclass
class VAEConfig:
    n_mels: int = 128
    channels: list[int] = field(default_factory=lambda: [256, 256, 256])  # one entry per time downsampling
    latent_channels: int = 32
    blocks_per_level: int = 1
    kernel_size: int = 5
    refine_blocks: int = 0  # decoder: residual blocks at the mel frame rate after the last upsampling (capacity
    # for what a time-compressed latent smears: attacks, a snare's crack); zero-initialised, so a decoder
    # fine-tune (stage vae-decoder) can add them to a trained VAE and start from its decoder unchanged
    mel_mean: float = -5.0  # log-mel normalisation: (mel - mean) / std
    mel_std: float = 3.0
    log_floor: float = -11.5129  # log(1e-5): what padding frames hold
    scale_factor: float = 1.0  # latents * scale_factor ≈ unit variance (measured after training)

    def __post_init__(self) -> None:
        from sampleforge.strict import ConfigError, require_at_least, require_sizes

        require_sizes("vae", "channels", self.channels)
        require_at_least("vae", self, ("n_mels", "latent_channels", "kernel_size"))
        require_at_least("vae", self, ("blocks_per_level", "refine_blocks"), minimum=0)
        if self.kernel_size % 2 == 0:
            raise ConfigError(f"vae.kernel_size must be odd (a centred convolution), got {self.kernel_size}")
        if not self.mel_std > 0 or not self.scale_factor > 0:
            raise ConfigError(f"vae.mel_std and vae.scale_factor must be > 0, got {self.mel_std} and "
                              f"{self.scale_factor}")

    @property
    def factor(self) -> int:
        return 2 ** len(self.channels)

    def latent_shape(self, frames: int) -> tuple[int, int]:
        """(C, W) of the latent for a mel with ``frames`` frames."""
        return (self.latent_channels, math.ceil(frames / self.factor))


class ResBlock1d(nn.Module):
    def __init__(self, cin: int, cout: int, k: int = 5) -> None:
        super().__init__()
        self.norm1 = group_norm(cin)
        self.conv1 = nn.Conv1d(cin, cout, k, padding=k // 2)
        self.norm2 = group_norm(cout)
        self.conv2 = nn.Conv1d(cout, cout, k, padding=k // 2)
        self.skip = nn.Conv1d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Encoder(nn.Module):
    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        ch, k = cfg.channels, cfg.kernel_size
        self.conv_in = nn.Conv1d(cfg.n_mels, ch[0], k, padding=k // 2)
        layers: list[nn.Module] = []
        cin = ch[0]
        for c in ch:
            for _ in range(cfg.blocks_per_level):
                layers.append(ResBlock1d(cin, c, k))
                cin = c
            layers.append(nn.Conv1d(c, c, 4, stride=2, padding=1))  # time ÷ 2
        layers.append(ResBlock1d(cin, cin, 3))
        self.body = nn.Sequential(*layers)
        self.norm_out = group_norm(cin)
        self.conv_out = nn.Conv1d(cin, 2 * cfg.latent_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_out(F.silu(self.norm_out(self.body(self.conv_in(x)))))


class Decoder(nn.Module):
    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        ch, k = list(reversed(cfg.channels)), cfg.kernel_size
        self.conv_in = nn.Conv1d(cfg.latent_channels, ch[0], 3, padding=1)
        layers: list[nn.Module] = [ResBlock1d(ch[0], ch[0], 3)]
        cin = ch[0]
        for c in ch:
            layers.append(nn.ConvTranspose1d(cin, c, 4, stride=2, padding=1))  # time × 2
            cin = c
            for _ in range(cfg.blocks_per_level):
                layers.append(ResBlock1d(cin, c, k))
        self.body = nn.Sequential(*layers)
        refine = [ResBlock1d(cin, cin, k) for _ in range(cfg.refine_blocks)]
        for block in refine:
            nn.init.zeros_(block.conv2.weight)  # each block starts as the identity
            if block.conv2.bias is not None:
                nn.init.zeros_(block.conv2.bias)
        self.refine = nn.Sequential(*refine)
        self.norm_out = group_norm(cin)
        self.conv_out = nn.Conv1d(cin, cfg.n_mels, k, padding=k // 2)

    def forward(self, z: Tensor) -> Tensor:
        return self.conv_out(F.silu(self.norm_out(self.refine(self.body(self.conv_in(z))))))


class MelVAE(nn.Module):
    """log-mel ⇄ scaled latent. ``encode``/``decode`` work in the diffusion's (scaled) latent space."""

    def __init__(self, cfg: VAEConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or VAEConfig()
        self.encoder = Encoder(self.cfg)
        self.decoder = Decoder(self.cfg)

    def _pad(self, mel: Tensor) -> Tensor:
        pad = (-mel.shape[-1]) % self.cfg.factor
        return F.pad(mel, (0, pad), value=self.cfg.log_floor) if pad else mel

    def posterior(self, mel: Tensor) -> tuple[Tensor, Tensor]:
        """log-mel (B, 128, F) → (mean, logvar), each (B, C, ceil(F / 2^d)), unscaled."""
        x = (self._pad(mel) - self.cfg.mel_mean) / self.cfg.mel_std
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def encode(self, mel: Tensor, generator: torch.Generator | None = None, sample: bool = False) -> Tensor:
        """log-mel (B, 128, F) → scaled latent (B, C, W): the posterior mean (or a sample)."""
        mean, logvar = self.posterior(mel)
        z = mean
        if sample:
            noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            z = mean + torch.exp(0.5 * logvar) * noise
        return z * self.cfg.scale_factor

    def decode_unscaled(self, z: Tensor, frames: int | None = None, clamp: bool = True) -> Tensor:
        """unscaled latent (B, C, W) → log-mel (B, 128, frames); ``clamp=False`` for training losses."""
        x = self.decoder(z) * self.cfg.mel_std + self.cfg.mel_mean
        if clamp:
            x = x.clamp(min=self.cfg.log_floor)
        return x if frames is None else x[..., :frames]

    def decode(self, z: Tensor, frames: int | None = None) -> Tensor:
        """scaled latent (B, C, W) → log-mel (B, 128, frames) (all decoded frames when ``frames`` is None)."""
        return self.decode_unscaled(z / self.cfg.scale_factor, frames)
