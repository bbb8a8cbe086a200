"""audio/io.py: format round trips, resampling, metadata round trip, errors that name the file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from sampleforge.audio.io import read_audio, read_metadata, write_audio, write_wav
from sampleforge.errors import AudioReadError, UserInputError

SR = 44100


def _tone(sr: int = SR, seconds: float = 0.25, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t) * np.exp(-4 * t)).astype(np.float32)


@pytest.mark.parametrize(
    "ext,fmt,subtype,tol",
    [
        ("wav", "WAV", "PCM_16", 1e-4),
        ("wav", "WAV", "PCM_24", 1e-6),
        ("wav", "WAV", "FLOAT", 0.0),
        ("flac", "FLAC", "PCM_16", 1e-4),
        ("flac", "FLAC", "PCM_24", 1e-6),
        ("aiff", "AIFF", "PCM_16", 1e-4),
        ("aiff", "AIFF", "PCM_24", 1e-6),
    ],
)
def test_lossless_round_trip(tmp_path, ext, fmt, subtype, tol):
    x = _tone()
    p = tmp_path / f"x.{ext}"
    sf.write(p, x, SR, format=fmt, subtype=subtype)
    y = read_audio(p)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.max(np.abs(y - x)) <= tol


def test_ogg_round_trip_is_close(tmp_path):
    x = _tone(seconds=0.5)
    p = tmp_path / "x.ogg"
    sf.write(p, x, SR, format="OGG", subtype="VORBIS")
    y = read_audio(p)
    n = min(len(x), len(y))
    assert abs(len(y) - len(x)) < 2048
    assert np.corrcoef(x[:n], y[:n])[0, 1] > 0.99


def test_stereo_is_averaged_to_mono(tmp_path):
    left, right = _tone(), -0.5 * _tone()
    p = tmp_path / "s.wav"
    sf.write(p, np.stack([left, right], axis=1), SR, subtype="FLOAT")
    y = read_audio(p)
    np.testing.assert_allclose(y, (left + right) / 2, atol=1e-7)


def test_48k_is_resampled_keeping_pitch_and_length(tmp_path):
    x = _tone(sr=48000, seconds=0.5, freq=1000.0)
    p = tmp_path / "x48.wav"
    sf.write(p, x, 48000, subtype="PCM_24")
    y = read_audio(p, sample_rate=SR)
    assert abs(len(y) - round(len(x) * SR / 48000)) <= 1
    spec = np.abs(np.fft.rfft(y))
    peak_hz = np.argmax(spec) * SR / len(y)
    assert abs(peak_hz - 1000.0) < 5.0


def test_missing_corrupt_empty_and_nan_files_raise_naming_the_file(tmp_path):
    with pytest.raises(AudioReadError, match="nope.wav"):
        read_audio(tmp_path / "nope.wav")
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    with pytest.raises(AudioReadError, match="corrupt.wav"):
        read_audio(bad)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), SR, subtype="FLOAT")
    with pytest.raises(AudioReadError, match="empty.wav.*empty"):
        read_audio(empty)
    nan = tmp_path / "nan.wav"
    x = _tone()
    x[10] = np.nan
    sf.write(nan, x, SR, subtype="FLOAT")
    with pytest.raises(AudioReadError, match="nan.wav.*NaN"):
        read_audio(nan)


META = {
    "prompt": "punchy 808 kick — grüße",
    "seed": "1234",
    "model": "drums-v1@3f2a",
    "settings": json.dumps({"cfg": 3.0, "steps": 50}),
    "long": "x" * 20000,
    "": "empty key",
}


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_metadata_round_trip(tmp_path, fmt):
    x = _tone()
    p = write_audio(tmp_path / f"m.{fmt}", x, SR, META, format=fmt)
    assert read_metadata(p) == META
    y = read_audio(p)
    assert np.max(np.abs(y - x)) < (1e-6 if fmt == "wav" else 1e-5)


def test_wav_is_float32_and_shows_prompt_as_title(tmp_path):
    p = write_wav(tmp_path / "t.wav", torch.from_numpy(_tone()), SR, {"prompt": "deep kick", "seed": "7"})
    info = sf.info(str(p))
    assert info.subtype == "FLOAT" and info.samplerate == SR and info.channels == 1
    with sf.SoundFile(str(p)) as f:  # other tools (libsndfile) see the prompt as the title
        assert f.title == "deep kick"


def test_foreign_tags_are_returned_by_name(tmp_path):
    p = tmp_path / "foreign.wav"
    with sf.SoundFile(str(p), "w", SR, 1, subtype="PCM_16") as f:
        f.title = "Some Kick"
        f.artist = "Someone"
        f.write(_tone())
    meta = read_metadata(p)
    assert meta["title"] == "Some Kick" and meta["artist"] == "Someone"


def test_no_metadata_reads_empty(tmp_path):
    p = write_wav(tmp_path / "n.wav", _tone())
    assert read_metadata(p) == {}


def test_unwritable_path_raises_and_leaves_nothing(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("I am a file, not a folder")
    with pytest.raises(UserInputError, match="file/out.wav"):
        write_wav(blocker / "out.wav", _tone())
    with pytest.raises(UserInputError, match="is a directory"):
        write_wav(tmp_path, _tone())
    assert sorted(q.name for q in tmp_path.iterdir()) == ["file"]


def test_failed_write_keeps_the_old_file(tmp_path):
    p = write_wav(tmp_path / "keep.wav", _tone(), metadata={"prompt": "old"})
    bad = _tone()
    bad[3] = np.inf
    with pytest.raises(UserInputError, match="NaN or infinite"):
        write_wav(p, bad, metadata={"prompt": "new"})
    assert read_metadata(p) == {"prompt": "old"}
    assert sorted(q.name for q in tmp_path.iterdir()) == ["keep.wav"]


def test_bad_metadata_and_format_are_user_errors(tmp_path):
    with pytest.raises(UserInputError, match="str to str"):
        write_wav(tmp_path / "a.wav", _tone(), metadata={"seed": 3})  # type: ignore[dict-item]
    with pytest.raises(UserInputError, match="valid: wav16, wav24, wav32f, flac, wav"):
        write_audio(tmp_path / "a.mp3", _tone(), format="mp3")


def test_stereo_write(tmp_path):
    x = np.stack([_tone(), 0.5 * _tone()])  # (C, T)
    p = write_wav(tmp_path / "st.wav", x, SR, {"prompt": "hat"})
    data, sr = sf.read(str(p), dtype="float32")
    assert data.shape == (x.shape[1], 2) and sr == SR
    np.testing.assert_array_equal(data.T, x)


def test_wav_bytes_are_reproducible_and_readable_by_libsndfile(tmp_path):
    x = np.stack([_tone(), _tone(freq=220.0), -_tone()])  # 3 channels
    a = write_wav(tmp_path / "a.wav", x, 48000, {"prompt": "kick", "seed": "1"})
    b = write_wav(tmp_path / "b.wav", x, 48000, {"prompt": "kick", "seed": "1"})
    assert a.read_bytes() == b.read_bytes()
    info = sf.info(str(a))
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (48000, 3, x.shape[1], "FLOAT")
    data, _ = sf.read(str(a), dtype="float32")
    np.testing.assert_array_equal(data.T, x)


def test_written_files_get_the_umask_permissions_not_0600(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    os.umask(old)
    out = write_audio(tmp_path / "a.wav", np.zeros(100, np.float32), 44100)
    mode = stat.S_IMODE(out.stat().st_mode)
    assert mode == 0o666 & ~old, oct(mode)  # a user's other tools (and a web server) may read it
    from sampleforge.serve.results import ResultFiles

    store, job = ResultFiles(tmp_path / "store", durable=False), "0" * 32
    store.write_manifest(job, {"id": job})
    assert stat.S_IMODE((store.job_dir(job) / "job.json").stat().st_mode) == 0o666 & ~old


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_an_empty_prompt_writes_a_file_without_a_title(tmp_path, fmt):
    meta = {"prompt": "", "seed": "3"}
    p = write_audio(tmp_path / f"e.{fmt}", _tone(), SR, meta, format=fmt)
    assert read_metadata(p) == meta
    with sf.SoundFile(str(p)) as f:
        assert not f.title
