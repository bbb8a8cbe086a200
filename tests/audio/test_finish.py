"""audio/finish.py: onset at the pre-roll, peak exactly 0.95 and never above, fades, NaN refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sampleforge.audio.finish import (
    align_onset,
    detect_onset,
    fade_out,
    finish,
    fix_length,
    natural_fade,
    normalize_lufs,
    remove_dc,
    ring_at_end,
    tail_end,
    trim_silence,
)

SR = 44100


def kick(delay_s: float = 0.2, seconds: float = 2.0, gain: float = 1.7, dc: float = 0.0, seed: int = 0):
    """A sine-sweep kick starting at ``delay_s`` over a -70 dB noise floor, possibly hot and DC-offset."""
    n = int(seconds * SR)
    t = np.arange(n) / SR
    rng = np.random.default_rng(seed)
    x = 3e-4 * rng.standard_normal(n)
    d = int(delay_s * SR)
    tt = t[: n - d]
    phase = 2 * np.pi * (50 * tt + 150 * (1 - np.exp(-tt / 0.03)) * 0.03)
    x[d:] += gain * np.sin(phase) * np.exp(-tt / 0.25)
    return (x + dc).astype(np.float32)


def test_onset_lands_at_preroll_and_peak_is_exact():
    x = kick(delay_s=0.31)
    y = finish(x, SR, length=2 * SR)
    assert y.shape == (2 * SR,) and y.dtype == np.float32
    pre = round(1.5e-3 * SR)
    assert abs(int(detect_onset(y)) - pre) <= 2
    assert np.abs(y).max() == pytest.approx(0.95, abs=1e-6)
    assert (np.abs(y) > 0.95).sum() == 0
    assert np.all(y[:pre] ** 2 <= y[pre : 2 * pre].max() ** 2)  # pre-roll is quiet


def test_onset_too_early_is_padded():
    x = kick(delay_s=0.0)
    y = finish(x, SR)
    assert abs(int(detect_onset(y)) - round(1.5e-3 * SR)) <= 2
    assert y.shape == x.shape


def test_batch_torch_keeps_type_shape_and_device():
    xb = torch.from_numpy(np.stack([kick(0.05), kick(0.4, gain=0.1, seed=1), np.zeros(2 * SR, np.float32)]))
    y = finish(xb.double(), SR)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float64 and y.shape == xb.shape
    assert torch.all(y[:2].abs().amax(dim=1) - 0.95 < 1e-6) and torch.all(y[:2].abs().amax(dim=1) > 0.949)
    assert torch.all(y[2] == 0)  # silence stays silence, no NaN
    assert not torch.isnan(y).any()
    onsets = detect_onset(y[:2].numpy())
    assert np.all(np.abs(onsets - round(1.5e-3 * SR)) <= 2)


def test_nan_and_bad_options_raise():
    x = kick()
    x[100] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        finish(x, SR)
    with pytest.raises(ValueError, match="normalize"):
        finish(kick(), SR, normalize="rms")


def test_dc_is_removed_and_silence_stays_silent():
    x = kick(dc=0.2)
    x[: int(0.2 * SR)] = 0.2  # pure offset before the hit
    y = remove_dc(x, SR)
    assert abs(float(y[int(1.5 * SR) :].mean())) < 5e-3
    z = remove_dc(np.zeros(1000, np.float32), SR)
    assert np.all(z == 0)


def test_tail_fade_and_trim():
    x = kick(delay_s=0.0, seconds=2.0)
    end = int(tail_end(x, -60.0))
    assert 0 < end <= len(x)
    y = fade_out(x, SR, 30.0, end=end // 2)
    assert np.all(y[end // 2 :] == 0)
    n = round(0.03 * SR)
    seg = np.abs(y[end // 2 - n : end // 2])
    assert seg[-50:].max() < 0.05 * np.abs(x[end // 2 - n : end // 2]).max()  # faded down to near zero


def test_trim_silence_keeps_length_and_silences_the_tail():
    x = kick(delay_s=0.1)
    y = trim_silence(x, SR, trim_db=-40.0)
    end = int(tail_end(x, -40.0))
    assert y.shape == x.shape and np.all(y[end:] == 0) and end < len(x)
    np.testing.assert_array_equal(y[: end - round(0.03 * SR)], x[: end - round(0.03 * SR)])


def test_short_sound_keeps_its_transient():
    x = np.zeros(SR // 10, np.float32)
    x[100:140] = np.hanning(40)  # a 1-ms click
    y = finish(x, SR)
    assert np.abs(y).max() == pytest.approx(0.95, abs=1e-6)


def test_lufs_mode_hits_target_or_peak_ceiling():
    quiet = 0.05 * kick(gain=1.0)
    y = finish(quiet, SR, normalize="lufs", lufs=-20.0)
    import pyloudnorm

    loud = pyloudnorm.Meter(SR).integrated_loudness(y.astype(np.float64))
    assert np.abs(y).max() <= 0.95 + 1e-7
    assert loud == pytest.approx(-20.0, abs=0.1) or np.abs(y).max() == pytest.approx(0.95, abs=1e-6)
    hot = normalize_lufs(kick(), SR, lufs=0.0)  # impossible without clipping: peak-limited instead
    assert np.abs(hot).max() == pytest.approx(0.95, abs=1e-6)


def test_no_normalize_only_turns_down_hot_rows():
    y = finish(kick(gain=3.0), SR, normalize=None)
    assert np.abs(y).max() == pytest.approx(0.95, abs=1e-6)
    q = finish(kick(gain=0.1), SR, normalize=None)
    assert 0.05 < np.abs(q).max() < 0.15


def test_pieces_shapes():
    xb = np.stack([kick(0.1), kick(0.3)])
    assert align_onset(xb, SR).shape == xb.shape
    assert fix_length(xb, 1000).shape == (2, 1000) and fix_length(xb[0], 3 * SR).shape == (3 * SR,)
    assert detect_onset(xb).shape == (2,)


def test_a_clip_shorter_than_the_preroll_is_finished_not_refused():
    clip = np.array([0.0, 0.5, -0.25], dtype=np.float32)  # 3 samples: less than the 66-sample pre-roll
    assert align_onset(clip, SR).shape == (3,)
    out = finish(clip, SR, normalize="peak", length=4096)
    assert out.shape == (4096,) and np.isfinite(out).all()
    for n in (40, 50, 65, 66, 67):  # between the onset window and the pre-roll too
        noise = np.random.default_rng(n).standard_normal(n).astype(np.float32)
        assert finish(noise, SR, normalize="peak", length=4096).shape == (4096,)


def test_a_sound_still_ringing_at_the_end_fades_out_over_its_last_300_ms() -> None:
    """A crash longer than its clip: its tail is faded over the last 0.3 s (a 2-ms fade sounded cut), and
    ``ring_at_end`` says how loud it still was."""
    sr = 44100
    t = np.arange(2 * sr) / sr
    ring = (np.sin(2 * np.pi * 440 * t) * np.exp(-t / 0.5)).astype(np.float32)  # about -35 dB at 2 s
    assert -40 < float(ring_at_end(ring, sr)) < -30
    out = natural_fade(ring.copy(), sr)
    untouched = slice(0, int(1.69 * sr))
    np.testing.assert_array_equal(out[untouched], ring[untouched])
    level = [float(np.abs(out[int(s * sr) - 441:int(s * sr)]).max() / np.abs(ring[int(s * sr) - 441:int(s * sr)]).max())
             for s in (1.8, 1.9, 1.99)]
    assert level[0] > level[1] > level[2] and level[0] > 0.5 and level[2] < 0.05
    assert abs(out[-1]) < 1e-6
    assert float(ring_at_end(np.zeros(100, np.float32), sr)) == -np.inf
    assert ring_at_end(np.stack([ring, ring * 0]), sr).shape == (2,)


def test_remove_dc_is_the_first_order_filter() -> None:
    """The FFT form equals the recursion y[n] = x[n] - x[n-1] + r y[n-1] from rest (scipy's lfilter)."""
    from scipy.signal import lfilter

    rng = np.random.default_rng(3)
    x = np.concatenate([np.zeros((2, 300)), rng.standard_normal((2, 20000)) + 0.3], axis=1).astype(np.float32)
    r = 1.0 - 2.0 * np.pi * 10.0 / SR
    want = lfilter([1.0, -1.0], [1.0, -r], x, axis=-1)
    got = remove_dc(x, SR)
    np.testing.assert_allclose(got, want, atol=2e-6)
    assert np.all(got[:, :300] == 0)  # leading silence stays digital silence
    np.testing.assert_allclose(remove_dc(x[0], SR), want[0], atol=2e-6)
    assert remove_dc(np.zeros(0, np.float32), SR).shape == (0,)
