"""Metrics against known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sampleforge.eval import metrics

SR = 44100


def _gauss(n: int, d: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d))


def test_fd_of_a_set_with_itself_is_zero() -> None:
    x = _gauss(500, 16, 0)
    assert metrics.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)


def test_fd_of_shifted_isotropic_gaussians_is_shift_squared() -> None:
    shift = np.zeros(8)
    shift[:3] = [1.0, -2.0, 0.5]  # |shift|^2 = 5.25
    a, b = _gauss(20000, 8, 1), _gauss(20000, 8, 2) + shift
    fd = metrics.frechet_distance(a, b)
    assert fd == pytest.approx(5.25, rel=0.03)
    # same distribution, independent samples: close to 0 (sampling noise only)
    assert metrics.frechet_distance(a, _gauss(20000, 8, 3)) < 0.02


def test_fd_of_scaled_gaussians_matches_closed_form() -> None:
    # N(0, I) vs N(0, 4I) in D dims: tr(I) + tr(4I) - 2 tr(2I) = D
    a, b = _gauss(40000, 4, 4), 2.0 * _gauss(40000, 4, 5)
    assert metrics.frechet_distance(a, b) == pytest.approx(4.0, rel=0.05)


def test_fd_handles_singular_covariance_and_rejects_bad_shapes() -> None:
    a = _gauss(5, 32, 6)  # N < D: singular
    fd = metrics.frechet_distance(a, a + 1.0)
    assert math.isfinite(fd) and fd == pytest.approx(32.0, rel=1e-6)
    with pytest.raises(ValueError, match="embeddings"):
        metrics.frechet_distance(a, _gauss(5, 8, 7))


def test_clipping_percent_of_a_clipped_sine() -> None:
    t = np.arange(SR) / SR
    x = np.clip(2.0 * np.sin(2 * np.pi * 100 * t), -1, 1)
    # |2 sin| >= 0.999  <=>  |sin| >= 0.4995: fraction 1 - 2/pi * asin(0.4995)
    expected = 100 * (1 - 2 / np.pi * np.arcsin(0.4995))
    assert metrics.clipping_percent(x) == pytest.approx(expected, abs=0.1)
    assert metrics.clipping_percent(0.5 * np.sin(2 * np.pi * 100 * t)) == 0.0


def test_nan_count() -> None:
    x = torch.zeros(2, 100)
    x[0, 3] = float("nan")
    x[1, 7] = float("inf")
    assert metrics.nan_count(x) == 2
    assert metrics.nan_count(np.zeros(5)) == 0


def test_loudness_of_a_calibrated_tone() -> None:
    # BS.1770: a 997 Hz sine at 0 dBFS peak in one channel reads -3.01 LUFS; at -20 dBFS peak, -23.01.
    t = np.arange(3 * SR) / SR
    tone = 10 ** (-20 / 20) * np.sin(2 * np.pi * 997 * t)
    assert metrics.loudness_lufs(tone, SR) == pytest.approx(10 * np.log10(0.5 * 0.1**2), abs=0.1)
    # 6 dB quieter reads 6 dB lower; a 100-ms tone is padded to 400 ms instead of failing
    assert metrics.loudness_lufs(tone / 2, SR) == pytest.approx(-23.01 - 6.02, abs=0.1)
    short = metrics.loudness_lufs(tone[: SR // 10], SR)
    assert math.isfinite(short) and short < -23.0
    assert metrics.loudness_lufs(np.zeros(SR), SR) == float("-inf")


def test_onset_ms() -> None:
    x = np.zeros(SR)
    x[4410:] = 0.5 * np.exp(-np.arange(SR - 4410) / 2000)
    assert metrics.onset_ms(x, SR) == pytest.approx(100.0, abs=0.05)
    assert math.isnan(metrics.onset_ms(np.zeros(100), SR))


def test_mrstft_is_zero_for_identical_and_monotone_in_noise() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(SR // 2) / SR
    x = np.sin(2 * np.pi * 220 * t) * np.exp(-t * 8)
    noise = rng.standard_normal(x.shape)
    assert metrics.mrstft_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    d = [metrics.mrstft_distance(x, x + a * noise) for a in (1e-3, 1e-2, 1e-1, 1.0)]
    assert all(d0 < d1 for d0, d1 in zip(d, d[1:], strict=False)), d
    assert d[0] > 0


def test_logmel_l1() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 8192)) * 0.1
    assert metrics.logmel_l1(x, x) == pytest.approx(0.0, abs=1e-9)
    assert metrics.logmel_l1(x, x * 0.5) == pytest.approx(math.log(2), rel=0.02)  # log-mel shifts by log 2


def _burst(onset: int, seed: int, n: int = SR // 2) -> np.ndarray:
    t = np.arange(n)
    env = np.where(t >= onset, np.exp(-(t - onset) / (0.05 * SR)), 0.0)
    return np.random.default_rng(seed).standard_normal(n) * env


def test_mr_logmel_l1_follows_the_envelope_not_the_realisation() -> None:
    a, b = _burst(66, 0), _burst(66, 1)  # one envelope, two noise realisations
    late = _burst(66 + SR // 50, 0)  # the same noise 20 ms late
    assert metrics.mr_logmel_l1(a, a) == pytest.approx(0.0, abs=1e-9)
    steady = np.random.default_rng(2).standard_normal(8192) * 0.1  # above the log floor everywhere
    assert metrics.mr_logmel_l1(steady, 0.5 * steady) == pytest.approx(math.log(2), rel=0.02)
    # the MR-STFT can hardly tell a second realisation from a late attack; the band envelope can
    assert metrics.mrstft_distance(a, b) > 0.85 * metrics.mrstft_distance(a, late)
    assert metrics.mr_logmel_l1(a, b) < 0.7 * metrics.mr_logmel_l1(a, late)
    assert metrics.mr_logmel_l1(a, b, windows=(2048,)) < metrics.mr_logmel_l1(a, b, windows=(256,))


def test_mr_logmel_distance_is_the_measure_and_has_a_gradient() -> None:
    """The tensor form a vocoder trains by is the reported measure, clip by clip, and gradients flow through it."""
    ref = torch.from_numpy(np.stack([_burst(66, 0), _burst(200, 1)])).float()
    est = torch.from_numpy(np.stack([_burst(66, 2), _burst(66, 3)])).float().requires_grad_(True)
    d = metrics.mr_logmel_distance(ref, est)
    assert d.shape == (2,)
    np.testing.assert_allclose(d.detach().numpy(), metrics.mr_logmel_l1_per_clip(ref, est), rtol=1e-5)
    assert d[1] > d[0]  # the second estimate's attack is 3 ms early
    d.sum().backward()
    assert est.grad is not None and torch.isfinite(est.grad).all() and est.grad.abs().sum() > 0


def test_mfcc_embedding_shape_and_dc_term() -> None:
    lm = np.full((3, 128, 10), 2.0)
    emb = metrics.mfcc_embedding(lm)
    assert emb.shape == (3, 2 * metrics.N_MFCC)
    assert emb[0, 0] == pytest.approx(2.0 * math.sqrt(128))  # orthonormal DCT: c0 = sum / sqrt(N)
    assert np.allclose(emb[:, 1 : metrics.N_MFCC], 0, atol=1e-9)
    assert np.allclose(emb[:, metrics.N_MFCC :], 0)


def test_diversity_and_nearest() -> None:
    pts = np.array([[0.0, 0.0], [3.0, 4.0]])
    assert metrics.diversity(pts) == pytest.approx(5.0)
    assert metrics.diversity(pts[:1]) == 0.0
    nn = metrics.nearest_distances(np.array([[0.0, 1.0]]), pts)
    assert nn.tolist() == [1.0]
    assert metrics.nearest_distances(pts, pts, exclude_self=True).tolist() == [5.0, 5.0]


def test_the_wilson_interval_holds_the_proportion_and_narrows_with_more_clips() -> None:
    from sampleforge.eval.metrics import wilson_interval

    lo, hi = wilson_interval(212, 224)  # 94.6 % of 224 clips
    assert lo < 212 / 224 < hi and 0.90 < lo < 0.92 and 0.96 < hi < 0.98
    lo4, hi4 = wilson_interval(848, 896)  # the same rate on four times the clips: half as wide
    assert abs((hi4 - lo4) - (hi - lo) / 2) < 0.005
    assert wilson_interval(10, 10)[1] == 1.0 and wilson_interval(0, 10)[0] == 0.0 and wilson_interval(0, 0) == (0.0, 1.0)
