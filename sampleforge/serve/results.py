"""The result files: ``<storage>/results/<job id>/<i>.<wav|flac>``, ``job.json`` and ``pack.zip`` (a workflow job
also keeps its uploaded clips, ``input_<field>.wav``, and a kit its folder, ``kit/<name>/``), next to the job
database.

Every path is built from a validated job id (32 lower-case hex digits, made by the server), so no
request can name a file outside the storage directory. Files are written to a temporary name and
renamed into place, so a reader (or a crash) never sees half a file; with ``durable`` they are also
fsynced, so they survive a power loss. A worker writes a job's files apart, in its attempt's own folder
(``results/.staging/<job id>.<attempt>/``), and moves them into the job's folder only while it still holds
the job (``StagedFiles``): a worker that lost its job never touches the files of the one that finished it.
Downloads open their files before answering: a job deleted (or expired) mid-download keeps its open files
readable until the download ends.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from torch import Tensor

from sampleforge.audio.io import FORMATS, fsync_path, temp_file_beside, write_audio
from sampleforge.errors import SampleforgeError

JOB_ID_CHARS = frozenset("0123456789abcdef")
MEDIA_TYPES = {"wav": "audio/wav", "flac": "audio/flac"}
INPUT_FIELDS = ("audio", "from_audio", "to_audio")  # the clips a workflow request may upload
CHUNK = 64 * 1024  # bytes read (and sent) at a time when streaming a file or a zip
STAGING = ".staging"  # results/.staging/<job id>.<attempt>/: an attempt's files until it finishes its job


class ResultWriteError(SampleforgeError):
    """Writing a result file failed: not the request's fault. ``transient`` when the file system refused (disk
    full, I/O error, permissions: worth retrying); False when the audio itself cannot be written (libsndfile
    refuses the format or the metadata), which fails the same way every time."""

    def __init__(self, message: str, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


def from_file_system(exc: BaseException) -> bool:
    """True if ``exc`` or anything in its cause/context chain is an OSError, or libsndfile's "System error"
    (its words for a failed write)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) or "system error" in str(seen).lower():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def new_job_id() -> str:
    """A fresh server-made job id: UUID4 as 32 hex digits."""
    return uuid.uuid4().hex


def is_job_id(value: str) -> bool:
    return len(value) == 32 and set(value) <= JOB_ID_CHARS


class ResultFiles:
    """A directory holding the job database (``jobs.sqlite3``) and one folder of audio per job."""

    def __init__(self, root: str | Path, durable: bool = True) -> None:
        self.root = Path(root).resolve()
        self.results = self.root / "results"
        self.results.mkdir(parents=True, exist_ok=True)
        self.durable = durable

    @property
    def db_path(self) -> Path:
        return self.db_path_in(self.root)

    @property
    def lock_path(self) -> Path:
        """The storage's server lock: held exclusively by an embedded ``serve``, shared by a --broker one."""
        return self.root / "server.lock"

    def take_lock(self, exclusive: bool) -> IO[str] | None:
        """The server lock taken without waiting, exclusive or shared: the open file that holds it (closing it
        releases the lock), or None when another process holds it the other way (or exclusively)."""
        handle = open(self.lock_path, "a+")  # noqa: SIM115 (returned open: it holds the lock)
        try:
            fcntl.flock(handle, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return None
        return handle

    def lock_free(self, exclusive: bool) -> bool:
        """True if the server lock could be taken this way now (it is taken, then released at once)."""
        handle = self.take_lock(exclusive)
        if handle is None:
            return False
        handle.close()
        return True

    @staticmethod
    def db_path_in(root: str | Path) -> Path:
        """The job database of the storage ``root`` (``jobs.sqlite3``), known without making anything."""
        return Path(root) / "jobs.sqlite3"

    def job_dir(self, job_id: str) -> Path:
        if not is_job_id(job_id):
            raise ValueError(f"not a job id: {job_id[:40]!r}")
        return self.results / job_id

    def clip_path(self, job_id: str, index: int, fmt: str) -> Path:
        if fmt not in MEDIA_TYPES or not 0 <= index < 10_000:
            raise ValueError(f"bad clip {index}.{fmt}")
        return self.job_dir(job_id) / f"{index}.{fmt}"

    # ---- writing ----------------------------------------------------------------------------------------
    def write_clip(
        self, job_id: str, index: int, wav: Tensor | Any, sample_rate: int, fmt: str, metadata: dict[str, str]
    ) -> Path:
        """Write one clip ``wav`` (T,) in ``fmt`` (a FORMATS name: wav, wav16, wav24, wav32f, flac) atomically with
        its metadata (prompt, seed, model) as ``<index>.wav`` or ``.flac``; returns the path.

        Raises ResultWriteError (with no server path in its message) if the file system refuses."""
        path = self.clip_path(job_id, index, FORMATS[fmt][0])
        try:
            return write_audio(path, wav, sample_rate, metadata=metadata, format=fmt, durable=self.durable)
        except SampleforgeError as exc:
            raise ResultWriteError(f"cannot write clip {index}.{fmt} ({_reason(exc)})",
                                   transient=from_file_system(exc)) from exc

    def write_manifest(self, job_id: str, manifest: dict[str, Any]) -> None:
        """``job.json`` (atomic; fsynced when durable). Raises ResultWriteError."""
        text = json.dumps(manifest, indent=2, sort_keys=True).encode()
        self._write_atomic(self.job_dir(job_id) / "job.json", lambda f: f.write(text))

    def write_pack(self, job_id: str, entries: list[tuple[Path, str]], deflate_audio: bool = False) -> None:
        """``pack.zip`` of the job's files [(path, name in the zip)] (atomic; text deflated, audio stored unless
        ``deflate_audio``), so that downloads of the pack are a plain file (ranges, resumes). Raises
        ResultWriteError."""

        def write(f: IO[bytes]) -> None:
            with zipfile.ZipFile(f, "w") as zf:
                for path, name in entries:
                    stored = path.suffix in (".wav", ".flac") and not deflate_audio
                    zf.write(path, name, compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)

        self._write_atomic(self.pack_path(job_id), write)

    def _write_atomic(self, target: Path, write: Callable[[IO[bytes]], Any]) -> None:
        """Write ``target`` through a temporary file renamed into place (fsynced, with its folder, when durable).
        Raises ResultWriteError."""
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = temp_file_beside(target)
            try:
                with open(tmp, "wb") as f:
                    write(f)
                    if self.durable:
                        f.flush()
                        os.fsync(f.fileno())
                os.replace(tmp, target)
            finally:
                Path(tmp).unlink(missing_ok=True)
            if self.durable:
                fsync_path(target.parent)
        except OSError as exc:
            raise ResultWriteError(f"cannot write {target.name} ({exc.strerror or type(exc).__name__})") from exc

    def pack_path(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "pack.zip"

    def result_path(self, job_id: str, name: str) -> Path:
        """A file a job's results name (``0.wav``, ``kit/dusty_808/kick.wav``): inside the job's folder."""
        parts = Path(name).parts
        if not parts or Path(name).is_absolute() or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"bad result file {name[:80]!r}")
        return self.job_dir(job_id).joinpath(*parts)

    def input_path(self, job_id: str, field: str) -> Path:
        """Where an uploaded clip of a workflow job waits for its worker: ``input_<field>.wav``."""
        if field not in INPUT_FIELDS:
            raise ValueError(f"bad input {field[:40]!r}")
        return self.job_dir(job_id) / f"input_{field}.wav"

    def write_input(self, job_id: str, field: str, wav: Any, sample_rate: int) -> Path:
        """Store an uploaded clip (T,) as float WAV, atomically. Raises ResultWriteError."""
        try:
            return write_audio(self.input_path(job_id, field), wav, sample_rate, format="wav", durable=self.durable)
        except SampleforgeError as exc:
            raise ResultWriteError(f"cannot store the uploaded {field} ({_reason(exc)})") from exc

    def probe_write(self) -> None:
        """Create, fsync and remove a small file under results/; raises OSError if that fails (readiness)."""
        fd, tmp = tempfile.mkstemp(prefix=".probe.", dir=self.results)
        try:
            os.write(fd, b"ok")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(tmp)

    def stage(self, job_id: str) -> StagedFiles:
        """The files of a new attempt at ``job_id``: written apart, moved into the job's folder by ``publish``."""
        return StagedFiles(self, job_id)

    def delete_stale_attempts(self, older_than_s: float) -> int:
        """Remove attempt folders untouched for ``older_than_s`` seconds (left by workers that died); returns how
        many."""
        now, deleted = time.time(), 0
        staging = self.results / STAGING
        for entry in staging.iterdir() if staging.is_dir() else ():
            try:
                if now - entry.stat().st_mtime <= older_than_s:
                    continue
            except FileNotFoundError:  # published or discarded meanwhile
                continue
            shutil.rmtree(entry, ignore_errors=True)
            deleted += 1
        return deleted

    def delete(self, job_id: str) -> bool:
        """Remove a job's folder; True if there was one. Open downloads keep reading their files."""
        folder = self.job_dir(job_id)
        if not folder.exists():
            return False
        shutil.rmtree(folder, ignore_errors=True)
        return True

    def orphans(self, has_job: Callable[[str], bool], older_than_s: float) -> list[str]:
        """Result folders with no job row, untouched for ``older_than_s`` seconds (left by crashes)."""
        now = time.time()
        out = []
        for entry in self.results.iterdir():
            try:
                if not is_job_id(entry.name) or now - entry.stat().st_mtime <= older_than_s:
                    continue
            except FileNotFoundError:  # deleted meanwhile
                continue
            if not has_job(entry.name):
                out.append(entry.name)
        return out

    # ---- reading ----------------------------------------------------------------------------------------
    def open_files(self, paths: list[Path]) -> list[IO[bytes]] | None:
        """Open every path for reading, or None (and nothing left open) if one is gone."""
        opened: list[IO[bytes]] = []
        try:
            for path in paths:
                opened.append(open(path, "rb"))  # noqa: SIM115 (the caller closes them)
        except FileNotFoundError:
            close_all(opened)
            return None
        return opened


class StagedFiles(ResultFiles):
    """One attempt's files of one job: the writers of ResultFiles with the job's folder replaced by the attempt's
    own (``results/.staging/<job id>.<attempt>/``). ``publish`` moves them into the job's folder and must run
    inside the store's guarded finish (``JobStore.finish(publish=...)``), so only the attempt that still holds
    the job ever replaces its files; an attempt that lost it (cancelled, or taken over after a stall past the
    lease) only discards its own folder (``discard``)."""

    def __init__(self, files: ResultFiles, job_id: str) -> None:  # no mkdir: nothing is made until a write
        self.root, self.results, self.durable = files.root, files.results, files.durable
        self.job_id, self.target = job_id, files.job_dir(job_id)
        self.folder = self.results / STAGING / f"{job_id}.{uuid.uuid4().hex[:12]}"

    def job_dir(self, job_id: str) -> Path:
        if job_id != self.job_id:
            raise ValueError(f"these files are an attempt at job {self.job_id}, not {job_id[:40]!r}")
        return self.folder

    def publish(self) -> None:
        """Move every file and folder of the attempt into the job's folder, replacing those of the same name
        (uploaded clips stay). Raises ResultWriteError."""
        try:
            self.target.mkdir(parents=True, exist_ok=True)
            for entry in sorted(self.folder.iterdir()) if self.folder.is_dir() else ():
                dest = self.target / entry.name
                if entry.is_dir() and dest.is_dir():  # a kit folder published by an attempt that died before commit
                    shutil.rmtree(dest)
                os.replace(entry, dest)
            if self.durable:
                fsync_path(self.target)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise ResultWriteError(f"cannot move the job's files into place ({reason})") from exc
        self.discard()

    def discard(self) -> None:
        """Remove what is left of the attempt's folder."""
        shutil.rmtree(self.folder, ignore_errors=True)


def close_all(files: list[IO[bytes]]) -> None:
    for f in files:
        f.close()


def read_chunks(f: IO[bytes], start: int = 0, stop: int | None = None) -> Iterator[bytes]:
    """Bytes ``start:stop`` of an open file (default: all of it) in CHUNK-sized pieces; closes it at the end
    (or when the reader stops)."""
    try:
        f.seek(start)
        left = stop - start if stop is not None else None
        while left is None or left > 0:
            chunk = f.read(CHUNK if left is None else min(CHUNK, left))
            if not chunk:
                break
            if left is not None:
                left -= len(chunk)
            yield chunk
    finally:
        f.close()


class _Pipe:
    """A write-only, unseekable sink for zipfile: what is written waits in ``parts`` until drained."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def drain(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


def stream_zip(entries: list[tuple[IO[bytes], str]]) -> Iterator[bytes]:
    """A zip of already-open files [(file, name in the zip)], made as it is sent: about CHUNK bytes in memory.

    Audio is stored, not deflated (it barely compresses). Every file is closed at the end, or when the
    client goes away (the iterator is closed).
    """
    pipe = _Pipe()
    try:
        with zipfile.ZipFile(pipe, "w", compression=zipfile.ZIP_STORED) as zf:
            for src, name in entries:
                info = zipfile.ZipInfo(name, date_time=time.localtime(os.fstat(src.fileno()).st_mtime)[:6])
                with zf.open(info, "w") as dst:
                    while chunk := src.read(CHUNK):
                        dst.write(chunk)
                        yield pipe.drain()
                src.close()
                yield pipe.drain()
        yield pipe.drain()  # the central directory
    finally:
        close_all([src for src, _ in entries])


def _reason(exc: BaseException) -> str:
    """The cause of a write error without any path: 'No space left on device', 'Permission denied'..."""
    cause = exc.__cause__ or exc.__context__
    while cause is not None:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
        cause = cause.__cause__ or cause.__context__
    text = str(exc)
    if "(" in text and text.endswith(")"):
        return text[text.rindex("(") + 1:-1]
    return type(exc).__name__
