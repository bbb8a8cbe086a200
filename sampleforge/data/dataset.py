"""Clips -> fixed-length finished waveforms (disk-cached) -> a torch Dataset of wav, log-mel and labels.

``load_fixed`` reads a file, aligns its onset at 1.5 ms, cuts or zero-pads it to ``duration`` and
peak-normalises it to 0.95 (``audio.finish``). ``WaveCache`` stores those waveforms as ``.npy`` files
named by a content hash (SHA-256 of the file bytes + the processing parameters), so a renamed file is
still a hit and an edited file is a miss. Cache folder: ``cache_dir`` or ``$SAMPLEFORGE_CACHE`` or
``~/.cache/sampleforge``.

``DrumDataset`` augments deterministically from ``(seed, epoch, index)``: a resumed run that calls
``set_epoch`` sees the same batches. With a DataLoader, call ``set_epoch`` before each epoch and leave
``persistent_workers`` off (workers copy the dataset when an epoch starts).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from sampleforge.audio.finish import fade_out, finish, fix_length, normalize_peak
from sampleforge.audio.io import read_audio, resample
from sampleforge.audio.mel import MelConfig, MelSpectrogram
from sampleforge.data.corpus import Clip
from sampleforge.taxonomy import CATEGORIES

PROCESSING_VERSION = "fixed-v1"  # bump when load_fixed changes: old cache entries are then ignored
PEAK = 0.95
PREROLL_MS = 1.5


def default_cache_dir() -> Path:
    """``$SAMPLEFORGE_CACHE`` or ``~/.cache/sampleforge``."""
    env = os.environ.get("SAMPLEFORGE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "sampleforge"


def load_fixed(path: str | os.PathLike[str], duration: float = 2.0, sample_rate: int = 44100) -> np.ndarray:
    """A file as a finished one-shot: float32 (round(duration * sample_rate),), onset at 1.5 ms,
    peak 0.95, tail below -60 dB faded to silence. AudioReadError if the file cannot be read."""
    wav = read_audio(path, sample_rate)
    length = int(round(duration * sample_rate))
    return finish(wav, sample_rate, normalize="peak", peak=PEAK, preroll_ms=PREROLL_MS, length=length)


class WaveCache:
    """Disk cache of ``load_fixed`` results keyed by content hash; counts ``hits`` and ``misses``."""

    def __init__(self, cache_dir: str | os.PathLike[str] | None = None) -> None:
        self.dir = (Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()) / "fixed"
        self.hits = 0
        self.misses = 0
        self._hashes: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256

    def file_hash(self, path: Path) -> str:
        """SHA-256 of the file's bytes (memoised per process by path, size and mtime)."""
        st = path.stat()
        memo = (str(path), st.st_size, st.st_mtime_ns)
        if memo not in self._hashes:
            self._hashes[memo] = hashlib.sha256(path.read_bytes()).hexdigest()
        return self._hashes[memo]

    def key(self, path: str | os.PathLike[str], duration: float, sample_rate: int) -> str:
        """The cache key: hash of (file bytes hash, duration, sample rate, processing version)."""
        params = f"{self.file_hash(Path(path))}|{duration!r}|{sample_rate}|{PROCESSING_VERSION}"
        return hashlib.sha256(params.encode()).hexdigest()[:32]

    def get(
        self, path: str | os.PathLike[str], duration: float = 2.0, sample_rate: int = 44100
    ) -> np.ndarray:
        """``load_fixed(path, duration, sample_rate)``, from the cache when present (then stored)."""
        entry = self.dir / f"{self.key(path, duration, sample_rate)}.npy"
        length = int(round(duration * sample_rate))
        if entry.is_file():
            try:
                wav = np.load(entry, allow_pickle=False)
                if wav.shape == (length,) and wav.dtype == np.float32:
                    self.hits += 1
                    return wav
            except (OSError, ValueError):
                pass  # a damaged entry: recompute it
        self.misses += 1
        wav = load_fixed(path, duration, sample_rate)
        self._store(entry, wav)
        return wav

    def _store(self, entry: Path, wav: np.ndarray) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".", suffix=".npy.tmp", dir=self.dir)
            with os.fdopen(fd, "wb") as f:
                np.save(f, wav, allow_pickle=False)
            os.replace(tmp, entry)  # atomic: parallel workers never read half an entry
        except OSError:
            pass  # a read-only cache only costs speed


@dataclass
class AugmentConfig:
    """Random variations per (seed, epoch, index); 0 disables one."""

    gain_db: float = 6.0  # attenuation drawn from [-gain_db, 0] dB (never above the 0.95 peak)
    pitch_semitones: float = 1.0  # pitch shift drawn from [-x, x] semitones (by resampling: shorter/longer)
    tilt_db: float = 3.0  # spectral tilt drawn from [-x, x] dB at Nyquist, pivot 1 kHz (linear in log f)


def augment(
    wav: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator, sample_rate: int = 44100
) -> np.ndarray:
    """Pitch shift, EQ tilt and gain of one finished one-shot (T,) -> (T,); peak stays <= 0.95.
    Draws exactly three numbers from ``rng`` in a fixed order, whatever is disabled."""
    semis, tilt, gain = rng.uniform(-1.0, 1.0, size=3)
    semis *= cfg.pitch_semitones
    tilt *= cfg.tilt_db
    gain_db = -abs(gain) * cfg.gain_db
    length = wav.shape[-1]
    x = wav
    if abs(semis) > 1e-6:
        ratio = 2.0 ** (semis / 12.0)  # > 1: higher and shorter
        x = resample(x, sample_rate, max(1, int(round(sample_rate / ratio))))
        x = fade_out(fix_length(x, length), sample_rate, 10.0)
    if abs(tilt) > 1e-6:
        spec = np.fft.rfft(x)
        f = np.maximum(np.fft.rfftfreq(length, 1.0 / sample_rate), 20.0)
        db = tilt * np.log2(f / 1000.0) / np.log2(sample_rate / 2 / 1000.0)
        x = np.fft.irfft(spec * 10 ** (db / 20), n=length).astype(np.float32)
    x = normalize_peak(x, PEAK)
    return (x * np.float32(10 ** (gain_db / 20))).astype(np.float32)


class DrumDataset(Dataset[dict[str, Any]]):
    """Clips -> items ``{"wav": (T,) float32, "mel": (128, F) log-mel, "category": int, "keywords":
    list[str], "index": int}``; T = duration * sample_rate (88,200 and F = 173 for 2 s)."""

    def __init__(
        self,
        clips: Sequence[Clip],
        duration: float = 2.0,
        sample_rate: int = 44100,
        cache_dir: str | os.PathLike[str] | None = None,
        augment: AugmentConfig | None = None,
        seed: int = 0,
    ) -> None:
        self.clips = list(clips)
        self.duration = duration
        self.sample_rate = sample_rate
        self.cache = WaveCache(cache_dir)
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.mel = MelSpectrogram(MelConfig(sample_rate=sample_rate))

    def set_epoch(self, epoch: int) -> None:
        """Choose the augmentation draw: items depend only on (seed, epoch, index)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.clips)

    def waveform(self, i: int) -> np.ndarray:
        """The un-augmented finished waveform of clip ``i``, (T,) float32."""
        return self.cache.get(self.clips[i].path, self.duration, self.sample_rate)

    def warm(self) -> None:
        """Load every clip once (filling the cache)."""
        for i in range(len(self)):
            self.waveform(i)

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} clips")
        clip = self.clips[i]
        wav = self.waveform(i)
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            wav = augment(wav, self.augment, rng, self.sample_rate)
        w = torch.from_numpy(np.ascontiguousarray(wav, dtype=np.float32))
        with torch.no_grad():
            mel = self.mel(w)
        return {
            "wav": w,
            "mel": mel,
            "category": CATEGORIES.index(clip.category),
            "keywords": list(clip.keywords),
            "index": i,
        }


def collate(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack items: wav (B, T), mel (B, 128, F), category (B,) long, index (B,) long, keywords list[list[str]]."""
    return {
        "wav": torch.stack([b["wav"] for b in batch]),
        "mel": torch.stack([b["mel"] for b in batch]),
        "category": torch.tensor([b["category"] for b in batch], dtype=torch.long),
        "index": torch.tensor([b["index"] for b in batch], dtype=torch.long),
        "keywords": [list(b["keywords"]) for b in batch],
    }
