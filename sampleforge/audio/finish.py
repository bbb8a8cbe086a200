"""Finishing a drum one-shot: DC removal, onset alignment with a short pre-roll, silent-tail trim,
fade-out, fixed length and peak or loudness normalisation; natural lengths for writing files.

Every piece is its own function over numpy arrays of shape (T,) or (B, T); ``finish`` chains them and
also accepts torch tensors (returned on the input's device and dtype). Guarantees of ``finish``: the
output has the input's shape (or ``length`` samples), holds no NaN, and never exceeds ``peak``
(``max |x| <= peak``: zero clipped samples). NaN or inf in the input raise ValueError.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np

ArrayT = TypeVar("ArrayT")

SAMPLE_RATE = 44100
ONSET_DB = -30.0  # an onset is the first sample within 30 dB of the clip's peak


def _rows(wav: np.ndarray) -> np.ndarray:
    """(T,) or (B, T) -> (B, T) float32 copy."""
    x = np.array(wav, dtype=np.float32, copy=True)
    if x.ndim == 1:
        return x[None]
    if x.ndim != 2:
        raise ValueError(f"expected audio of shape (T,) or (B, T), got {x.shape}")
    return x


def check_finite(wav: np.ndarray, where: str = "audio") -> None:
    """ValueError if ``wav`` holds NaN or inf."""
    if not np.isfinite(wav).all():
        raise ValueError(f"{where}: holds NaN or infinite samples")


def remove_dc(wav: np.ndarray, sample_rate: int = SAMPLE_RATE, cutoff_hz: float = 10.0) -> np.ndarray:
    """First-order DC blocker (high-pass at ``cutoff_hz``, -0.3 dB at 40 Hz); starts from rest, so
    leading silence stays silent. (T,) or (B, T) -> same shape.

    The filter ``y[n] = x[n] - x[n-1] + r y[n-1]`` is run as the convolution of the differences with its impulse
    response ``r**n`` (by FFT, in float64): equal to ``scipy.signal.lfilter`` up to rounding, without importing
    scipy.signal (0.8 s, a quarter of a one-clip ``sampleforge generate``)."""
    x = _rows(np.asarray(wav, np.float64))
    t = x.shape[-1]
    if t == 0:
        return np.asarray(wav, np.float32).copy()
    r = 1.0 - 2.0 * np.pi * cutoff_hz / sample_rate
    diff = np.diff(x, axis=-1, prepend=0.0)
    n = 1 << (2 * t - 1).bit_length()  # a linear convolution: no wrap-around
    response = np.fft.rfft(r ** np.arange(t), n)
    out = np.fft.irfft(np.fft.rfft(diff, n, axis=-1) * response, n, axis=-1)[:, :t].astype(np.float32)
    sounding = x != 0
    first = np.where(sounding.any(axis=-1), np.argmax(sounding, axis=-1), t)
    for row, start in zip(out, first, strict=True):
        row[:start] = 0.0  # before the first sample that is not zero: exact silence, as from rest
    return out[0] if np.ndim(wav) == 1 else out


def detect_onset(wav: np.ndarray, threshold_db: float = ONSET_DB) -> np.ndarray:
    """Index of the first sample within ``threshold_db`` of each row's peak. (T,) -> () ; (B, T) -> (B,).
    A silent row gives 0."""
    x = np.abs(_rows(wav))
    peak = x.max(axis=-1, keepdims=True)
    above = (x >= peak * 10 ** (threshold_db / 20)) & (peak > 0)
    onset = np.where(above.any(axis=-1), above.argmax(axis=-1), 0)
    return onset[0] if np.ndim(wav) == 1 else onset


def align_onset(
    wav: np.ndarray, sample_rate: int = SAMPLE_RATE, preroll_ms: float = 1.5, onset: Any = None
) -> np.ndarray:
    """Shift each row so its onset lands ``preroll_ms`` after the start (cut or zero-pad at the front,
    zero-pad or cut at the end: the length is kept); the pre-roll gets a raised-cosine fade-in so a cut
    into a noise floor does not click. (T,) or (B, T) -> same shape."""
    x = _rows(wav)
    onsets = np.atleast_1d(detect_onset(x) if onset is None else np.asarray(onset))
    pre = int(round(preroll_ms * sample_rate / 1000))
    out = np.zeros_like(x)
    t = x.shape[-1]
    for i, o in enumerate(onsets):
        shift = int(o) - pre  # > 0: drop samples at the front; < 0: pad zeros at the front
        if shift >= 0:
            out[i, : t - shift] = x[i, shift:]
        elif t + shift > 0:  # a row no longer than the pre-roll holds nothing after it: silence
            out[i, -shift:] = x[i, : t + shift]
    if pre > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(pre) / pre)
        n = min(pre, t)  # a clip shorter than the pre-roll is all fade-in
        out[:, :n] *= ramp[:n].astype(np.float32)
    return out[0] if np.ndim(wav) == 1 else out


def tail_end(wav: np.ndarray, trim_db: float = -60.0) -> np.ndarray:
    """Index just after the last sample within ``trim_db`` of each row's peak (0 for silence).
    (T,) -> () ; (B, T) -> (B,)."""
    x = np.abs(_rows(wav))
    peak = x.max(axis=-1, keepdims=True)
    above = (x >= peak * 10 ** (trim_db / 20)) & (peak > 0)
    last = x.shape[-1] - above[:, ::-1].argmax(axis=-1)
    end = np.where(above.any(axis=-1), last, 0)
    return end[0] if np.ndim(wav) == 1 else end


def fade_out(
    wav: np.ndarray, sample_rate: int = SAMPLE_RATE, fade_ms: float = 30.0, end: Any = None, start: Any = 0
) -> np.ndarray:
    """Raised-cosine fade over the ``fade_ms`` before ``end`` (default: the last sample) and silence after
    it. The fade never starts before ``start`` (e.g. the onset): short sounds get a shorter fade.
    (T,) or (B, T) -> same shape."""
    x = _rows(wav)
    t = x.shape[-1]
    ends = np.broadcast_to(np.atleast_1d(t if end is None else np.asarray(end)), (x.shape[0],))
    starts = np.broadcast_to(np.atleast_1d(np.asarray(start)), (x.shape[0],))
    n_fade = int(round(fade_ms * sample_rate / 1000))
    for i in range(x.shape[0]):
        e = int(min(max(ends[i], 0), t))
        n = int(min(n_fade, max(e - int(starts[i]), 0) // 2))
        x[i, e:] = 0.0
        if n > 0:
            x[i, e - n : e] *= (0.5 + 0.5 * np.cos(np.pi * np.arange(1, n + 1) / n)).astype(np.float32)
    return x[0] if np.ndim(wav) == 1 else x


def trim_silence(
    wav: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
    trim_db: float = -60.0,
    fade_ms: float = 30.0,
    start: Any = 0,
) -> np.ndarray:
    """Silence each row after its last sample within ``trim_db`` of its peak, with a ``fade_ms`` fade-out
    ending there (never starting before ``start``). The length is kept. (T,) or (B, T) -> same shape."""
    return fade_out(wav, sample_rate, fade_ms, end=tail_end(wav, trim_db), start=start)


def natural_fade(
    wav: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
    floor_db: float = -60.0,
    min_fade_ms: float = 2.0,
    max_fade_ms: float = 300.0,
) -> np.ndarray:
    """Fade each row's tail out *below* ``floor_db`` (re its peak), at the sound's own pace.

    Nothing up to the last sample within ``floor_db`` of the peak is touched (a tail still above -60 dB
    is never cut). From there a raised-cosine fade runs for as long as the sound took to fall from
    ``floor_db + 20`` to ``floor_db`` (so a ringing cymbal fades over hundreds of ms, a closed hat over a
    few), clamped to [``min_fade_ms``, ``max_fade_ms``]; everything after it is silence. A sound still
    above ``floor_db`` at the end of the buffer (a crash longer than the clip) fades out over its last
    ``max_fade_ms`` (at most half the clip): a cut in a ringing tail would click, and a few ms would sound cut
    (``ring_at_end`` tells how loud it still was). (T,) or (B, T) -> same shape.
    """
    x = _rows(wav)
    t = x.shape[-1]
    end_floor = np.atleast_1d(tail_end(x, floor_db))
    end_upper = np.atleast_1d(tail_end(x, floor_db + 20.0))
    lo, hi = int(round(min_fade_ms * sample_rate / 1000)), int(round(max_fade_ms * sample_rate / 1000))
    for i in range(x.shape[0]):
        e = int(end_floor[i])
        if e == 0:
            continue  # silence
        if e >= t:  # still sounding at the end of the buffer: fade its last samples out
            n = min(hi, t // 2)
            if n > 0:
                x[i, t - n :] *= (0.5 + 0.5 * np.cos(np.pi * np.arange(1, n + 1) / n)).astype(np.float32)
            continue
        n = int(np.clip(e - int(end_upper[i]), lo, hi))
        n = min(n, t - e)
        x[i, e + n :] = 0.0
        if n > 0:
            x[i, e : e + n] *= (0.5 + 0.5 * np.cos(np.pi * np.arange(n) / n)).astype(np.float32)
    return x[0] if np.ndim(wav) == 1 else x


def ring_at_end(wav: np.ndarray, sample_rate: int = SAMPLE_RATE, window_ms: float = 50.0) -> np.ndarray:
    """Each row's level over its last ``window_ms`` (RMS, dB re the row's peak; -inf for silence): how loud a
    sound still is where its buffer ends. (T,) -> () ; (B, T) -> (B,)."""
    x = _rows(np.asarray(wav, np.float32))
    n = max(1, min(x.shape[-1], int(round(window_ms * sample_rate / 1000))))
    peak = np.abs(x).max(axis=-1)
    rms = np.sqrt(np.mean(np.square(x[:, -n:], dtype=np.float64), axis=-1))
    with np.errstate(divide="ignore", invalid="ignore"):
        level = np.where(peak > 0, 20 * np.log10(np.maximum(rms, 1e-30) / np.where(peak > 0, peak, 1)), -np.inf)
    return level[0] if np.ndim(wav) == 1 else level


def sound_length(wav: np.ndarray, sample_rate: int = SAMPLE_RATE, min_ms: float = 20.0) -> int:
    """Samples up to the last non-zero one of a (T,) clip, or of any channel of a (C, T) one (at least
    ``min_ms``, at most T): the natural length of a clip whose tail ``natural_fade`` has silenced."""
    x = np.asarray(wav)
    nz = np.flatnonzero(np.any(x != 0, axis=0) if x.ndim == 2 else x)
    end = int(nz[-1]) + 1 if nz.size else 0
    return int(min(x.shape[-1], max(end, int(round(min_ms * sample_rate / 1000)))))


def apply_length(
    wav: np.ndarray, sample_rate: int = SAMPLE_RATE, length: str | float | None = None, fade_ms: float = 10.0
) -> np.ndarray:
    """A finished clip (T,) or (C, T) (stereo models) at the requested length: None keeps it, "auto" trims it
    to the sound (``sound_length``), a number of seconds cuts or zero-pads it, with a ``fade_ms`` fade-out
    where a sound is cut short. Returns a float32 copy of the same rank."""
    x = np.asarray(wav, dtype=np.float32)
    if x.ndim not in (1, 2):
        raise ValueError(f"apply_length takes one clip (T,) or (C, T), got shape {x.shape}")
    if length is None:
        return x.copy()
    if length == "auto":
        return x[..., : sound_length(x, sample_rate)].copy()
    if isinstance(length, str) or not np.isfinite(length) or length <= 0:
        raise ValueError(f"length must be 'auto' or a positive number of seconds, got {length!r}")
    n = max(1, int(round(float(length) * sample_rate)))
    out = fix_length(x, n)
    if n < x.shape[-1] and np.any(x[..., n:]):  # the sound goes on past the cut
        out = fade_out(out, sample_rate, fade_ms)
    return out


MAX_LENGTH = 600.0  # seconds: a one-shot padded longer is a mistake, and would fill memory (10 min = 106 MB a clip)


def parse_length(value: str | float | None) -> str | float | None:
    """"auto" | seconds (a number or its text) | None -> "auto" | float | None; ValueError naming the value."""
    if value is None or value == "auto":
        return value
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"length must be 'auto' or a number of seconds, got {value!r}") from None
    if not np.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"length must be 'auto' or a positive number of seconds, got {value!r}")
    if seconds > MAX_LENGTH:
        raise ValueError(f"length must be 'auto' or at most {MAX_LENGTH:g} seconds, got {value!r}")
    return seconds


def fix_length(wav: np.ndarray, length: int) -> np.ndarray:
    """Cut or zero-pad at the end to ``length`` samples. (T,) -> (length,); (B, T) -> (B, length)."""
    x = _rows(wav)
    out = np.zeros((x.shape[0], length), np.float32)
    n = min(length, x.shape[-1])
    out[:, :n] = x[:, :n]
    return out[0] if np.ndim(wav) == 1 else out


def normalize_peak(wav: np.ndarray, peak: float = 0.95) -> np.ndarray:
    """Scale each row so max |x| == ``peak`` (silent rows stay silent); the result never exceeds ``peak``."""
    x = _rows(wav)
    m = np.abs(x).max(axis=-1, keepdims=True)
    x = np.where(m > 0, x * (peak / np.maximum(m, 1e-30)), 0.0).astype(np.float32)
    x = np.clip(x, -peak, peak)  # float rounding can overshoot by one ulp
    return x[0] if np.ndim(wav) == 1 else x


def normalize_lufs(
    wav: np.ndarray, sample_rate: int = SAMPLE_RATE, lufs: float = -14.0, peak: float = 0.95
) -> np.ndarray:
    """Scale each row to ``lufs`` integrated loudness (ITU-R BS.1770 via pyloudnorm; clips shorter than the
    400-ms gating block are measured zero-padded), then down to ``peak`` if the peak would exceed it."""
    import pyloudnorm  # here: it imports scipy.signal (0.8 s), and a command's parser imports this module

    x = _rows(wav)
    meter = pyloudnorm.Meter(sample_rate)
    min_len = int(0.4 * sample_rate) + 1
    for i in range(x.shape[0]):
        loud = float("-inf")
        for _ in range(4):  # the -70 LUFS absolute gate depends on the level: iterate to the target
            row = x[i] if x.shape[-1] >= min_len else np.pad(x[i], (0, min_len - x.shape[-1]))
            loud = float(meter.integrated_loudness(row.astype(np.float64)))
            if not np.isfinite(loud) or abs(loud - lufs) < 0.01:
                break
            x[i] *= np.float32(10 ** ((lufs - loud) / 20))
        m = float(np.abs(x[i]).max())
        if m > peak or not np.isfinite(loud):
            x[i] = normalize_peak(x[i], peak) if m > 0 else x[i]
    x = np.clip(x, -peak, peak)
    return x[0] if np.ndim(wav) == 1 else x


def finish(
    wav: ArrayT,
    sample_rate: int = SAMPLE_RATE,
    *,
    normalize: str | None = "peak",
    peak: float = 0.95,
    lufs: float = -14.0,
    preroll_ms: float = 1.5,
    fade_ms: float = 30.0,
    trim_db: float = -60.0,
    length: int | None = None,
    tail: str = "fixed",
) -> ArrayT:
    """Finish one-shots: DC removal, onset at ``preroll_ms``, tail below ``trim_db`` (re peak) silenced with
    a ``fade_ms`` fade-out ending there (``tail="fixed"``) or a fade starting there at the sound's own pace
    (``tail="natural"``, see ``natural_fade``), optional fixed ``length``, then ``normalize`` = "peak" (max |x| = ``peak``),
    "lufs" (``lufs`` loudness, turned down if it would exceed ``peak``) or None (turned down only if it
    would exceed ``peak``). Nothing is ever clipped.

    ``wav``: numpy or torch, (T,) or (B, T) -> same type/device/dtype, shape (T,)/(B, T) or ``length``.
    """
    if normalize not in ("peak", "lufs", None):
        raise ValueError(f"normalize must be 'peak', 'lufs' or None, got {normalize!r}")
    if not 0 < peak <= 1:
        raise ValueError(f"peak must be in (0, 1], got {peak}")
    if tail not in ("fixed", "natural"):
        raise ValueError(f"tail must be 'fixed' or 'natural', got {tail!r}")
    torch_like = hasattr(wav, "detach")
    x = wav.detach().to("cpu").float().numpy() if torch_like else np.asarray(wav)  # type: ignore[attr-defined]
    check_finite(x, "finish")
    one_row = x.ndim == 1
    x = remove_dc(x, sample_rate)
    onset = detect_onset(x)
    x = align_onset(x, sample_rate, preroll_ms, onset)
    if length is not None:
        x = fix_length(x, length)
    pre = int(round(preroll_ms * sample_rate / 1000))
    if tail == "natural":
        x = natural_fade(x, sample_rate, trim_db)
    else:
        x = trim_silence(x, sample_rate, trim_db, fade_ms, start=pre + 1)
    if normalize == "peak":
        x = normalize_peak(x, peak)
    elif normalize == "lufs":
        x = normalize_lufs(x, sample_rate, lufs, peak)
    elif np.abs(x).max() > peak:  # no normalisation: only turned down where a row would exceed the peak
        x = np.stack([normalize_peak(r, peak) if np.abs(r).max() > peak else r for r in _rows(x)])
        x = x[0] if one_row else x
    if torch_like:
        import torch

        return torch.from_numpy(np.ascontiguousarray(x)).to(device=wav.device, dtype=wav.dtype)  # type: ignore[attr-defined,return-value]
    return np.ascontiguousarray(x, dtype=np.float32)  # type: ignore[return-value]
