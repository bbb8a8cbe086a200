"""Natural length: the tail fade starts below -60 dB and follows the sound's decay; --length auto / seconds."""

from __future__ import annotations

import numpy as np
import pytest

from sampleforge.audio.finish import apply_length, finish, natural_fade, parse_length, sound_length, tail_end

SR = 44100


def decaying(tau_s: float, seconds: float = 2.0, delay_s: float = 0.01, seed: int = 0) -> np.ndarray:
    """Noise with an exponential decay of time constant ``tau_s`` (a hat or a cymbal), over a -100 dB floor."""
    n = int(seconds * SR)
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    env = np.where(t >= delay_s, np.exp(-(t - delay_s) / tau_s), 0.0)
    return (0.9 * env * rng.standard_normal(n) + 1e-5 * rng.standard_normal(n)).astype(np.float32)


@pytest.mark.parametrize("tau", [0.01, 0.05, 0.2])
def test_natural_fade_never_touches_the_tail_above_minus_60_db(tau: float) -> None:
    x = decaying(tau)
    y = natural_fade(x, SR)
    end = int(tail_end(x, -60.0))
    np.testing.assert_array_equal(y[:end], x[:end])  # everything up to the -60 dB point is intact
    assert np.all(np.abs(y[end:]) <= np.abs(x[end:]))
    assert sound_length(y, SR) > end  # and the fade goes on past it


def test_fade_length_follows_the_decay() -> None:
    """A slow cymbal fades over longer than a fast hat (each over its own -40 -> -60 dB time)."""
    fades = []
    for tau in (0.005, 0.04):
        x = decaying(tau)
        y = natural_fade(x, SR)
        fades.append(sound_length(y, SR) - int(tail_end(x, -60.0)))
    assert fades[0] < fades[1]
    # 20 dB of an exponential decay take tau * ln(10) * 20 / 20 = 2.3 tau
    assert fades[1] == pytest.approx(0.04 * np.log(10) * SR, rel=0.35)


def test_old_fixed_fade_cuts_what_natural_keeps() -> None:
    x = decaying(0.08)
    fixed = finish(x, SR, length=2 * SR)
    natural = finish(x, SR, length=2 * SR, tail="natural")
    assert sound_length(natural, SR) > sound_length(fixed, SR)
    end = int(tail_end(natural, -60.0))
    above = np.abs(natural[:end]) >= 0.95e-3
    # the fixed fade attenuates samples that were still above -60 dB; the natural one never does
    assert np.abs(fixed[:end][above]).sum() < np.abs(natural[:end][above]).sum()


def test_auto_length_is_the_sound_and_seconds_cut_with_a_fade() -> None:
    hat = finish(decaying(0.01), SR, tail="natural")
    short = apply_length(hat, SR, "auto")
    assert 0.05 * SR < short.shape[0] < 0.3 * SR
    np.testing.assert_array_equal(short, hat[: short.shape[0]])
    assert not np.any(hat[short.shape[0]:])
    cut = apply_length(hat, SR, 0.02)
    assert cut.shape == (882,) and abs(cut[-1]) < 1e-3 * np.abs(cut).max()  # faded at the cut
    padded = apply_length(hat, SR, 3.0)
    assert padded.shape == (3 * SR,) and not np.any(padded[2 * SR:])
    np.testing.assert_array_equal(apply_length(hat, SR, None), hat)


def test_silence_and_bad_lengths() -> None:
    assert sound_length(np.zeros(1000, np.float32), SR) == int(0.02 * SR)
    assert parse_length("auto") == "auto" and parse_length("0.5") == 0.5 and parse_length(None) is None
    for bad in ("long", "-1", "0", "nan", "inf", "1e9", 600.5):
        with pytest.raises(ValueError, match="length"):
            parse_length(bad)
    assert parse_length("600") == 600.0  # ten minutes of one-shot and its silence: the most
    with pytest.raises(ValueError, match="tail"):
        finish(np.zeros(100, np.float32), SR, tail="soft")


def test_length_of_a_stereo_clip_follows_its_longest_channel() -> None:
    sr = 1000
    x = np.zeros((2, 1000), np.float32)
    x[0, :200] = 0.5
    x[1, :400] = -0.5  # the right channel rings longer
    auto = apply_length(x, sr, "auto")
    assert auto.shape == (2, 400)
    np.testing.assert_array_equal(auto, x[:, :400])
    cut = apply_length(x, sr, 0.3)
    assert cut.shape == (2, 300) and cut[1, -1] == 0.0 and cut[1, 250] != 0.0  # faded where the sound is cut
    np.testing.assert_array_equal(cut[0, :200], x[0, :200])
    with pytest.raises(ValueError, match="one clip"):
        apply_length(np.zeros((1, 2, 10), np.float32), sr, None)
