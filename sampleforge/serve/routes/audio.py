"""A finished job's audio: one clip (``/audio/0``, ``0.wav``, ``0.flac``) or all of them in ``pack.zip``.

Files are opened before the response starts, so a DELETE or TTL sweep racing with a download gives
410 (files gone before the open) or a complete download (open files stay readable), never a 5xx or a
cut transfer. A pack is zipped while it is sent: its memory does not grow with the number of clips.
"""

from __future__ import annotations

import os
import re

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response, StreamingResponse

from sampleforge.serve.job import SUCCEEDED, Job
from sampleforge.serve.results import MEDIA_TYPES, read_chunks, stream_zip
from sampleforge.serve.routes.common import ServiceDep, load_job
from sampleforge.serve.views import download_name

router = APIRouter(tags=["jobs"])
CLIP_NAME = re.compile(r"([0-9]{1,4})(?:\.(wav|flac))?", re.ASCII)
GONE = "the audio files are gone (deleted or expired)"


def _finished(job: Job) -> None:
    if job.state != SUCCEEDED:
        raise HTTPException(409, f"job is {job.state}; audio is available once it has succeeded")


@router.get("/v1/jobs/{job_id}/audio/{name}", summary="One clip: `0`, `0.wav` or `0.flac`",
            response_class=Response, responses={200: {"content": {t: {} for t in MEDIA_TYPES.values()}}})
def audio(job_id: str, name: str, service: ServiceDep) -> StreamingResponse:
    job = load_job(service, job_id)
    m = CLIP_NAME.fullmatch(name)
    if m is None:
        raise HTTPException(404, "clip names are <index>, <index>.wav or <index>.flac")
    _finished(job)
    index, ext, fmt = int(m[1]), m[2], job.params.format
    if index >= len(job.results):
        raise HTTPException(404, f"job has {len(job.results)} clips (0..{len(job.results) - 1})")
    if ext is not None and ext != fmt:
        raise HTTPException(404, f"this job's clips are .{fmt}")
    opened = service.files.open_files([service.files.clip_path(job.id, index, fmt)])
    if opened is None:
        raise HTTPException(410, GONE)
    size = os.fstat(opened[0].fileno()).st_size
    return StreamingResponse(read_chunks(opened[0]), media_type=MEDIA_TYPES[fmt], headers={
        "Content-Length": str(size), "Content-Disposition": f'inline; filename="{download_name(job, index)}"'})


@router.get("/v1/jobs/{job_id}/pack.zip", summary="Every clip of a job (+ job.json) in one zip",
            response_class=Response, responses={200: {"content": {"application/zip": {}}}})
def pack(job_id: str, service: ServiceDep) -> StreamingResponse:
    job = load_job(service, job_id)
    _finished(job)
    files = service.files
    names = [download_name(job, r["index"]) for r in job.results] + ["job.json"]
    paths = [files.clip_path(job.id, r["index"], job.params.format) for r in job.results]
    opened = files.open_files([*paths, files.job_dir(job.id) / "job.json"])
    if opened is None:
        raise HTTPException(410, GONE)
    return StreamingResponse(stream_zip(list(zip(opened, names, strict=True))), media_type="application/zip",
                             headers={"Content-Disposition": f'attachment; filename="{download_name(job)}"'})
