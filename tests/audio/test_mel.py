"""audio/mel.py: shapes, the band a pure sine lands in, buffers follow the device."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sampleforge.audio.mel import MelConfig, MelSpectrogram, mel_filterbank

SR = 44100


def slaney_centres(n_mels: int = 128, f_max: float = SR / 2) -> np.ndarray:
    """Centre frequencies of Slaney mel bands, written out independently of mel.py."""

    def hz_to_mel(f: float) -> float:
        return f / (200 / 3) if f < 1000 else 15.0 + math.log(f / 1000) / (math.log(6.4) / 27)

    def mel_to_hz(m: float) -> float:
        return m * (200 / 3) if m < 15.0 else 1000 * math.exp((m - 15.0) * math.log(6.4) / 27)

    pts = np.linspace(hz_to_mel(0.0), hz_to_mel(f_max), n_mels + 2)
    return np.array([mel_to_hz(m) for m in pts[1:-1]])


def test_two_seconds_give_128_by_173():
    mel = MelSpectrogram()
    out = mel(torch.zeros(2, 88200))
    assert out.shape == (2, 128, 173)
    assert mel(torch.zeros(88200)).shape == (128, 173)
    assert MelConfig().frames(88200) == 173
    assert torch.allclose(out, torch.full_like(out, math.log(1e-5)))  # silence sits on the floor


@pytest.mark.parametrize("freq", [110.0, 440.0, 1000.0, 3000.0, 9000.0])
def test_sine_peaks_in_the_band_centred_on_its_frequency(freq):
    t = torch.arange(88200) / SR
    out = MelSpectrogram()(0.5 * torch.sin(2 * math.pi * freq * t))
    peak_band = int(out[:, 50:120].mean(dim=1).argmax())
    expected = int(np.argmin(np.abs(slaney_centres() - freq)))
    assert abs(peak_band - expected) <= 1


def test_filterbank_shape_and_coverage():
    fb = mel_filterbank(MelConfig())
    assert fb.shape == (128, 1025) and (fb >= 0).all()
    assert (fb.sum(axis=0)[1:-1] > 0).all()  # every bin but DC and Nyquist feeds some band


def test_louder_is_higher_by_log_gain():
    t = torch.arange(88200) / SR
    x = 0.1 * torch.sin(2 * math.pi * 1000 * t)
    mel = MelSpectrogram()
    a, b = mel(x), mel(2 * x)
    band = int(a[:, 80].argmax())
    assert float(b[band, 80] - a[band, 80]) == pytest.approx(math.log(2), abs=1e-3)
