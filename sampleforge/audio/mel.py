"""Log-mel spectrogram front end, an nn.Module whose DSP constants are buffers.

44.1 kHz, n_fft 2048, hop 512, 128 Slaney mel bands, magnitude (power 1) mel, natural-log compression
with a floor. A 2-s clip (88,200 samples) gives exactly 128 x 173 frames (centred frames:
``frames = samples // hop + 1``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn


@dataclass
class MelConfig:
    sample_rate: int = 44100
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    f_min: float = 0.0
    f_max: float | None = None  # None → sample_rate / 2
    log_floor: float = 1e-5  # log(max(mel, floor)): -11.51 is digital silence

    def __post_init__(self) -> None:
        from sampleforge.strict import ConfigError, require_at_least

        require_at_least("mel", self, ("sample_rate", "n_fft", "hop_length", "n_mels"))
        if self.hop_length > self.n_fft:
            raise ConfigError(f"mel.hop_length ({self.hop_length}) must not exceed mel.n_fft ({self.n_fft})")
        top = self.sample_rate / 2 if self.f_max is None else self.f_max
        if not 0 <= self.f_min < top <= self.sample_rate / 2:
            raise ConfigError(f"mel: need 0 <= f_min < f_max <= sample_rate / 2, got f_min {self.f_min}, f_max "
                              f"{self.f_max}, sample_rate {self.sample_rate}")
        if not self.log_floor > 0:
            raise ConfigError(f"mel.log_floor must be > 0, got {self.log_floor}")

    @property
    def n_freqs(self) -> int:
        return self.n_fft // 2 + 1

    def frames(self, samples: int) -> int:
        """Number of mel frames for a clip of ``samples`` samples."""
        return samples // self.hop_length + 1

    def samples(self, duration: float) -> int:
        return int(round(duration * self.sample_rate))

    @property
    def log_floor_value(self) -> float:
        return float(np.log(self.log_floor))


def _hz_to_mel_slaney(f: np.ndarray) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    f_sp = 200.0 / 3
    mels = f / f_sp
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, mels)


def _mel_to_hz_slaney(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def _mel_points_hz(cfg: MelConfig) -> np.ndarray:
    """The n_mels + 2 edge and centre frequencies of the triangular filters, in Hz."""
    f_max = cfg.f_max if cfg.f_max is not None else cfg.sample_rate / 2
    mel_pts = np.linspace(_hz_to_mel_slaney(np.array(cfg.f_min)), _hz_to_mel_slaney(np.array(f_max)), cfg.n_mels + 2)
    return _mel_to_hz_slaney(mel_pts)


def mel_centers(cfg: MelConfig) -> np.ndarray:
    """Centre frequency of each mel band, Hz, shape (n_mels,)."""
    return _mel_points_hz(cfg)[1:-1]


def mel_filterbank(cfg: MelConfig) -> np.ndarray:
    """Slaney-scale, Slaney-normalised triangular filters, shape (n_mels, n_freqs)."""
    fft_freqs = np.linspace(0, cfg.sample_rate / 2, cfg.n_freqs)
    hz_pts = _mel_points_hz(cfg)
    fdiff = np.diff(hz_pts)
    ramps = hz_pts[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    enorm = 2.0 / (hz_pts[2 : cfg.n_mels + 2] - hz_pts[: cfg.n_mels])
    return (weights * enorm[:, None]).astype(np.float32)


class MelSpectrogram(nn.Module):
    """Waveform (B, T) or (T,) → log-mel (B, n_mels, T // hop + 1)."""

    window: Tensor
    fb: Tensor

    def __init__(self, cfg: MelConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or MelConfig()
        self.register_buffer("window", torch.hann_window(self.cfg.n_fft), persistent=False)
        self.register_buffer("fb", torch.from_numpy(mel_filterbank(self.cfg)), persistent=False)

    def stft(self, wav: Tensor) -> Tensor:
        """(B, T) → complex STFT (B, n_freqs, frames): Hann, centred, reflect padding."""
        return torch.stft(
            wav.float(),
            self.cfg.n_fft,
            self.cfg.hop_length,
            window=self.window,
            center=True,
            pad_mode="reflect" if wav.shape[-1] > self.cfg.n_fft // 2 else "constant",
            return_complex=True,
        )

    def magnitude(self, wav: Tensor) -> Tensor:
        """(B, T) → linear STFT magnitude (B, n_freqs, frames)."""
        return self.stft(wav).abs()

    def mel_from_magnitude(self, mag: Tensor) -> Tensor:
        """Linear magnitude (B, n_freqs, F) → log-mel (B, n_mels, F)."""
        mel = torch.matmul(self.fb, mag)
        return torch.log(torch.clamp(mel, min=self.cfg.log_floor))

    def forward(self, wav: Tensor) -> Tensor:
        squeeze = wav.dim() == 1
        if squeeze:
            wav = wav.unsqueeze(0)
        out = self.mel_from_magnitude(self.magnitude(wav))
        return out[0] if squeeze else out
