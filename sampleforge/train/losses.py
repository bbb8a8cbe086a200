"""Training losses (training only; inference code never imports this module)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def kl_normal(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)), averaged over every element."""
    return 0.5 * torch.mean(mean.pow(2) + logvar.exp() - 1.0 - logvar)


def spectral_convergence(pred_mag: Tensor, target_mag: Tensor) -> Tensor:
    """||target - pred||_F / ||target||_F over (B, F, T) magnitudes."""
    return torch.linalg.vector_norm(target_mag - pred_mag) / torch.linalg.vector_norm(target_mag).clamp(min=1e-7)


def log_magnitude_l1(pred_mag: Tensor, target_mag: Tensor, floor: float = 1e-5) -> Tensor:
    return torch.mean(torch.abs(torch.log(pred_mag.clamp(min=floor)) - torch.log(target_mag.clamp(min=floor))))


def stft_magnitude(wav: Tensor, n_fft: int, hop: int | None = None) -> Tensor:
    """(B, T) → (B, n_fft/2+1, frames), Hann window, centred."""
    hop = hop or n_fft // 4
    window = torch.hann_window(n_fft, device=wav.device, dtype=wav.dtype)
    return torch.stft(wav, n_fft, hop, window=window, center=True, return_complex=True).abs()


def multi_resolution_stft_loss(pred: Tensor, target: Tensor, ffts: Sequence[int] = (256, 512, 1024, 2048)) -> Tensor:
    """Mean over resolutions of spectral convergence + log-magnitude L1 between waveforms (B, T)."""
    total = pred.new_zeros(())
    for n_fft in ffts:
        p, t = stft_magnitude(pred, n_fft), stft_magnitude(target, n_fft)
        total = total + spectral_convergence(p, t) + log_magnitude_l1(p, t)
    return total / len(ffts)
