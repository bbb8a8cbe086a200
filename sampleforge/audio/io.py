"""Audio file I/O: read any WAV/FLAC/AIFF/OGG as float32 mono at one rate; write WAV/FLAC with metadata.

Reading goes through soundfile (libsndfile) and resamples with soxr. Every failure becomes an
``AudioReadError`` naming the file and the problem.

Writing is atomic (a temporary file in the target folder, then ``os.replace``): a failed write never
leaves a half-written file. Metadata is an arbitrary ``dict[str, str]``:

- WAV: 32-bit IEEE float (``wav32f``, alias ``wav``), or 16- or 24-bit PCM (``wav16``, ``wav24``),
  written here byte by byte (fmt, [fact,] data, LIST/INFO), so the same audio and metadata always give
  the same bytes (libsndfile adds a timestamped PEAK chunk and silently drops
  long INFO strings). ``ICMT`` holds the whole dict as a JSON object (the round-trip carrier); ``INAM``
  holds ``metadata["prompt"]`` (or ``"title"``) so players show it; ``ISFT`` is ``"sampleforge"``.
  16-bit PCM is TPDF-dithered (±1 LSB triangular noise before rounding, drawn from a generator seeded by
  the audio itself: reproducible bytes, no truncation distortion on quiet tails; exact zeros stay zero);
  24-bit is rounded.
- FLAC: 24-bit, the same JSON in the Vorbis ``COMMENT`` field, ``TITLE`` = prompt.

``read_metadata`` returns the JSON dict when the comment holds one; for files written by other tools it
returns their INFO / tag fields under readable names (``title``, ``comment``, ``artist``...).
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import unicodedata
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from sampleforge.errors import AudioReadError, UserInputError

SAMPLE_RATE = 44100

# output formats: name -> (container, PCM bits or 0 for 32-bit float); "wav" is the reference's float32 WAV
FORMATS: dict[str, tuple[str, int]] = {
    "wav16": ("wav", 16), "wav24": ("wav", 24), "wav32f": ("wav", 0), "flac": ("flac", 24), "wav": ("wav", 0),
}

# RIFF INFO ids <-> readable names (for files written by other tools)
INFO_NAMES: dict[bytes, str] = {
    b"INAM": "title",
    b"ICMT": "comment",
    b"IART": "artist",
    b"ICOP": "copyright",
    b"ICRD": "date",
    b"IGNR": "genre",
    b"ISFT": "software",
    b"IKEY": "keywords",
    b"IPRD": "album",
    b"ITRK": "tracknumber",
}
_SF_STRINGS = ("title", "comment", "artist", "copyright", "date", "genre", "software", "album", "tracknumber")


# ----------------------------------------------------------------------------------------------- reading
def resample(wav: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample (T,) or (T, C) float audio with soxr (high quality). Returns float32."""
    if orig_sr == target_sr:
        return np.asarray(wav, dtype=np.float32)
    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {target_sr}")
    out = soxr.resample(np.ascontiguousarray(wav, dtype=np.float32), orig_sr, target_sr, quality="HQ")
    return np.asarray(out, dtype=np.float32)


def read_audio(path: str | os.PathLike[str], sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read an audio file as float32 mono (T,) at ``sample_rate`` (channels averaged, soxr resampling).

    Raises AudioReadError (naming the file) when it is missing, unreadable, empty or holds NaN/inf.
    """
    p = Path(path)
    if not p.is_file():
        raise AudioReadError(f"{p}: no such file" if not p.exists() else f"{p}: not a file")
    try:
        data, sr = sf.read(str(p), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as exc:
        raise AudioReadError(f"{p}: cannot read as audio ({_short(exc)})") from None
    if data.shape[0] == 0:
        raise AudioReadError(f"{p}: empty (0 samples)")
    if not np.isfinite(data).all():
        raise AudioReadError(f"{p}: holds NaN or infinite samples")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    out = resample(mono, int(sr), sample_rate)
    if out.shape[0] == 0:
        raise AudioReadError(f"{p}: empty after resampling to {sample_rate} Hz")
    return np.ascontiguousarray(out, dtype=np.float32)


def _short(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return msg[:200]


# ----------------------------------------------------------------------------------------------- writing
def write_wav(
    path: str | os.PathLike[str],
    wav: Any,
    sample_rate: int = SAMPLE_RATE,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write (T,) or (C, T) float audio (numpy or torch) as a float32 WAV, atomically, with metadata."""
    return write_audio(path, wav, sample_rate, metadata, format="wav")


def write_audio(
    path: str | os.PathLike[str],
    wav: Any,
    sample_rate: int = SAMPLE_RATE,
    metadata: dict[str, str] | None = None,
    format: str = "wav",
    durable: bool = False,
) -> Path:
    """Write (T,) or (C, T) audio in ``format`` (a ``FORMATS`` name: "wav16", "wav24", "wav32f" = "wav",
    "flac"), atomically. Samples beyond [-1, 1] are clipped in the PCM formats.

    ``durable``: fsync the file before the rename and the folder after it, so the file survives a power
    loss once this returns. Unwritable paths, NaN samples and bad metadata raise UserInputError naming the
    problem. Returns the written path.
    """
    fmt = format.lower() if isinstance(format, str) else format
    if fmt not in FORMATS:
        raise UserInputError(f"unknown audio format {format!r} (valid: {', '.join(FORMATS)})")
    container, bits = FORMATS[fmt]
    data = _as_frames(wav, path)
    meta = _check_metadata(metadata)
    if sample_rate <= 0:
        raise UserInputError(f"{path}: sample rate must be positive, got {sample_rate}")
    target = Path(path)
    if target.is_dir():
        raise UserInputError(f"{target}: is a directory, expected a file path")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_file_beside(target)
    except OSError as exc:
        raise UserInputError(f"{target}: cannot write there ({exc.strerror or exc})") from None
    try:
        if container == "wav":
            tmp.write_bytes(_wav_bytes(data, sample_rate, meta, bits))
        else:
            with sf.SoundFile(
                str(tmp), "w", sample_rate, data.shape[1], format="FLAC", subtype="PCM_24"
            ) as f:
                if meta is not None:
                    title = _display_title(meta)
                    if title:  # libsndfile refuses an empty string ("bad string")
                        f.title = title
                    f.comment = json.dumps(meta, ensure_ascii=False, sort_keys=True)
                    f.software = "sampleforge"
                f.write(np.clip(data, -1.0, 1.0))
        if durable:
            fsync_path(tmp)
        os.replace(tmp, target)
        if durable:
            fsync_path(target.parent)
    except OSError as exc:
        raise UserInputError(f"{target}: cannot write there ({exc.strerror or exc})") from None
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise UserInputError(f"{target}: cannot write audio ({_short(exc)})") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return target


def _as_frames(wav: Any, path: str | os.PathLike[str]) -> np.ndarray:
    """(T,) or (C, T) numpy/torch -> contiguous float32 (T, C)."""
    if hasattr(wav, "detach"):  # torch tensor
        wav = wav.detach().to("cpu").float().numpy()
    arr = np.asarray(wav, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] > 8 or arr.shape[1] == 0:
        raise UserInputError(
            f"{path}: expected audio of shape (T,) or (C, T) with C <= 8, got {tuple(arr.shape)}"
        )
    if not np.isfinite(arr).all():
        raise UserInputError(f"{path}: refusing to write NaN or infinite samples")
    return np.ascontiguousarray(arr.T)


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once: os.umask is process-wide, toggling it later would race other threads


def temp_file_beside(target: Path) -> Path:
    """An empty temporary file in ``target``'s folder, to be ``os.replace``d onto it, with the permissions a
    plainly created file would get (mkstemp makes it 0600, which the replace would give the result).
    Raises OSError."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
    finally:
        os.close(fd)
    return Path(name)


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Flush a file's (or a folder's entries') data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def clean_text(text: str) -> str:
    """``text`` with control characters (NUL, ESC, newlines, C1...) replaced by spaces: safe in any tag."""
    return "".join(" " if unicodedata.category(ch) == "Cc" else ch for ch in text)


def _check_metadata(metadata: dict[str, str] | None) -> dict[str, str] | None:
    """str -> str, control characters replaced (players and tag readers choke on NUL and escapes)."""
    if metadata is None:
        return None
    for k, v in metadata.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise UserInputError(f"metadata must map str to str, got {k!r}: {type(v).__name__}")
    return {clean_text(k): clean_text(v) for k, v in metadata.items()}


def _display_title(meta: dict[str, str]) -> str:
    return meta.get("prompt") or meta.get("title") or ""


def _info_sub(cid: bytes, text: str) -> bytes:
    payload = text.encode("utf-8") + b"\x00"
    pad = b"\x00" if len(payload) % 2 else b""
    return cid + struct.pack("<I", len(payload)) + payload + pad


def tpdf_dither(data: np.ndarray, bits: int) -> np.ndarray:
    """Float frames in [-1, 1] -> integer codes of ``bits``-bit PCM with TPDF dither (the sum of two uniform
    ±0.5 LSB draws) before rounding. The noise generator is seeded by the audio's bytes, so the same audio
    gives the same codes. Samples that are exactly 0.0 stay code 0: digital silence (a lead-in, a padded tail)
    stays silent, as in 24-bit, for tools that trim it and kits that stack layers. Any shape -> same shape,
    int32."""
    scale = float(2 ** (bits - 1))
    seed = zlib.crc32(np.ascontiguousarray(data, dtype=np.float32).tobytes())
    rng = np.random.default_rng(seed)
    noise = rng.random(data.shape) - rng.random(data.shape)  # triangular on (-1, 1) LSB
    codes = np.where(data == 0.0, 0.0, np.round(np.clip(data, -1.0, 1.0) * scale + noise))
    return np.clip(codes, -scale, scale - 1).astype(np.int32)


def _pcm_payload(data: np.ndarray, bits: int) -> bytes:
    """(T, C) float frames -> little-endian PCM bytes: 16-bit dithered, 24-bit rounded."""
    if bits == 16:
        return tpdf_dither(data, 16).astype("<i2").tobytes()
    codes = np.clip(np.round(np.clip(data, -1.0, 1.0) * 2.0**23), -(2**23), 2**23 - 1).astype("<i4")
    return codes.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()  # the low three bytes of each sample


def _wav_bytes(data: np.ndarray, sample_rate: int, meta: dict[str, str] | None, bits: int = 0) -> bytes:
    """A complete WAV for (T, C) float32 frames: IEEE float (``bits`` 0: fmt + fact + data) or PCM
    (``bits`` 16 or 24: fmt + data), [+ LIST/INFO].

    Written here rather than by libsndfile so the bytes are reproducible (libsndfile adds a PEAK chunk
    with a timestamp) and long INFO strings survive."""
    frames, channels = data.shape
    if bits == 0:
        payload = np.ascontiguousarray(data, dtype="<f4").tobytes()
        width = 4
        fmt = struct.pack("<HHIIHHH", 3, channels, sample_rate, sample_rate * width * channels, width * channels,
                          32, 0)
        head = [
            b"fmt " + struct.pack("<I", len(fmt)) + fmt,  # 18 bytes: WAVEFORMATEX with cbSize 0
            b"fact" + struct.pack("<I", 4) + struct.pack("<I", frames),
        ]
    else:
        payload = _pcm_payload(data, bits)
        width = bits // 8
        fmt = struct.pack("<HHIIHH", 1, channels, sample_rate, sample_rate * width * channels, width * channels, bits)
        head = [b"fmt " + struct.pack("<I", len(fmt)) + fmt]  # 16 bytes: PCMWAVEFORMAT
    chunks = [
        *head,
        b"data" + struct.pack("<I", len(payload)) + payload + (b"\x00" if len(payload) % 2 else b""),
    ]
    if meta is not None:
        body = b"INFO"
        title = _display_title(meta)
        if title:
            body += _info_sub(b"INAM", title)
        body += _info_sub(b"ISFT", "sampleforge")
        body += _info_sub(b"ICMT", json.dumps(meta, ensure_ascii=False, sort_keys=True))
        chunks.append(b"LIST" + struct.pack("<I", len(body)) + body)
    riff = b"WAVE" + b"".join(chunks)
    if len(riff) > 0xFFFFFFFF:
        raise OSError("audio too long for a RIFF WAV file (4 GB)")
    return b"RIFF" + struct.pack("<I", len(riff)) + riff


# ----------------------------------------------------------------------------------------------- metadata
def _riff_info(path: Path) -> dict[bytes, str]:
    """The LIST/INFO strings of a RIFF WAV file (first occurrence of each id)."""
    out: dict[bytes, str] = {}
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise AudioReadError(f"{path}: not a RIFF WAV file")
        while True:
            hdr = f.read(8)
            if len(hdr) < 8:
                break
            cid, size = hdr[:4], struct.unpack("<I", hdr[4:])[0]
            if cid == b"LIST":
                data = f.read(size)
                if data[:4] == b"INFO":
                    pos = 4
                    while pos + 8 <= len(data):
                        sid, ssize = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
                        raw = data[pos + 8 : pos + 8 + ssize].split(b"\x00", 1)[0]
                        try:
                            text = raw.decode("utf-8")
                        except UnicodeDecodeError:
                            text = raw.decode("latin-1")
                        out.setdefault(sid, text)
                        pos += 8 + ssize + (ssize % 2)
            else:
                f.seek(size, os.SEEK_CUR)
            if size % 2:
                f.seek(1, os.SEEK_CUR)
    return out


def _json_dict(text: str | None) -> dict[str, str] | None:
    if not text or not text.lstrip().startswith("{"):
        return None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return None
    if isinstance(obj, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in obj.items()):
        return obj
    return None


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """Metadata of an audio file: the dict given to ``write_audio`` (exactly), or the file's readable tags."""
    p = Path(path)
    if not p.is_file():
        raise AudioReadError(f"{p}: no such file")
    with open(p, "rb") as f:
        magic = f.read(12)
    if magic[:4] == b"RIFF" and magic[8:12] == b"WAVE":
        info = _riff_info(p)
        found = _json_dict(info.get(b"ICMT"))
        if found is not None:
            return found
        return {INFO_NAMES.get(k, k.decode("latin-1")): v for k, v in info.items()}
    try:
        with sf.SoundFile(str(p)) as f:
            tags = {name: getattr(f, name) for name in _SF_STRINGS}
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioReadError(f"{p}: cannot read as audio ({_short(exc)})") from None
    found = _json_dict(tags.get("comment"))
    if found is not None:
        return found
    return {k: v for k, v in tags.items() if v}
