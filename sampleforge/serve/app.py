"""The HTTP API (FastAPI). Routes only: the work is in service.py, jobs.py, store.py and storage.py.

Auth policy (when a token is set): every ``/v1/*`` route needs ``Authorization: Bearer <token>``
except ``/v1/health`` and ``/v1/health/live`` (load balancers and probes; they expose no job data).
The web page (``/``, ``/static/*``) and the API docs (``/docs``, ``/openapi.json``) stay public: they
hold no data, and the page asks for the token when the API answers 401.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from sampleforge.serve.middleware import BodyLimit, RequestLog
from sampleforge.serve.schemas import TASK_FIELDS, GenerateRequest, TaskRequest
from sampleforge.serve.service import Service
from sampleforge.serve.storage import MEDIA_TYPES, is_job_id
from sampleforge.serve.store import SUCCEEDED, Job, QueueFull
from sampleforge.serve.views import download_name, job_view, task_view
from sampleforge.serve.workflow import UPLOAD_PATHS
from sampleforge.serve.workflow import router as workflow_router

log = logging.getLogger("sampleforge.serve")
STATIC = Path(__file__).parent / "static"
CLIP_NAME = re.compile(r"(\d{1,4})(?:\.(wav|flac))?")



def _error(loc: tuple[str, ...], msg: str, kind: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": kind}


def check_limits(service: Service, req: GenerateRequest, prefix: tuple[str, ...], names: dict[str, str]) -> None:
    """This server's limits (beyond the schema's static bounds): 422 naming each offending field."""
    cfg, errors = service.config, []

    def loc(field: str) -> tuple[str, ...]:
        return (*prefix, names.get(field, field))

    if len(req.prompt) > cfg.max_prompt_chars:
        errors.append(_error(loc("prompt"), f"at most {cfg.max_prompt_chars} characters", "string_too_long"))
    if req.count > cfg.max_count:
        errors.append(_error(loc("count"), f"at most {cfg.max_count} clips per job", "less_than_equal"))
    if req.steps > cfg.max_steps:
        errors.append(_error(loc("steps"), f"at most {cfg.max_steps} steps", "less_than_equal"))
    if req.duration is not None and not cfg.min_duration <= req.duration <= cfg.max_duration:
        errors.append(_error(loc("duration"), f"must be between {cfg.min_duration} and {cfg.max_duration} seconds",
                             "range"))
    if req.format not in MEDIA_TYPES:  # jobs store wav or flac; the other formats are for files and /v1/vary...
        errors.append(_error(loc("format"), f"jobs write {' or '.join(MEDIA_TYPES)}", "enum"))
    model = getattr(req, "model", None)
    if model is not None and model not in service.models:
        errors.append(_error(loc("model"), f"unknown model {model!r} (served: {', '.join(service.models)})", "enum"))
        model = None
    samplers = service.model(model).samplers
    if req.sampler is not None and req.sampler not in samplers:
        errors.append(_error(loc("sampler"), f"unknown sampler {req.sampler!r} (valid: {', '.join(samplers)})",
                             "enum"))
    if errors:
        raise RequestValidationError(errors)


def _safe(value: Any) -> Any:
    """Error locations as JSON-safe strings/ints."""
    return value if isinstance(value, (int, str)) and not isinstance(value, bool) else str(value)


async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 ``{"detail": [{"loc", "msg", "type"}], "error": "field: message; ..."}``; never echoes the input
    (it may hold NaN, which JSON cannot carry)."""
    assert isinstance(exc, RequestValidationError)
    detail = [{"loc": [_safe(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
              for e in exc.errors()]
    summary = "; ".join(f"{'.'.join(str(p) for p in d['loc'][1:] or d['loc'])}: {d['msg']}" for d in detail)
    return JSONResponse(status_code=422, content={"detail": detail, "error": summary})


async def on_unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", extra={"event": "unhandled", "path": request.url.path})
    return JSONResponse(status_code=500, content={"detail": "internal server error (logged)"})


def create_app(service: Service, manage_service: bool = True) -> FastAPI:
    """The FastAPI app around ``service``. With ``manage_service`` the app starts/stops it (lifespan)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage_service:
            service.start()
        try:
            yield
        finally:
            if manage_service:
                await asyncio.to_thread(service.stop)

    app = FastAPI(title="sampleforge", version="0.1.0", lifespan=lifespan, docs_url="/docs",
                  description="Drum one-shots from keyword prompts: submit a job, follow its progress, download audio.")
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Exception, on_unexpected_error)
    app.state.service = service

    def require_token(request: Request) -> None:
        token = service.config.token
        if not token:
            return
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
            raise HTTPException(401, "missing or wrong bearer token (Authorization: Bearer <token>)",
                                headers={"WWW-Authenticate": "Bearer"})

    public = APIRouter(tags=["health"])
    api = APIRouter(dependencies=[Depends(require_token)])

    def load(job_id: str) -> Job:
        job = service.store.get(job_id) if is_job_id(job_id) else None
        if job is None:
            raise HTTPException(404, f"no job {job_id[:64]!r}")
        return job

    def accepted(job: Job, body: dict[str, Any]) -> JSONResponse:
        return JSONResponse(status_code=202, content=body, headers={"Location": f"/v1/jobs/{job.id}"})

    def submit(req: GenerateRequest, source: str, client_ref: str | None = None) -> Job:
        try:
            return service.submit(req, source=source, client_ref=client_ref)
        except QueueFull as exc:
            wait = service.retry_after()
            raise HTTPException(429, f"{exc}; retry after {wait} s", headers={"Retry-After": str(wait)}) from None

    # ---- health, models, vocab -------------------------------------------------------------------------
    @public.get("/v1/health/live", summary="Liveness: the process answers")
    def live() -> dict[str, Any]:
        return {"live": True}

    @public.get("/v1/health", summary="Readiness: model loaded, workers alive, queue depth (503 if not ready)")
    def health() -> JSONResponse:
        body = service.health()
        return JSONResponse(status_code=200 if body["ready"] else 503, content=body)

    @api.get("/v1/models", tags=["models"], summary="The served models, their samplers and this server's limits")
    def models() -> dict[str, Any]:
        cfg = service.config
        limits = {"max_count": cfg.max_count, "max_steps": cfg.max_steps, "min_duration": cfg.min_duration,
                  "max_duration": cfg.max_duration, "max_prompt_chars": cfg.max_prompt_chars,
                  "max_batch": cfg.max_batch, "max_queue": cfg.max_queue}
        return {"default": service.generator.name, "models": [
            {**m.info(), "limits": limits, "formats": list(MEDIA_TYPES)} for m in service.models.values()]}

    @api.get("/v1/vocab", tags=["models"], summary="Keywords the model knows (with training counts) and drum classes")
    def vocab() -> dict[str, Any]:
        from sampleforge.taxonomy import CATEGORY_PROMPTS

        words = sorted(service.generator.vocab().items(), key=lambda kv: (-kv[1], kv[0]))
        return {"model": service.generator.name,
                "keywords": [{"word": w, "count": int(c)} for w, c in words],
                "classes": [{"name": k, "prompt": p, "label": k.replace("_", " ")} for k, p in CATEGORY_PROMPTS.items()]}

    # ---- jobs ----------------------------------------------------------------------------------------
    @api.post("/v1/generate", status_code=202, tags=["jobs"], summary="Queue a generation job")
    def generate(req: GenerateRequest) -> JSONResponse:
        check_limits(service, req, ("body",), {})
        job = submit(req, "generate")
        return accepted(job, job_view(job, queue_position=service.store.queue_position(job)))

    @api.post("/v1/tasks", status_code=202, tags=["tasks"], summary="Queue a job, task-service style")
    def create_task(req: TaskRequest) -> JSONResponse:
        gen = req.to_generate()
        check_limits(service, gen, ("body", "data", "params"), TASK_FIELDS)
        job = submit(gen, "task", client_ref=req.id)
        return accepted(job, task_view(job))

    @api.get("/v1/tasks/{job_id}", tags=["tasks"], summary="A task's status and, once completed, its audio URLs")
    def get_task(job_id: str) -> dict[str, Any]:
        return task_view(load(job_id))

    @api.get("/v1/jobs/{job_id}", tags=["jobs"], summary="State, progress, warnings, results of a job")
    def get_job(job_id: str) -> dict[str, Any]:
        job = load(job_id)
        return job_view(job, queue_position=service.store.queue_position(job) if job.state == "queued" else None)

    @api.delete("/v1/jobs/{job_id}", tags=["jobs"], summary="Cancel a queued/running job; delete a finished one")
    def delete_job(job_id: str) -> dict[str, Any]:
        return service.cancel_or_delete(load(job_id))

    @api.get("/v1/jobs/{job_id}/events", tags=["jobs"],
             summary="Server-sent events: `progress` while the job runs, then one `done` with the final job")
    async def job_events(job_id: str, request: Request) -> StreamingResponse:
        await asyncio.to_thread(load, job_id)
        return StreamingResponse(_events(job_id, request), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def _events(job_id: str, request: Request) -> AsyncIterator[str]:
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
            if time.monotonic() - last_sent > 15:
                last_sent = time.monotonic()
                yield ": keep-alive\n\n"
            if await request.is_disconnected():
                return
            await asyncio.sleep(0.2)

    def finished(job: Job) -> None:
        if job.state != SUCCEEDED:
            raise HTTPException(409, f"job is {job.state}; audio is available once it has succeeded")

    @api.get("/v1/jobs/{job_id}/audio/{name}", tags=["jobs"], summary="One clip: `0`, `0.wav` or `0.flac`",
             response_class=FileResponse)
    def audio(job_id: str, name: str) -> FileResponse:
        job = load(job_id)
        m = CLIP_NAME.fullmatch(name)
        if m is None:
            raise HTTPException(404, "clip names are <index>, <index>.wav or <index>.flac")
        finished(job)
        index, ext, fmt = int(m[1]), m[2], job.params["format"]
        if index >= len(job.results):
            raise HTTPException(404, f"job has {len(job.results)} clips (0..{len(job.results) - 1})")
        if ext is not None and ext != fmt:
            raise HTTPException(404, f"this job's clips are .{fmt}")
        path = service.storage.clip_path(job.id, index, fmt)
        if not path.exists():
            raise HTTPException(410, "the audio file is gone (deleted or expired)")
        return FileResponse(path, media_type=MEDIA_TYPES[fmt], filename=download_name(job, index),
                            content_disposition_type="inline")

    @api.get("/v1/jobs/{job_id}/pack.zip", tags=["jobs"], summary="Every clip of a job (+ job.json) in one zip",
             response_class=Response)
    def pack(job_id: str) -> Response:
        job = load(job_id)
        finished(job)
        fmt = job.params["format"]
        files = [(service.storage.clip_path(job.id, r["index"], fmt), download_name(job, r["index"]))
                 for r in job.results]
        if not all(p.exists() for p, _ in files):
            raise HTTPException(410, "the audio files are gone (deleted or expired)")
        data = service.storage.pack(job.id, files)
        return Response(data, media_type="application/zip",
                        headers={"Content-Disposition": f'attachment; filename="{download_name(job)}"'})

    # ---- the web page --------------------------------------------------------------------------------
    @public.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.include_router(public)
    app.include_router(api)
    app.include_router(workflow_router, dependencies=[Depends(require_token)])
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(BodyLimit, max_bytes=service.config.max_body_bytes, upload_paths=UPLOAD_PATHS,
                       upload_max_bytes=service.config.max_upload_bytes)
    app.add_middleware(RequestLog)
    return app

