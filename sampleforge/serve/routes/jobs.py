"""``/v1/generate`` and ``/v1/jobs/{id}``: queue a job, follow it (JSON or server-sent events), cancel or delete it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from sampleforge.serve.job import QUEUED
from sampleforge.serve.routes.common import (
    JsonBodyRoute,
    ServiceDep,
    accepted,
    check_limits,
    load_job,
    submit,
)
from sampleforge.serve.schemas import GenerateRequest
from sampleforge.serve.service import Service
from sampleforge.serve.views import job_view

router = APIRouter(tags=["jobs"], route_class=JsonBodyRoute)
SSE_POLL_S = 0.2
SSE_KEEP_ALIVE_S = 15.0


@router.post("/v1/generate", status_code=202, summary="Queue a generation job")
def generate(req: GenerateRequest, service: ServiceDep) -> JSONResponse:
    check_limits(service, req, lambda field: ("body", field))
    job = submit(service, req, "generate")
    return accepted(job, job_view(job, queue_position=service.store.queue_position(job)))


@router.get("/v1/jobs/{job_id}", summary="State, progress, warnings, results of a job")
def get_job(job_id: str, service: ServiceDep) -> dict[str, Any]:
    job = load_job(service, job_id)
    return job_view(job, queue_position=service.store.queue_position(job) if job.state == QUEUED else None)


@router.delete("/v1/jobs/{job_id}", summary="Cancel a queued/running job; delete a finished one")
def delete_job(job_id: str, service: ServiceDep) -> dict[str, Any]:
    return service.cancel_or_delete(load_job(service, job_id))


@router.get("/v1/jobs/{job_id}/events",
            summary="Server-sent events: `progress` while the job runs, then one `done` with the final job")
async def job_events(job_id: str, request: Request, service: ServiceDep) -> StreamingResponse:
    await asyncio.to_thread(load_job, service, job_id)
    return StreamingResponse(_events(service, job_id, request), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _events(service: Service, job_id: str, request: Request) -> AsyncIterator[str]:
    start = last_sent = time.monotonic()
    last_key: tuple[str, float] | None = None
    while True:
        job = await asyncio.to_thread(service.store.get, job_id)
        if job is None:
            yield f"event: gone\ndata: {json.dumps({'job_id': job_id})}\n\n"
            return
        key = (job.state, round(job.progress, 3))
        if key != last_key:
            last_key, last_sent = key, time.monotonic()
            name = "done" if job.terminal else "progress"
            yield f"event: {name}\ndata: {json.dumps(job_view(job))}\n\n"
        if job.terminal or time.monotonic() - start > service.config.sse_max_seconds:
            return
        if time.monotonic() - last_sent > SSE_KEEP_ALIVE_S:
            last_sent = time.monotonic()
            yield ": keep-alive\n\n"
        if await request.is_disconnected():
            return
        await asyncio.sleep(SSE_POLL_S)
