"""The HTTP API (FastAPI): the app, its error handlers and middleware. The routes are in routes/.

Auth policy (when a token is set): every ``/v1/*`` route needs ``Authorization: Bearer <token>``
except ``/v1/health`` and ``/v1/health/live`` (load balancers and probes; they expose no job data).
The web page (``/``, ``/static/*``) and the API docs (``/docs``, ``/openapi.json``) stay public: they
hold no data, and the page asks for the token when the API answers 401. The token is checked first (middleware
``BearerToken``): a request without it is a 401 whatever its body, size or fields.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from sampleforge.serve.logs import error_ref
from sampleforge.serve.middleware import BearerToken, BodyGuard, RequestLog, error_body
from sampleforge.serve.routes import api_routers, needs_token
from sampleforge.serve.routes.common import server_message
from sampleforge.serve.routes.page import STATIC
from sampleforge.serve.routes.workflow import UPLOAD_PATHS
from sampleforge.serve.service import Service, StorageUnavailable

log = logging.getLogger("sampleforge.serve")
STORAGE_RETRY_AFTER_S = 5


def _safe(value: Any) -> Any:
    """Error locations and messages as JSON-safe strings/ints (half a UTF-16 pair, which a JSON key may escape,
    becomes '?': UTF-8 cannot carry it)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return str(value).encode("utf-8", "replace").decode("utf-8")


async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 ``{"detail": [{"loc", "msg", "type"}], "error": "field: message; ..."}``; never echoes the input
    (it may hold NaN, which JSON cannot carry). A schema bound that this server narrows is said as this server's
    limit (``count``: "at most 16 clips per job", not the schema's 1000)."""
    assert isinstance(exc, RequestValidationError)
    json_sent = "json" in request.headers.get("content-type", "").lower()
    service = getattr(request.app.state, "service", None)
    detail = [{"loc": [_safe(p) for p in e.get("loc", ())],
               "msg": _safe(server_message(service, request.url.path, tuple(e.get("loc", ())), e.get("input"))
                            or _message(e, json_sent)),
               "type": str(e.get("type", ""))} for e in exc.errors()]
    summary = "; ".join(f"{_where(d)}: {d['msg']}" for d in detail)
    return JSONResponse(status_code=422, content={"detail": detail, "error": summary})


def _message(error: dict[str, Any], json_sent: bool = True) -> str:
    """An error's message; malformed JSON also says why and where (FastAPI gives the character in ``loc``), and a
    body sent as another type than JSON (curl -d sends a form) which header to send."""
    msg = str(error.get("msg", "")).removeprefix("Value error, ")  # pydantic's words around our own message
    loc = tuple(error.get("loc", ()))
    if loc and msg.startswith(f"{loc[-1]} "):  # "steps: steps must be ..." -> "steps: must be ..."
        msg = msg[len(f"{loc[-1]} "):]
    if not json_sent and tuple(error.get("loc", ())) == ("body",):
        return "the body must be a JSON object sent with Content-Type: application/json"
    if error.get("type") == "json_invalid" and len(error.get("loc", ())) == 2:
        why = (error.get("ctx") or {}).get("error")
        msg = f"not valid JSON at character {error['loc'][1]}" + (f": {why}" if why else "")
    return msg


def _where(d: dict[str, Any]) -> str:
    """The field an error names, dotted ("pad_seeds.kick"); the body itself for malformed JSON."""
    if d["type"] == "json_invalid":
        return "body"
    return ".".join(str(p) for p in d["loc"][1:] or d["loc"])


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """An error that names no field (``middleware.error_body``)."""
    return JSONResponse(status_code=status, content=error_body(message), headers=headers)


async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
    """A route's HTTPException (404, 405, 409, ...) with ``error`` beside its ``detail``."""
    assert isinstance(exc, StarletteHTTPException)
    if not isinstance(exc.detail, str):
        return JSONResponse(status_code=exc.status_code, content={"detail": exc.detail}, headers=exc.headers)
    return error_response(exc.status_code, exc.detail, exc.headers)


async def on_storage_unavailable(request: Request, exc: Exception) -> JSONResponse:
    """503 with Retry-After: the job database refuses writes (disk full, read-only); nothing was accepted."""
    return error_response(503, str(exc), {"Retry-After": str(STORAGE_RETRY_AFTER_S)})


async def on_unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    """500 naming nothing of the error but a reference; the log holds its traceback under that reference."""
    ref = error_ref()
    log.error("unhandled error", exc_info=exc, extra={"event": "unhandled", "path": request.url.path, "ref": ref})
    return error_response(500, f"internal server error (ref {ref}; logged)")


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
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(StorageUnavailable, on_storage_unavailable)
    app.add_exception_handler(Exception, on_unexpected_error)
    app.state.service = service
    for router in api_routers():
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(BodyGuard, max_bytes=service.config.max_body_bytes, timeout_s=service.config.body_timeout_s,
                       upload_paths=UPLOAD_PATHS, upload_max_bytes=service.config.max_upload_bytes)
    app.add_middleware(BearerToken, token=service.config.token, needs_token=needs_token)  # before BodyGuard
    app.add_middleware(RequestLog)
    return app
