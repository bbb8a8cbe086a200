"""A finished job's files: one clip (``/audio/0``, ``0.wav``, ``0.flac``) or all of them in ``pack.zip``.

Both answer GET and HEAD, with range requests (``Range: bytes=...``: 206, 416; see downloads.py), so
browsers seek in audio and download managers resume. Files are opened before the response starts, so a
DELETE or TTL sweep racing with a download gives 410 (files gone before the open) or a complete download
(open files stay readable), never a 5xx or a cut transfer. ``pack.zip`` is written with the job's files; a
job stored before packs were written gets its pack zipped while it is sent (no ranges then).
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response, StreamingResponse

from sampleforge.serve.downloads import send_open_file
from sampleforge.serve.job import SUCCEEDED, Job
from sampleforge.serve.results import MEDIA_TYPES, stream_zip
from sampleforge.serve.routes.common import ServiceDep, load_job
from sampleforge.serve.views import download_name

router = APIRouter(tags=["jobs"])
CLIP_NAME = re.compile(r"([0-9]{1,4})(?:\.(wav|flac))?", re.ASCII)
GONE = "the audio files are gone (deleted or expired)"
RANGES: dict[int | str, dict[str, Any]] = {206: {"description": "the range asked for (`Range: bytes=...`)"},
          416: {"description": "the range lies past the end of the file (`Content-Range: bytes */size`)"}}


def _finished(job: Job) -> None:
    if job.state != SUCCEEDED:
        raise HTTPException(409, f"job is {job.state}; audio is available once it has succeeded")


@router.get("/v1/jobs/{job_id}/audio/{name}", response_class=Response,
            summary="One clip: `0`, `0.wav` or `0.flac` (range requests answered; HEAD too)",
            responses={200: {"content": {t: {} for t in MEDIA_TYPES.values()}}, **RANGES})
@router.head("/v1/jobs/{job_id}/audio/{name}", include_in_schema=False)
def audio(job_id: str, name: str, request: Request, service: ServiceDep) -> Response:
    job = load_job(service, job_id)
    m = CLIP_NAME.fullmatch(name)
    if m is None:
        raise HTTPException(404, "clip names are <index>, <index>.wav or <index>.flac")
    _finished(job)
    index, ext = int(m[1]), m[2]
    if index >= len(job.results):
        raise HTTPException(404, f"job has {len(job.results)} clips (0..{len(job.results) - 1})")
    file = str(job.results[index]["file"])
    kind = PurePosixPath(file).suffix.lstrip(".")
    if ext is not None and ext != kind:
        raise HTTPException(404, f"this job's clips are .{kind}")
    opened = service.files.open_files([service.files.result_path(job.id, file)])
    if opened is None:
        raise HTTPException(410, GONE)
    return send_open_file(request, opened[0], MEDIA_TYPES[kind],
                          {"Content-Disposition": f'inline; filename="{download_name(job, index)}"'})


@router.get("/v1/jobs/{job_id}/pack.zip", response_class=Response,
            summary="Every clip of a job (+ job.json) in one zip; a kit job: the kit (range requests answered; HEAD too)",
            responses={200: {"content": {"application/zip": {}}}, **RANGES})
@router.head("/v1/jobs/{job_id}/pack.zip", include_in_schema=False)
def pack(job_id: str, request: Request, service: ServiceDep) -> Response:
    job = load_job(service, job_id)
    _finished(job)
    files = service.files
    disposition = {"Content-Disposition": f'attachment; filename="{download_name(job)}"'}
    opened = files.open_files([files.pack_path(job.id)])
    if opened is not None:
        return send_open_file(request, opened[0], "application/zip", disposition)
    names = [download_name(job, r["index"]) for r in job.results] + ["job.json"]
    paths = [files.result_path(job.id, r["file"]) for r in job.results]
    opened = files.open_files([*paths, files.job_dir(job.id) / "job.json"])
    if opened is None:
        raise HTTPException(410, GONE)
    return StreamingResponse(stream_zip(list(zip(opened, names, strict=True))), media_type="application/zip",
                             headers=disposition)
