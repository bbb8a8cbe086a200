"""Latent U-Net: noisy latent (B, C, W) + timestep (B,) + keyword condition (B, D) → prediction (B, C, W).

1-D over time (see models/vae.py for why): two resolutions (W and W/2), FiLM conditioning from the sum of the
timestep and keyword embeddings in every residual block, and one self-attention block at the low resolution.
``patch`` folds neighbouring latent frames into channels first (as DiT's patches): a VAE with finer time
resolution (time ÷ 4, 44 frames for 2 s) then costs the U-Net what the ÷ 8 latent did, since at these sizes
a step's cost follows the number of frames and convs, not the input channels.
On a 2-s clip's 32 x 22 latent a step is dominated by per-op overhead, so the block count, not the width,
sets the speed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sampleforge.models.norm import group_norm


@dataclass
class UNetConfig:
    in_channels: int = 32
    channels: list[int] = field(default_factory=lambda: [256, 384])  # one entry per resolution
    blocks_per_level: int = 2
    cond_dim: int = 128  # keyword-encoder output size
    time_dim: int = 128
    attention_heads: int = 4
    mid_attention: bool = True
    patch: int = 1  # fold this many latent frames into channels before the first conv (and back after the last)

    def __post_init__(self) -> None:
        from sampleforge.strict import ConfigError, require_at_least, require_sizes

        require_sizes("unet", "channels", self.channels)
        require_at_least("unet", self, ("in_channels", "cond_dim", "time_dim", "attention_heads", "patch"))
        require_at_least("unet", self, ("blocks_per_level",), minimum=0)
        if self.time_dim % 2:
            raise ConfigError(f"unet.time_dim must be even (sines and cosines), got {self.time_dim}")
        if self.mid_attention and self.channels[-1] % self.attention_heads:
            raise ConfigError(f"unet.attention_heads ({self.attention_heads}) must divide the last of unet.channels "
                              f"({self.channels[-1]}), where the attention runs")


class FastConv1d(nn.Conv1d):
    """``nn.Conv1d`` (same parameters, same state dict) that, at inference on a short input, runs as one matrix
    product over the unfolded input (im2col + ``F.linear``). At the U-Net's widths (11-44 frames) oneDNN's
    convolution costs more in set-up than in arithmetic, and a 1x1 convolution falls to ATen's slow path: here,
    one thread, batch 2, 192→576 channels over 11 frames (attention's qkv) 493 → 75 µs; 3-tap 128→128 over 22
    frames 110 → 79 µs. Longer inputs (the VAE's 173 frames) are faster as convolutions and stay so."""

    MAX_WIDTH = 64

    def forward(self, x: Tensor) -> Tensor:
        if (self.training or x.dim() != 3 or x.shape[-1] > self.MAX_WIDTH or x.device.type != "cpu"
                or self.groups != 1 or self.dilation[0] != 1
                or not isinstance(self.padding, tuple) or self.padding_mode != "zeros"):
            return super().forward(x)
        k, pad, stride = self.kernel_size[0], self.padding[0], self.stride[0]
        w = self.weight.reshape(self.out_channels, -1)
        if k == 1 and pad == 0 and stride == 1:
            return F.linear(x.transpose(1, 2), w, self.bias).transpose(1, 2)
        cols = F.pad(x, (pad, pad)).unfold(2, k, stride)  # (B, C, W', k)
        cols = cols.permute(0, 2, 1, 3).reshape(x.shape[0], cols.shape[2], -1)  # (B, W', C*k), C-major as w
        return F.linear(cols, w, self.bias).transpose(1, 2)


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """t (B,) float timesteps → (B, dim) sinusoidal embedding."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class FiLMResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice; the embedding sets a per-channel scale and shift after the first conv."""

    def __init__(self, cin: int, cout: int, emb_dim: int) -> None:
        super().__init__()
        self.norm1 = group_norm(cin)
        self.conv1 = FastConv1d(cin, cout, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * cout)
        self.norm2 = group_norm(cout)
        self.conv2 = FastConv1d(cout, cout, 3, padding=1)
        self.skip = FastConv1d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)  # type: ignore[arg-type]

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(F.silu(h))
        return self.skip(x) + h


class SelfAttention1d(nn.Module):
    def __init__(self, ch: int, heads: int) -> None:
        super().__init__()
        self.norm = group_norm(ch)
        self.qkv = FastConv1d(ch, 3 * ch, 1)
        self.out = FastConv1d(ch, ch, 1)
        self.heads = heads
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)  # type: ignore[arg-type]

    def forward(self, x: Tensor) -> Tensor:
        b, c, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, w).unbind(1)
        # (B, heads, C/heads, W) → attention over the W positions
        o = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.out(o.transpose(-1, -2).reshape(b, c, w))


class LatentUNet(nn.Module):
    """``forward(x (B,C,W), t (B,), cond (B,D)) -> (B,C,W)``; any W (padded internally)."""

    def __init__(self, cfg: UNetConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or UNetConfig()
        emb = cfg.time_dim * 2
        self.time_mlp = nn.Sequential(nn.Linear(cfg.time_dim, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.cond_mlp = nn.Sequential(nn.Linear(cfg.cond_dim, emb), nn.SiLU(), nn.Linear(emb, emb))
        ch = cfg.channels
        self.conv_in = FastConv1d(cfg.in_channels * cfg.patch, ch[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skips = [ch[0]]
        cin = ch[0]
        for i, c in enumerate(ch):
            for _ in range(cfg.blocks_per_level):
                self.down.append(FiLMResBlock(cin, c, emb))
                cin = c
                skips.append(c)
            if i < len(ch) - 1:
                self.downsample.append(FastConv1d(c, c, 3, stride=2, padding=1))
                skips.append(c)
        self.mid1 = FiLMResBlock(cin, cin, emb)
        self.mid_attn = SelfAttention1d(cin, cfg.attention_heads) if cfg.mid_attention else nn.Identity()
        self.mid2 = FiLMResBlock(cin, cin, emb)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i, c in reversed(list(enumerate(ch))):
            for _ in range(cfg.blocks_per_level + 1):
                self.up.append(FiLMResBlock(cin + skips.pop(), c, emb))
                cin = c
            if i > 0:
                self.upsample.append(FastConv1d(c, c, 3, padding=1))
        self.norm_out = group_norm(cin)
        self.conv_out = FastConv1d(cin, cfg.in_channels * cfg.patch, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)  # type: ignore[arg-type]

    def forward(self, x: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        cfg = self.cfg
        b, c, w0 = x.shape
        p = cfg.patch
        pw = (-w0) % (p * 2 ** (len(cfg.channels) - 1))
        if pw:
            x = F.pad(x, (0, pw))
        if p > 1:  # (B, C, W) → (B, C*p, W/p): frame j*p + i of channel c → channel c*p + i, frame j
            x = x.reshape(b, c, -1, p).transpose(2, 3).reshape(b, c * p, -1)
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        emb = self.time_mlp(timestep_embedding(t, cfg.time_dim)) + self.cond_mlp(cond)
        emb = F.silu(emb)
        h = self.conv_in(x)
        hs = [h]
        k = 0
        for i in range(len(cfg.channels)):
            for _ in range(cfg.blocks_per_level):
                h = self.down[k](h, emb)
                k += 1
                hs.append(h)
            if i < len(cfg.channels) - 1:
                h = self.downsample[i](h)
                hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        k = 0
        for j, i in enumerate(reversed(range(len(cfg.channels)))):
            for _ in range(cfg.blocks_per_level + 1):
                h = self.up[k](torch.cat([h, hs.pop()], dim=1), emb)
                k += 1
            if i > 0:
                h = self.upsample[j](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        out = self.conv_out(F.silu(self.norm_out(h)))
        if p > 1:
            out = out.reshape(b, c, p, -1).transpose(2, 3).reshape(b, c, -1)
        return out[..., :w0]
