"""Objective audio metrics: distributions (Fréchet distance, diversity, memorisation), per-clip statistics
(clipping, NaN, loudness, onset) and reconstruction errors (multi-resolution STFT; log-mel L1 at one resolution
or at several).

Waveforms are mono float arrays, ``(T,)`` or ``(B, T)``, as numpy arrays or torch tensors. Embeddings are
``(N, D)`` numpy arrays. Everything here is deterministic and needs no trained weights.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import pyloudnorm
import torch
from scipy.spatial.distance import cdist, pdist
from torch import Tensor

from sampleforge.audio.mel import MelConfig, MelSpectrogram

CLIP_THRESHOLD = 0.999  # |x| at or above this counts as clipped
MIN_LOUDNESS_SECONDS = 0.4  # one BS.1770 gating block; shorter clips are zero-padded to it
MRSTFT_WINDOWS: tuple[int, ...] = (256, 512, 1024, 2048)
# mel bands of ``mr_logmel_l1`` at each window: about one band per 4-8 bins, so no band is empty at 256
MR_LOGMEL_BANDS: dict[int, int] = {256: 32, 512: 48, 1024: 64, 2048: 128}
N_MFCC = 20


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion ``correct / n``."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _as_numpy(x: np.ndarray | Tensor) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def _as_batch(x: np.ndarray | Tensor) -> Tensor:
    """(T,) or (B, T) → float32 tensor (B, T)."""
    t = x.detach().float().cpu() if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x), dtype=torch.float32)
    if t.dim() == 1:
        t = t.unsqueeze(0)
    if t.dim() != 2:
        raise ValueError(f"expected a waveform (T,) or (B, T), got shape {tuple(t.shape)}")
    return t


# --------------------------------------------------------------------------------------------------
# distributions of embeddings


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to embeddings ``a`` (N, D) and ``b`` (M, D).

    ``|mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^1/2)``. The matrix square-root term is computed
    stably as ``sum(sqrt(eig(S_a^1/2 S_b S_a^1/2)))``, a symmetric PSD matrix, so it needs no complex
    ``sqrtm`` and never returns NaN for singular covariances (N < D is allowed, with the usual bias).
    """
    a = _as_numpy(a)
    b = _as_numpy(b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"frechet_distance needs (N, D) and (M, D) embeddings, got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"frechet_distance needs at least 2 embeddings per set, got {len(a)} and {len(b)}")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a = np.atleast_2d(np.cov(a, rowvar=False))
    cov_b = np.atleast_2d(np.cov(b, rowvar=False))
    w, v = np.linalg.eigh(cov_a)
    sqrt_a = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    middle = sqrt_a @ cov_b @ sqrt_a
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    tr_sqrt = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    fd = float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2.0 * tr_sqrt)
    return max(fd, 0.0)


def diversity(emb: np.ndarray) -> float:
    """Mean pairwise Euclidean distance within one set of embeddings (N, D); 0 when N < 2."""
    emb = _as_numpy(emb)
    if len(emb) < 2:
        return 0.0
    return float(pdist(emb).mean())


def nearest_distances(query: np.ndarray, reference: np.ndarray, exclude_self: bool = False) -> np.ndarray:
    """Distance from each query embedding (N, D) to its nearest reference embedding (M, D) → (N,).

    The memorisation check: generated clips much closer to a training clip than training clips are to each
    other (``nearest_distances(train, train, exclude_self=True)``) are likely copies.
    ``exclude_self`` ignores zero-index matches on the diagonal (use it when query is reference).
    """
    d = cdist(_as_numpy(query), _as_numpy(reference))
    if exclude_self:
        if d.shape[0] != d.shape[1]:
            raise ValueError("exclude_self needs query and reference to be the same set")
        np.fill_diagonal(d, np.inf)
    return d.min(axis=1)


# --------------------------------------------------------------------------------------------------
# a fixed embedding: MFCC statistics


def _dct_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Orthonormal DCT-II, shape (n_out, n_in)."""
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    m = np.cos(np.pi / n_in * (n + 0.5) * k) * math.sqrt(2.0 / n_in)
    m[0] /= math.sqrt(2.0)
    return m


def mfcc(logmel: np.ndarray | Tensor, n_mfcc: int = N_MFCC) -> np.ndarray:
    """Log-mel (B, n_mels, F) → MFCCs (B, n_mfcc, F): an orthonormal DCT-II over the mel axis."""
    lm = _as_numpy(logmel)
    if lm.ndim == 2:
        lm = lm[None]
    return np.einsum("km,bmf->bkf", _dct_matrix(lm.shape[1], n_mfcc), lm)


def mfcc_embedding(logmel: np.ndarray | Tensor, n_mfcc: int = N_MFCC) -> np.ndarray:
    """Log-mel (B, n_mels, F) → (B, 2 * n_mfcc): per-coefficient mean and std over frames.

    A fixed, training-free embedding for a second Fréchet distance beside the classifier's.
    """
    c = mfcc(logmel, n_mfcc)
    return np.concatenate([c.mean(axis=2), c.std(axis=2)], axis=1)


# --------------------------------------------------------------------------------------------------
# per-clip statistics


def clipping_percent(wav: np.ndarray | Tensor, threshold: float = CLIP_THRESHOLD) -> float:
    """Percentage of finite samples with ``|x| >= threshold`` over the whole array."""
    x = _as_numpy(wav)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return 0.0
    return float(100.0 * np.mean(np.abs(x) >= threshold))


def nan_count(wav: np.ndarray | Tensor) -> int:
    """Number of non-finite samples (NaN or ±inf)."""
    return int((~np.isfinite(_as_numpy(wav))).sum())


def loudness_lufs(wav: np.ndarray | Tensor, sample_rate: int) -> float:
    """Integrated loudness (ITU-R BS.1770-4, LUFS) of a mono clip (T,), via pyloudnorm.

    Clips shorter than one 400-ms gating block are zero-padded to 400 ms (the gates then ignore the
    silent part only where a whole block is silent, so a short hit reads a little quieter than a
    sustained one). Digital silence returns ``-inf``; non-finite samples are treated as 0.
    """
    x = np.nan_to_num(_as_numpy(wav).reshape(-1), nan=0.0, posinf=0.0, neginf=0.0)
    need = int(math.ceil(MIN_LOUDNESS_SECONDS * sample_rate)) + 1
    if x.size < need:
        x = np.pad(x, (0, need - x.size))
    if not np.any(x):
        return float("-inf")
    return float(pyloudnorm.Meter(sample_rate).integrated_loudness(x))


def onset_ms(wav: np.ndarray | Tensor, sample_rate: int, rel_threshold: float = 0.1) -> float:
    """Onset position of a mono clip (T,) in ms: the first sample reaching ``rel_threshold`` of the peak
    (-20 dB by default). NaN for digital silence."""
    x = np.abs(np.nan_to_num(_as_numpy(wav).reshape(-1)))
    peak = x.max(initial=0.0)
    if peak <= 0.0:
        return float("nan")
    return float(np.argmax(x >= rel_threshold * peak) * 1000.0 / sample_rate)


# --------------------------------------------------------------------------------------------------
# reconstruction errors


def _stft_mag(x: Tensor, n_fft: int) -> Tensor:
    window = torch.hann_window(n_fft, dtype=x.dtype, device=x.device)
    pad = "reflect" if x.shape[-1] > n_fft // 2 else "constant"
    spec = torch.stft(x, n_fft, n_fft // 4, window=window, center=True, pad_mode=pad, return_complex=True)
    return spec.abs()


def mrstft_distance(
    reference: np.ndarray | Tensor,
    estimate: np.ndarray | Tensor,
    windows: Sequence[int] = MRSTFT_WINDOWS,
    eps: float = 1e-5,
) -> float:
    """Multi-resolution STFT distance between a reference and an estimate, (T,) or (B, T) each.

    For each Hann window length n (256, 512, 1024, 2048; hop n/4) with magnitudes R and E:
      spectral convergence  SC = ||R - E||_F / ||R||_F            (per clip, then averaged)
      log-magnitude L1      LM = mean |log(R + eps) - log(E + eps)|
    and the result is the mean over windows of SC + LM (0 for identical signals; larger is worse).
    The two signals are cropped to the shorter length (vocoders may differ by a few samples).
    The mean of :func:`mrstft_per_clip` (the clips have one length, so every clip weighs the same).
    """
    return float(mrstft_per_clip(reference, estimate, windows, eps).mean())


def mrstft_per_clip(
    reference: np.ndarray | Tensor,
    estimate: np.ndarray | Tensor,
    windows: Sequence[int] = MRSTFT_WINDOWS,
    eps: float = 1e-5,
) -> np.ndarray:
    """:func:`mrstft_distance` of each clip, (B,)."""
    r, e = _as_batch(reference), _as_batch(estimate)
    if r.shape[0] != e.shape[0]:
        raise ValueError(f"mrstft_distance: batch sizes differ ({r.shape[0]} vs {e.shape[0]})")
    n = min(r.shape[1], e.shape[1])
    r, e = r[:, :n].double(), e[:, :n].double()
    total = torch.zeros(r.shape[0], dtype=torch.float64)
    for win in windows:
        rm, em = _stft_mag(r, win), _stft_mag(e, win)
        sc = torch.linalg.vector_norm(rm - em, dim=(1, 2)) / (torch.linalg.vector_norm(rm, dim=(1, 2)) + eps)
        lm = (torch.log(rm + eps) - torch.log(em + eps)).abs().mean(dim=(1, 2))
        total += sc + lm
    return (total / len(windows)).numpy()


def mr_logmel_l1(
    reference: np.ndarray | Tensor,
    estimate: np.ndarray | Tensor,
    windows: Sequence[int] = MRSTFT_WINDOWS,
    sample_rate: int = 44100,
) -> float:
    """Multi-resolution log-mel L1 between a reference and an estimate, (T,) or (B, T) each: the mean over
    Hann windows (256, 512, 1024, 2048; hop n/4; ``MR_LOGMEL_BANDS`` bands, log floor 1e-5) of the mean
    absolute log-mel difference.

    A band envelope at several time resolutions: the shortest window follows an attack within 6 ms, and the
    bands average over the bins inside them. So it tells a smeared or late attack from a good one, and two
    noise bursts with one envelope score close (the MR-STFT compares their samples' exact spectra bin by
    bin, and scores two realisations of one noise far apart). Cropped to the shorter length like
    :func:`mrstft_distance`; the mean of :func:`mr_logmel_l1_per_clip`.
    """
    return float(mr_logmel_l1_per_clip(reference, estimate, windows, sample_rate).mean())


def mr_logmel_l1_per_clip(
    reference: np.ndarray | Tensor,
    estimate: np.ndarray | Tensor,
    windows: Sequence[int] = MRSTFT_WINDOWS,
    sample_rate: int = 44100,
) -> np.ndarray:
    """:func:`mr_logmel_l1` of each clip, (B,)."""
    r, e = _as_batch(reference), _as_batch(estimate)
    n = min(r.shape[1], e.shape[1])
    with torch.no_grad():
        return mr_logmel_distance(r[:, :n].float(), e[:, :n].float(), windows, sample_rate).double().numpy()


def mr_logmel_distance(
    reference: Tensor, estimate: Tensor, windows: Sequence[int] = MRSTFT_WINDOWS, sample_rate: int = 44100
) -> Tensor:
    """:func:`mr_logmel_l1` of each clip of two (B, T) tensors of one length, as a differentiable (B,) tensor on
    their device: the measure itself, so that a vocoder can be trained by it (``recipe.vocoder_mr_mel_weight``)."""
    total = reference.new_zeros(reference.shape[0])
    for win in windows:
        mel = _mel_front_end(sample_rate, win, MR_LOGMEL_BANDS.get(win, max(8, win // 16))).to(reference.device)
        total = total + (mel(reference) - mel(estimate)).abs().mean(dim=(1, 2))
    return total / len(windows)


@functools.lru_cache(maxsize=16)
def _mel_front_end(sample_rate: int, n_fft: int, n_mels: int) -> MelSpectrogram:
    """A log-mel front end at hop n_fft / 4, built once (its filterbank is the costly part)."""
    return MelSpectrogram(MelConfig(sample_rate=sample_rate, n_fft=n_fft, hop_length=n_fft // 4, n_mels=n_mels))


def logmel_l1(
    reference: np.ndarray | Tensor, estimate: np.ndarray | Tensor, mel_config: MelConfig | None = None
) -> float:
    """Mean absolute difference of the two signals' log-mels (our 128-band front end), (T,) or (B, T) each.

    Cropped to the shorter length like :func:`mrstft_distance`.
    """
    r, e = _as_batch(reference), _as_batch(estimate)
    n = min(r.shape[1], e.shape[1])
    mel = MelSpectrogram(mel_config)
    with torch.no_grad():
        return float((mel(r[:, :n]) - mel(e[:, :n])).abs().mean())


def peak_correlation(a: np.ndarray | Tensor, b: np.ndarray | Tensor) -> float:
    """Pearson correlation of two clips of the same shape after peak normalisation (1.0: the same audio
    up to a gain); how sampleforge's output is compared with a library's own call."""
    x, y = _as_numpy(a).astype(np.float64).ravel(), _as_numpy(b).astype(np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"clips differ in shape: {_as_numpy(a).shape} vs {_as_numpy(b).shape}")
    x, y = x / max(np.abs(x).max(), 1e-30), y / max(np.abs(y).max(), 1e-30)
    return float(np.corrcoef(x, y)[0, 1])
