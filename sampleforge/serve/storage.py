"""Where results live: ``<storage>/jobs.sqlite3`` and ``<storage>/results/<job id>/<i>.<wav|flac>``.

Every path is built from a validated job id (32 lower-case hex digits, made by the server), so no
request can name a file outside the storage directory. Files are written to a temporary name and
renamed into place, so a reader (or a crash) never sees half a file.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import time
import uuid
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import Tensor

from sampleforge.audio.io import write_audio

JOB_ID = re.compile(r"[0-9a-f]{32}")
MEDIA_TYPES = {"wav": "audio/wav", "flac": "audio/flac"}


def new_job_id() -> str:
    """A fresh server-made job id: UUID4 as 32 hex digits."""
    return uuid.uuid4().hex


def is_job_id(value: str) -> bool:
    return bool(JOB_ID.fullmatch(value))


class Storage:
    """A directory holding the job database and one folder of audio per job."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.results = self.root / "results"
        self.results.mkdir(parents=True, exist_ok=True)

    @property
    def db_path(self) -> Path:
        return self.root / "jobs.sqlite3"

    def job_dir(self, job_id: str) -> Path:
        if not is_job_id(job_id):
            raise ValueError(f"not a job id: {job_id[:40]!r}")
        return self.results / job_id

    def clip_path(self, job_id: str, index: int, fmt: str) -> Path:
        if fmt not in MEDIA_TYPES or not 0 <= index < 10_000:
            raise ValueError(f"bad clip {index}.{fmt}")
        return self.job_dir(job_id) / f"{index}.{fmt}"

    def write_clip(
        self, job_id: str, index: int, wav: Tensor, sample_rate: int, fmt: str, metadata: dict[str, str]
    ) -> Path:
        """Write one clip ``wav`` (T,) atomically with its metadata (prompt, seed, model); returns the path."""
        path = self.clip_path(job_id, index, fmt)
        write_audio(path, wav, sample_rate, metadata=metadata, format=fmt)  # atomic: temp file + rename
        return path

    def write_manifest(self, job_id: str, manifest: dict[str, Any]) -> None:
        path = self.job_dir(job_id) / "job.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(".job.json.tmp")
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
        tmp.replace(path)

    def delete(self, job_id: str) -> bool:
        """Remove a job's folder; True if there was one."""
        folder = self.job_dir(job_id)
        if not folder.exists():
            return False
        shutil.rmtree(folder, ignore_errors=True)
        return True

    def pack(self, job_id: str, files: list[tuple[Path, str]]) -> bytes:
        """A zip of ``files`` [(path on disk, name in the zip)] plus the job manifest, built in memory.

        Audio is stored, not deflated (it barely compresses); a pack is at most max_count clips.
        """
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
            for path, name in files:
                zf.write(path, arcname=name)
            manifest = self.job_dir(job_id) / "job.json"
            if manifest.exists():
                zf.write(manifest, arcname="job.json")
        return buf.getvalue()

    def orphans(self, has_job: Callable[[str], bool], older_than_s: float) -> list[str]:
        """Result folders with no job row, untouched for ``older_than_s`` seconds (left by crashes)."""
        now = time.time()
        out = []
        for entry in self.results.iterdir():
            if not is_job_id(entry.name) or now - entry.stat().st_mtime <= older_than_s:
                continue
            if not has_job(entry.name):
                out.append(entry.name)
        return out
