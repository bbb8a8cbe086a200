"""Output formats: wav16 (dithered PCM), wav24 (PCM), wav32f (float), flac; metadata in each."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from sampleforge.audio.io import FORMATS, read_metadata, tpdf_dither, write_audio
from sampleforge.errors import UserInputError

SR = 44100
META = {"prompt": "dusty 808 kick", "seed": "3", "model": "debug@abc"}


def tone(amp: float = 0.5, seconds: float = 0.5, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.mark.parametrize("fmt, subtype, tol", [("wav16", "PCM_16", 2.5 / 32768), ("wav24", "PCM_24", 1e-6),
                                                ("wav32f", "FLOAT", 0.0), ("wav", "FLOAT", 0.0),
                                                ("flac", "PCM_24", 1e-6)])
def test_each_format_reads_back_with_its_metadata(tmp_path, fmt: str, subtype: str, tol: float) -> None:
    x = tone()
    p = write_audio(tmp_path / f"x.{FORMATS[fmt][0]}", x, SR, META, format=fmt)
    info = sf.info(str(p))
    assert (info.subtype, info.samplerate, info.channels, info.frames) == (subtype, SR, 1, x.shape[0])
    y, _ = sf.read(str(p), dtype="float64")
    assert np.max(np.abs(y - x)) <= tol + 1e-9
    assert read_metadata(p) == META


def test_16_bit_is_dithered_pcm(tmp_path) -> None:
    """A sine of 0.4 LSB vanishes when rounded; TPDF dither keeps it (as a noisy signal) and its error is
    signal-independent noise of the right power: 1/6 LSB^2 of triangular dither + 1/12 of rounding."""
    lsb = 1 / 32768
    x = tone(amp=0.4 * lsb, seconds=1.0, hz=441.0)
    assert not np.any(np.round(x * 32768))  # plain rounding would give digital silence
    p = write_audio(tmp_path / "quiet.wav", x, SR, format="wav16")
    assert sf.info(str(p)).subtype == "PCM_16"
    codes, _ = sf.read(str(p), dtype="int16")
    assert np.count_nonzero(codes) > 0.3 * codes.size
    err = codes / 32768 - x
    assert abs(float(err.mean())) < 0.02 * lsb
    assert float((err / lsb).var()) == pytest.approx(1 / 6 + 1 / 12, rel=0.1)  # 3x the 1/12 of plain rounding
    corr = float(np.dot(codes / 32768, x) / np.dot(x, x))  # the sine survives, unbiased
    assert corr == pytest.approx(1.0, abs=0.1)


def test_dither_is_reproducible_and_24_bit_is_not_dithered(tmp_path) -> None:
    x = tone(amp=0.3)
    np.testing.assert_array_equal(tpdf_dither(x, 16), tpdf_dither(x, 16))
    a = write_audio(tmp_path / "a.wav", x, SR, META, format="wav16").read_bytes()
    b = write_audio(tmp_path / "b.wav", x, SR, META, format="wav16").read_bytes()
    assert a == b
    p = write_audio(tmp_path / "q.wav", tone(amp=0.4 / 2**23), SR, format="wav24")
    assert not np.any(sf.read(str(p), dtype="int32")[0])  # rounded: no noise added


def test_16_bit_keeps_digital_silence_silent(tmp_path) -> None:
    """Exact zeros (a lead-in, a padded tail) stay code 0, as in wav24 and flac; everything else is dithered."""
    lsb = 1 / 32768
    quiet = tone(amp=0.4 * lsb, seconds=0.2, hz=441.0) + np.float32(0.1 * lsb)  # no exact zero inside
    x = np.concatenate([np.zeros(2000, np.float32), quiet, np.full(3000, -0.0, np.float32)])
    p = write_audio(tmp_path / "padded.wav", x, SR, format="wav16")
    codes, _ = sf.read(str(p), dtype="int16")
    assert not np.any(codes[:2000]) and not np.any(codes[-3000:])
    assert np.count_nonzero(codes[2000:-3000]) > 0.3 * quiet.size  # still dithered where there is sound
    np.testing.assert_array_equal(tpdf_dither(x, 16), tpdf_dither(x, 16))
    assert write_audio(tmp_path / "again.wav", x, SR, format="wav16").read_bytes() == p.read_bytes()


def test_pcm_clips_hot_samples_and_bad_format_is_named(tmp_path) -> None:
    p = write_audio(tmp_path / "hot.wav", np.array([1.5, -1.5, 0.0], np.float32), SR, format="wav16")
    codes = sf.read(str(p), dtype="int16")[0]
    assert codes[0] >= 32766 and codes[1] <= -32767 and abs(int(codes[2])) <= 1
    with pytest.raises(UserInputError, match="mp3.*wav16"):
        write_audio(tmp_path / "x.mp3", tone(), SR, format="mp3")


def test_the_settings_and_the_writer_know_the_same_formats() -> None:
    from sampleforge.params import FORMATS as SETTINGS_FORMATS

    assert set(SETTINGS_FORMATS) == set(FORMATS)
