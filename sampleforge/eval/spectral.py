"""Spectral character of a drum clip: what a vocoder gets wrong that a distance to the original hides.

Three per-clip measures (mono (T,) waveforms; numpy in, floats out; NaN when a clip has no part to measure):

- **tail flatness** (``tail_flatness``): the spectral flatness (geometric / arithmetic mean of the power,
  0 = pure tones, 1 = white) over 2–16 kHz, averaged over the tail frames: from 3 frames (~35 ms) after the
  loudest frame to the last frame within 50 dB of it. Griffin-Lim whitens noise tails: the value goes up.
- **hop-rate flutter** (``hop_flutter_db``): an amplitude modulation at the STFT hop rate (44,100 / 512 =
  86.1 Hz) that frame-wise resynthesis leaves. The 2–16 kHz part of the tail, its short-time level in dB
  (1.5-ms windows), minus its ~25-ms moving average; the modulation spectrum's mean power within 2 Hz of
  the hop rate over its mean 6–30 Hz either side of it, in dB: ~0 dB without flutter.
- **high-band peakiness** (``hf_peakiness_db``): how far the partials of the 5–16 kHz long-term spectrum
  (frames within 30 dB of the loudest) stand above its ~650-Hz moving median, the 95th percentile in dB.
  Metallic partials (cymbals, snare wires, cowbells) give large values; smeared ones give small values.

``spectral_character`` gives the three means over a batch of clips.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import median_filter, uniform_filter1d

N_FFT = 2048
HOP = 512
TAIL_START_FRAMES = 3
TAIL_RANGE_DB = 50.0
SOUNDING_RANGE_DB = 30.0
ENV_WINDOW = 64  # samples per short-time level of the flutter measure (1.45 ms)
ENV_HOP = 16
MIN_TAIL_SECONDS = 0.2  # shorter tails do not resolve an 86-Hz modulation: NaN


def _power(wav: np.ndarray, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    """(T,) → power spectrogram (frames, n_fft/2+1), Hann, centred (zero-padded)."""
    x = np.pad(np.asarray(wav, dtype=np.float64), (n_fft // 2, n_fft // 2))
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop]
    return np.abs(np.fft.rfft(frames * np.hanning(n_fft + 1)[:-1], axis=-1)) ** 2


def _band(sr: int, n_fft: int, lo: float, hi: float) -> np.ndarray:
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    return (freqs >= lo) & (freqs <= min(hi, sr / 2))


def _tail_frames(energy: np.ndarray) -> np.ndarray:
    """Indices of the tail frames of a frame-energy curve (F,): see the module docstring (none for silence)."""
    if energy.max(initial=0.0) <= 0.0:
        return np.arange(0)
    peak = int(np.argmax(energy))
    loud = np.nonzero(energy >= energy[peak] * 10 ** (-TAIL_RANGE_DB / 10))[0]
    end = int(loud.max()) if loud.size else peak
    return np.arange(peak + TAIL_START_FRAMES, end + 1)


def tail_flatness(wav: np.ndarray, sr: int = 44100, band: tuple[float, float] = (2000.0, 16000.0)) -> float:
    """Mean 2–16 kHz spectral flatness of the tail frames of ``wav`` (T,); NaN if it has none."""
    p = _power(wav)
    tail = _tail_frames(p.sum(axis=1))
    if tail.size == 0:
        return float("nan")
    pb = p[tail][:, _band(sr, N_FFT, *band)] + 1e-20
    flat = np.exp(np.log(pb).mean(axis=1)) / pb.mean(axis=1)
    return float(flat.mean())


def hop_flutter_db(wav: np.ndarray, sr: int = 44100, hop: int = HOP, band: tuple[float, float] = (2000.0, 16000.0)) -> float:
    """Modulation at the hop rate ``sr / hop`` of the 2–16 kHz tail of ``wav`` (T,) over the background, dB."""
    x = np.asarray(wav, dtype=np.float64)
    spec = np.fft.rfft(x)
    spec[~_band(sr, x.size, *band)] = 0.0
    hp = np.fft.irfft(spec, n=x.size)
    tail = _tail_frames(_power(x).sum(axis=1))
    if tail.size == 0:
        return float("nan")
    start, stop = tail[0] * HOP, min(x.size, (tail[-1] + 1) * HOP)
    seg = hp[start:stop]
    if seg.size < MIN_TAIL_SECONDS * sr:
        return float("nan")
    frames = np.lib.stride_tricks.sliding_window_view(seg, ENV_WINDOW)[::ENV_HOP]
    level = 10 * np.log10((frames**2).mean(axis=1) + 1e-20)
    env_rate = sr / ENV_HOP
    level = level - uniform_filter1d(level, size=int(round(0.025 * env_rate)), mode="nearest")
    n = 1 << int(np.ceil(np.log2(level.size * 4)))
    mod = np.abs(np.fft.rfft(level * np.hanning(level.size), n=n)) ** 2
    freqs = np.fft.rfftfreq(n, 1.0 / env_rate)
    rate = sr / hop
    at = np.abs(freqs - rate) <= 2.0
    background = (np.abs(freqs - rate) <= 30.0) & (np.abs(freqs - rate) > 6.0)
    return float(10 * np.log10(mod[at].mean() / (mod[background].mean() + 1e-30)))


def hf_peakiness_db(wav: np.ndarray, sr: int = 44100, band: tuple[float, float] = (5000.0, 16000.0)) -> float:
    """95th percentile of the 5–16 kHz long-term spectrum of ``wav`` (T,) over its moving median, in dB."""
    p = _power(wav)
    energy = p.sum(axis=1)
    if energy.max() <= 0:
        return float("nan")
    sounding = energy >= energy.max() * 10 ** (-SOUNDING_RANGE_DB / 10)
    ltas = 10 * np.log10(p[sounding].mean(axis=0) + 1e-20)
    width = int(round(650.0 / (sr / N_FFT))) | 1  # odd, ~650 Hz
    smooth = median_filter(ltas, size=width, mode="nearest")
    resid = (ltas - smooth)[_band(sr, N_FFT, *band)]
    return float(np.percentile(resid, 95))


def spectral_character(wavs: np.ndarray, sr: int = 44100) -> dict[str, float | None]:
    """Means over clips (B, T) of the three measures (clips without a measurable part left out; None if none)."""
    batch = np.atleast_2d(np.asarray(wavs, dtype=np.float64))
    out: dict[str, float | None] = {}
    for name, fn in (("tail_flatness", tail_flatness), ("hop_flutter_db", hop_flutter_db),
                     ("hf_peakiness_db", hf_peakiness_db)):
        values = np.array([fn(w, sr) for w in batch])
        values = values[np.isfinite(values)]
        out[name] = float(values.mean()) if values.size else None
    return out
