"""What the route modules share: the service, the route class (HEAD, the strict read of
JSON bodies), job lookup, submission and limits."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect
from starlette.routing import Match
from starlette.types import Message, Receive, Scope, Send

from sampleforge.audio.finish import parse_length
from sampleforge.params import SPECS
from sampleforge.serve.config import ServeConfig
from sampleforge.serve.job import Job
from sampleforge.serve.jobstore import QueueFull
from sampleforge.serve.results import is_job_id
from sampleforge.serve.schemas import GenerateRequest
from sampleforge.serve.service import Service


def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


ServiceDep = Annotated[Service, Depends(get_service)]


class _Object(dict[str, Any]):
    """A JSON object as read, with the keys it gives more than once."""

    twice: tuple[str, ...] = ()


def _object(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object(pairs)
    if len(obj) < len(pairs):
        obj.twice = tuple(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)
    return obj


_TOO_LONG = object()  # an integer literal longer than Python reads (sys.get_int_max_str_digits())


def _integer(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        return _TOO_LONG


MAX_DEPTH = 100  # arrays and objects inside each other: far more than any request holds, far less than Python reads


UNREAD = object()  # a body json.loads refuses (malformed): FastAPI's own read reports where it breaks


def read_json(body: bytes) -> tuple[Any, list[dict[str, Any]]]:
    """``body`` read as JSON strictly: ``(value, [])``, or the 422 error items of what ``json.loads`` would read
    without a word or refuse naming nothing: a key given twice (it keeps the last value), an integer too long
    to read, bytes that are not UTF-8 and arrays or objects nested more than MAX_DEPTH deep (the last three a
    bare 400). Malformed JSON is ``(UNREAD, [])``."""
    too_deep = [_error(("body",), f"nested too deeply (more than {MAX_DEPTH} arrays or objects inside each other)",
                       "json_invalid")]
    try:
        value = json.loads(body, object_pairs_hook=_object, parse_int=_integer)
    except UnicodeDecodeError as exc:
        return UNREAD, [_error(("body",), f"not UTF-8 text (byte {exc.start} is {body[exc.start:exc.start + 1]!r})",
                               "json_invalid")]
    except RecursionError:  # deeper than json.loads recurses
        return UNREAD, too_deep
    except ValueError:
        return UNREAD, []
    errors: list[dict[str, Any]] = []
    todo: list[tuple[Any, tuple[str | int, ...]]] = [(value, ("body",))]
    while todo:  # not recursive: the body may nest as deep as json.loads goes
        item, loc = todo.pop()
        if isinstance(item, dict | list) and len(loc) > MAX_DEPTH:  # loc: "body", then one step per level
            return UNREAD, too_deep
        if isinstance(item, _Object):
            errors += [_error((*loc, k), "given twice (each key once per object)", "duplicate_key") for k in item.twice]
            todo += [(v, (*loc, k)) for k, v in item.items()]
        elif isinstance(item, list):
            todo += [(v, (*loc, i)) for i, v in enumerate(item)]
        elif item is _TOO_LONG:
            errors.append(_error(loc, f"an integer of more than {sys.get_int_max_str_digits()} digits", "int_parsing"))
    return value, errors


def _json_body(request: Request) -> bool:
    """Whether the route reads ``request``'s body as JSON (application/json or application/*+json)."""
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


_HEAD = "sampleforge.head"  # scope key: a HEAD request that runs a GET route


def _headers_only(send: Send) -> Send:
    """``send`` with every body part emptied: the status and headers (Content-Length included) go out as they are."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.body":
            message = {"type": "http.response.body", "body": b"", "more_body": message.get("more_body", False)}
        await send(message)

    return sending


_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def _allowed(scope: Scope) -> str:
    """The methods the app answers at this request's path (a 405's ``Allow``): HEAD wherever GET is, and the
    methods of the path's other routes (``/v1/jobs/{id}``: GET and DELETE are two routes)."""
    routes = scope["app"].router.routes
    return ", ".join(m for m in _METHODS
                     if any(r.matches({**scope, "method": m})[0] == Match.FULL for r in routes))


class ApiRoute(APIRoute):
    """A route that answers ``HEAD`` as it answers ``GET``, without the body: same status and headers (uptime
    checkers and proxies probe with HEAD). An event stream is not started: its headers alone are sent."""

    def _head(self, scope: Scope) -> bool:
        return scope["type"] == "http" and scope["method"] == "HEAD" and "GET" in (self.methods or ())

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        return super().matches({**scope, "method": "GET"} if self._head(scope) else scope)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._head(scope):  # the GET route runs, told it is a HEAD; errors (404...) lose their body too
            await super().handle({**scope, "method": "GET", _HEAD: True}, receive, _headers_only(send))
        elif scope["type"] == "http" and self.methods and scope["method"] not in self.methods and "app" in scope:
            raise HTTPException(status_code=405, headers={"Allow": _allowed(scope)})
        else:
            await super().handle(scope, receive, send)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def answer(request: Request) -> Response:
            response = await handle(request)
            if request.scope.get(_HEAD) and isinstance(response, StreamingResponse):
                close = getattr(response.body_iterator, "aclose", None)
                if close is not None:
                    await close()  # never started
                head = Response(status_code=response.status_code)
                head.raw_headers = response.raw_headers
                return head
            return response

        return answer


class _ReadRequest(Request):
    """A request whose JSON body is read and parsed: FastAPI takes the body from ``body()`` and ``json()``."""

    def __init__(self, request: Request, body: bytes, value: Any) -> None:
        super().__init__(request.scope, request.receive)
        self._read, self._value = body, value

    async def body(self) -> bytes:
        return self._read

    async def json(self) -> Any:
        return self._value


class JsonBodyRoute(ApiRoute):
    """A route that reads its JSON body strictly first (``read_json``: a 422 naming the field) and hands the parsed
    body on to the route (read once)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def checked(request: Request) -> Response:
            if _json_body(request):
                try:
                    body = await request.body()
                except ClientDisconnect:  # gone, or refused by BodyGuard (413, 408): the route's read says so
                    return await handle(request)
                value, errors = read_json(body) if body else (UNREAD, [])
                if errors:
                    raise RequestValidationError(errors)
                if value is not UNREAD:
                    request = _ReadRequest(request, body, value)
            return await handle(request)

        return checked


def load_job(service: Service, job_id: str) -> Job:
    """The job, or 404 (anything but a known job id, including malformed ones, and a finished job past its TTL,
    which the next sweep deletes: expired results are not served in the meantime)."""
    job = service.store.get(job_id) if is_job_id(job_id) else None
    if job is None:
        raise HTTPException(404, f"no job {job_id[:64]!r}")
    if job.finished_at is not None and job.finished_at + job.ttl_s <= time.time():
        raise HTTPException(404, f"no job {job_id[:64]!r} (its results expired)")
    return job


def submit(service: Service, req: GenerateRequest, source: str, client_ref: str | None = None) -> Job:
    """Queue a generation job: 429 with Retry-After when the queue is full (503 when storage refuses: see app.py)."""
    return queue_full_is_429(service, lambda: service.submit(req, source=source, client_ref=client_ref))


def queue_full_is_429(service: Service, enqueue: Callable[[], Job]) -> Job:
    """``enqueue()``, or 429 with Retry-After when the queue is full."""
    try:
        return enqueue()
    except QueueFull as exc:
        wait = service.retry_after()
        raise HTTPException(429, f"{exc}; retry after {wait} s", headers={"Retry-After": str(wait)}) from None


def accepted(job: Job, body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(status_code=202, content=body, headers={"Location": f"/v1/jobs/{job.id}"})


def _error(loc: tuple[str | int, ...], msg: str, kind: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": kind}


def unknown_model(service: Service, model: str | None, loc: tuple[str, ...]) -> dict[str, Any] | None:
    """The 422 error item for a ``model`` this server does not serve (None: it does, or none was named)."""
    if model is None or model in service.models:
        return None
    return _error(loc, f"unknown model {model!r} (served: {', '.join(service.models)})", "enum")


WORKFLOW_PATHS = ("/v1/vary", "/v1/morph", "/v1/kit", "/v1/kit/pad")  # their clip limit is per request, not per job


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _above(limit: float) -> Callable[[Any], bool]:
    return lambda v: _number(v) and v > limit


def server_limits(cfg: ServeConfig, path: str) -> dict[str, tuple[Callable[[Any], bool], str]]:
    """This server's limits on the settings the schema also bounds, worded as the routes word them: setting ->
    (does a value break it?, the message). A schema bound is the product's widest (1000 clips); a client needs
    to hear this server's (16)."""
    clips = cfg.max_count * 4 if path in WORKFLOW_PATHS else cfg.max_count
    low, high = cfg.min_duration, cfg.max_duration
    return {
        "count": (_above(clips), f"at most {clips} clips per {'request' if path in WORKFLOW_PATHS else 'job'}"),
        "morph_steps": (_above(cfg.max_count * 4), f"at most {cfg.max_count * 4} clips per request"),
        "steps": (_above(cfg.max_steps), f"at most {cfg.max_steps} steps"),
        "duration": (lambda v: _number(v) and not low <= v <= high,
                     f"must be between {low} and {high} seconds"),
        "prompt": (lambda v: isinstance(v, str) and len(v) > cfg.max_prompt_chars,
                   f"at most {cfg.max_prompt_chars} characters"),
    }


def server_message(service: Service | None, path: str, loc: tuple[Any, ...], value: Any) -> str | None:
    """The message of this server's own limit when a value the schema refused also breaks it, or is not a number at
    all (``loc`` as the client sent it: a task's params carry task-API names); None when the error is about
    something else."""
    if service is None or len(loc) < 2 or loc[0] != "body":
        return None
    from sampleforge.serve.schemas import TASK_FIELDS

    field = str(loc[-1])
    setting = {task: name for name, task in TASK_FIELDS.items()}.get(field, field) if path == "/v1/tasks" else field
    breaks, message = server_limits(service.config, path).get(setting, (lambda v: False, ""))
    if breaks(value):
        return message
    spec = SPECS.get(setting)  # a value of another type ('4', true): said with this server's bound, not the schema's
    if message and spec is not None and spec.kind in (int, float) and value is not None and not _number(value):
        what = "an integer" if spec.kind is int else "a number"
        return f"must be {what} ({message.removeprefix('must be ')}), got {repr(value)[:40]}"
    return None


def check_limits(service: Service, req: GenerateRequest, loc: Callable[[str], tuple[str, ...]]) -> None:
    """This server's limits (beyond the schema's static bounds): 422 naming each offending field.

    ``loc(field)``: where the client sent ``field`` (e.g. ``("body", "data", "params", "diffusionSteps")``)."""
    cfg, errors = service.config, []
    said = {name: message for name, (_, message) in server_limits(cfg, "").items()}
    if len(req.prompt) > cfg.max_prompt_chars:
        errors.append(_error(loc("prompt"), said["prompt"], "string_too_long"))
    if req.count > cfg.max_count:
        errors.append(_error(loc("count"), said["count"], "less_than_equal"))
    if req.steps is not None and req.steps > cfg.max_steps:  # a model's own steps are capped at the limit
        errors.append(_error(loc("steps"), said["steps"], "less_than_equal"))
    if req.duration is not None and not cfg.min_duration <= req.duration <= cfg.max_duration:
        errors.append(_error(loc("duration"), said["duration"], "range"))
    length = parse_length(req.length)
    if isinstance(length, float) and length > cfg.max_duration:
        errors.append(_error(loc("length"), f"must be 'auto' or at most {cfg.max_duration} seconds", "range"))
    model = getattr(req, "model", None)
    unknown = unknown_model(service, model, loc("model"))
    if unknown is not None:
        errors.append(unknown)
        model = None
    samplers = service.model(model).samplers
    if req.sampler is not None and req.sampler not in samplers:
        errors.append(_error(loc("sampler"), f"unknown sampler {req.sampler!r} (valid: {', '.join(samplers)})",
                             "enum"))
    if errors:
        raise RequestValidationError(errors)
