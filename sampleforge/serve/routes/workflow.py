"""HTTP routes of the producer's workflow: variations (``POST /v1/vary``), morphs (``POST /v1/morph``), kit
pads (``POST /v1/kit/pad``) and whole kits (``POST /v1/kit``), plus the pieces a kit can hold.

Each POST checks its request (422 naming the field) and queues a job in the same queue and result store as
generation: ``202`` with the job (``/v1/jobs/{id}``: state, progress, then ``results`` with one audio URL per
file, and ``pack.zip``); it survives a restart like any job (operations.py runs it). A request runs on the
served model it names in ``model`` (default: the server's first), which must be a sampleforge model (they
encode audio into its latents). Input clips come as base64 in ``audio`` / ``from_audio`` / ``to_audio`` (any
WAV, FLAC, AIFF or OGG; up to ``max_upload_bytes`` per request) and are stored with the job. A kit pad and
the kit made with the same prompt, seed and ``pad_seeds`` hold the same sounds.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import soundfile as sf
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, Field, StrictInt, create_model
from pydantic.fields import FieldInfo

from sampleforge.audio.finish import parse_length
from sampleforge.audio.io import read_audio
from sampleforge.errors import AudioReadError, ParamError, UserInputError
from sampleforge.kit.pieces import DEFAULT_PIECES, KIT_DEFAULTS, PIECES
from sampleforge.params import DEFAULTS, MAX_SEED, SPECS, GenerationParams
from sampleforge.pipeline import morph_seeds
from sampleforge.serve.job import QUEUED, Job
from sampleforge.serve.results import new_job_id
from sampleforge.serve.routes.common import JsonBodyRoute, accepted, queue_full_is_429, server_limits
from sampleforge.serve.schemas import StrictRequest, blank_errors, derived_field
from sampleforge.serve.views import job_view

UPLOAD_PATHS = ("/v1/vary", "/v1/morph")
# an uploaded clip, by its header, before it is decoded: a few KB of FLAC, or a WAV at 1 Hz, can decode or resample
# to GBs (a job uses the clip's first `duration` seconds)
MAX_UPLOAD_SECONDS = 60.0
MAX_UPLOAD_VALUES = 16_000_000  # samples over all channels (64 MB as float32): 60 s of 96 kHz stereo
_UNSET: Any = object()

router = APIRouter(tags=["workflow"], route_class=JsonBodyRoute)


# the settings each route takes (GenerationParams fields: names, bounds, defaults and help derive from there)
SAMPLING = ("model", "steps", "cfg_scale", "sampler", "format", "length", "decay", "brightness", "weight", "punch")
VARY = ("prompt", "strength", "fit_steps", "count", "seed", *SAMPLING)
MORPH = ("morph_steps", "strength", "fit_steps", *SAMPLING)
KIT = ("prompt", "relatedness", "candidates", *SAMPLING)
# a kit's prompt is optional: each piece adds its own class words, so an empty one is a plain kit
KIT_HELP = {"prompt": "the kit's character, e.g. 'dusty 808'; may be empty: each piece adds its own words ('kick', "
                      "'closed hat')"}


def _setting(name: str, default: Any = _UNSET, help: str | None = None) -> tuple[Any, Any]:
    """One request field for setting ``name`` (optionally another default or help); length and pieces also take
    their JSON shapes (a number of seconds, a list of pieces)."""
    annotation, info = derived_field(SPECS[name])
    if name == "length":
        annotation = Annotated[str | float | None, AfterValidator(SPECS[name].check)]
    elif name == "pieces":
        annotation = Annotated[str | list[str] | None, AfterValidator(SPECS[name].check)]
    changed = {**({"default": default} if default is not _UNSET else {}), **({"description": help} if help else {})}
    if changed:  # a new FieldInfo: pydantic builds the model from the attributes a field was made with
        info = FieldInfo.merge_field_infos(info, **changed)
    return annotation, info


def _model(model_name: str, doc: str, settings: tuple[str, ...], defaults: dict[str, Any] | None = None,
           base: type[BaseModel] = StrictRequest, helps: dict[str, str] | None = None, **fields: Any) -> Any:
    made: dict[str, Any] = {s: _setting(s, (defaults or {}).get(s, _UNSET), (helps or {}).get(s)) for s in settings}
    return create_model(model_name, __base__=base, __doc__=doc, **made, **fields)  # type: ignore[call-overload]


class _Params(StrictRequest):
    """A request whose settings fields are made at import time from the ``GenerationParams`` declarations."""

    if TYPE_CHECKING:  # the derived fields are invisible to a type checker: they read as Any

        def __getattr__(self, name: str) -> Any: ...

    def params(self, settings: tuple[str, ...], base: GenerationParams = DEFAULTS) -> GenerationParams:
        """The request's settings as GenerationParams (over ``base``); 422 naming the field a setting that each
        field's own check passed breaks with another (a seed without room for its count of clips)."""
        try:
            return GenerationParams.from_kwargs({s: getattr(self, s) for s in settings}, base=base)
        except ParamError as exc:
            raise _invalid(exc.name, str(exc)) from None


if TYPE_CHECKING:
    VaryRequest = _Params
    MorphRequest = _Params
    PadRequest = _Params
    KitRequest = _Params
else:
    _AUDIO = Field(min_length=1, description="a clip, base64 (WAV, FLAC, AIFF or OGG; a data: URL prefix is allowed)")
    VaryRequest = _model(
        "VaryRequest", "Variations of one clip.", VARY, base=_Params, audio=(str, _AUDIO))
    MorphRequest = _model(
        "MorphRequest", "From one prompt/seed (or clip) to another.", MORPH, base=_Params,
        from_prompt=(str, Field("", max_length=2000, description="the first end's keywords; needed unless both "
                                                                 "ends are clips (then they steer them)")),
        to_prompt=(str, Field("", max_length=2000, description="the last end's keywords; needed unless both ends "
                                                               "are clips")),
        from_seed=(int | None, Field(None, ge=0, le=MAX_SEED, description="random if omitted")),
        to_seed=(int | None, Field(None, ge=0, le=MAX_SEED, description="default: from_seed + 1")),
        from_audio=(str | None, Field(None, min_length=1, description="a clip (base64) as the first end; needs "
                                                                     "to_audio")),
        to_audio=(str | None, Field(None, min_length=1, description="a clip (base64) as the last end")))
    PadRequest = _model(
        "PadRequest", "One pad of a kit (to audition or re-roll it).", KIT,
        {"format": "wav16", "length": "auto"}, base=_Params, helps=KIT_HELP,
        piece=(str, Field(description=f"one of {', '.join(PIECES)}")),
        seed=(int, Field(ge=0, le=MAX_SEED, description="the kit's seed (its shared noise)")),
        pad_seed=(int | None, Field(None, ge=0, le=MAX_SEED, description="the pad's own noise; random if omitted")))
    KitRequest = _model(
        "KitRequest", "A whole kit as a zip (samples + SFZ + Decent Sampler + Hydrogen + GM map + kit.json).",
        (*KIT, "seed", "pieces", "round_robins", "velocity_layers"), {"format": "wav24", "length": "auto"},
        base=_Params, helps=KIT_HELP,
        pad_seeds=(dict[str, StrictInt], Field(default_factory=dict, description="{piece: seed} from the pads you kept")),
        name=(str | None, Field(None, max_length=60, description="the kit's name, shown by its presets; its folder "
                                                                  "and zip are named by it made file-name safe "
                                                                  "('Dusty Kit': dusty_kit); default: from the "
                                                                  "prompt")))


def _invalid(field: str, msg: str, kind: str = "value_error") -> RequestValidationError:
    return RequestValidationError([{"loc": ("body", field), "msg": msg, "type": kind}])


def _generator(request: Request, name: str | None) -> Any:
    """The served model called ``name`` (None: the default one); 422 naming ``model`` when it is not served or
    cannot run the workflow (only sampleforge models encode audio and take a start noise)."""
    service = request.app.state.service
    if name is not None and name not in service.models:
        raise _invalid("model", f"unknown model {name!r} (served: {', '.join(service.models)})", "enum")
    served = service.model(name)
    if not all(hasattr(served.generator, m) for m in ("vary", "morph", "render")):
        raise _invalid("model", f"model {served.name!r} ({getattr(served.generator, 'kind', 'other')}) does not "
                       "make variations, morphs or kits; use a sampleforge model")
    return served


def _limits(request: Request, p: GenerationParams, clips: int, prompts: dict[str, str],
            clips_field: str = "count") -> None:
    """This server's limits (they only narrow GenerationParams'): 422 naming the field; ``clips`` is how many clips
    the request makes, set by ``clips_field``."""
    service = request.app.state.service
    cfg = service.config
    said = {name: message for name, (_, message) in server_limits(cfg, request.url.path).items()}
    samplers = _generator(request, p.model).samplers
    if p.steps is not None and p.steps > cfg.max_steps:
        raise _invalid("steps", said["steps"], "less_than_equal")
    if clips > cfg.max_count * 4:
        made = " (pieces x round_robins x velocity_layers)" if clips_field == "pieces" else ""
        raise _invalid(clips_field, f"{said['count']}{made}, asked for {clips}", "less_than_equal")
    if p.sampler is not None and p.sampler not in samplers:
        raise _invalid("sampler", f"unknown sampler {p.sampler!r} (valid: {', '.join(samplers)})", "enum")
    length = parse_length(p.length)
    if isinstance(length, float) and length > cfg.max_duration:
        raise _invalid("length", f"must be 'auto' or at most {cfg.max_duration} seconds", "range")
    for field, text in prompts.items():
        if len(text) > cfg.max_prompt_chars:
            raise _invalid(field, said["prompt"], "string_too_long")


def _decode(field: str, data: str, sample_rate: int) -> tuple[np.ndarray, str]:
    """A base64 clip -> (T,) float32 at ``sample_rate`` and the ``input_sha256`` of its bytes (as ``sampleforge
    vary`` records a file's); 422 naming ``field`` when it is not audio."""
    from sampleforge.workflow import input_sha256

    try:
        raw = base64.b64decode(data.split(",", 1)[-1], validate=True)  # a data: URL prefix is allowed
    except (binascii.Error, ValueError):
        raise _invalid(field, "not valid base64") from None
    with tempfile.TemporaryDirectory(prefix="sampleforge-upload-") as tmp:
        path = Path(tmp) / "input"
        path.write_bytes(raw)
        _check_size(field, path)
        try:
            wav = read_audio(path, sample_rate)
        except AudioReadError as exc:  # its message names the temporary file, maybe more than once: not the client's
            why = str(exc).split(": ", 1)[-1].replace(f"'{path}'", "the clip").replace(str(path), "the clip")
            raise _invalid(field, f"not readable audio ({why})") from None
        digest = input_sha256(path)
    if float(np.abs(wav).max()) < 1e-4:
        raise _invalid(field, "silent (peak below -80 dBFS)")
    return wav, digest


def _check_size(field: str, path: Path) -> None:
    """422 naming ``field`` when the clip at ``path`` says it is longer than an upload may be (a header that cannot
    be read is left to read_audio, which says why)."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, ValueError):
        return
    seconds = info.frames / info.samplerate if info.samplerate > 0 else float("inf")
    if seconds > MAX_UPLOAD_SECONDS or info.frames * info.channels > MAX_UPLOAD_VALUES:
        raise _invalid(field, f"{seconds:.4g} s of {info.channels}-channel audio at {info.samplerate} Hz; at most "
                       f"{MAX_UPLOAD_SECONDS:g} s and {MAX_UPLOAD_VALUES} samples over all channels", "too_long")


def _checked(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(...)``, a UserInputError turned into a 422 naming the field its message starts with."""
    try:
        return fn(*args, **kwargs)
    except UserInputError as exc:
        msg = str(exc)
        field = re.match(r"[a-z_]+", msg)
        raise _invalid(field.group(0) if field else "body", msg) from None


def _queue(request: Request, operation: str, p: GenerationParams, prompt: str,
           inputs: dict[str, np.ndarray] | None = None, **fields: Any) -> JSONResponse:
    """Queue a workflow job (``operation`` with settings ``p`` and the operation's ``fields``): 202 with its view
    (429 when the queue is full, 503 when storage refuses)."""
    service = request.app.state.service
    served = _generator(request, p.model)
    if p.steps is None:  # the model's own, within this server's --max-steps
        p = dataclasses.replace(p, steps=served.default_steps)
    _checked(served.generator.settings, p, {})  # what the model itself refuses, before the job is accepted
    stored = {k: v for k, v in dataclasses.asdict(p).items() if v != getattr(DEFAULTS, k)}
    job = Job(id=new_job_id(), state=QUEUED, model=served.name, prompt=prompt, params=p,
              ttl_s=service.config.ttl_seconds, created_at=time.time(), seed=p.seed, source="workflow",
              request={"operation": operation, "settings": stored, **fields})
    job = queue_full_is_429(service, lambda: service.enqueue(job, inputs))
    return accepted(job, job_view(job, queue_position=service.store.queue_position(job)))


ACCEPTED: dict[int | str, dict[str, Any]] = {202: {"description": "queued: follow `Location` (`/v1/jobs/{id}`), then download `results[].url` "
                  "or `urls.pack`"}}


@router.post("/v1/vary", status_code=202, responses=ACCEPTED,
             summary="Queue variations of an uploaded clip (audio-to-audio)")
def vary(req: VaryRequest, request: Request) -> JSONResponse:
    p = req.params(VARY).with_seed()
    _limits(request, p, p.count, {"prompt": p.prompt})
    wav, digest = _decode("audio", req.audio, _generator(request, p.model).generator.sample_rate)
    return _queue(request, "vary", p, p.prompt, {"audio": wav}, input_sha256={"audio": digest})


@router.post("/v1/morph", status_code=202, responses=ACCEPTED,
             summary="Queue a morph between two prompts/seeds or two uploaded clips")
def morph(req: MorphRequest, request: Request) -> JSONResponse:
    p = req.params(MORPH).with_seed()
    _limits(request, p, p.morph_steps, {"from_prompt": req.from_prompt, "to_prompt": req.to_prompt}, "morph_steps")
    rate = _generator(request, p.model).generator.sample_rate
    if (req.from_audio is None) != (req.to_audio is None):
        raise _invalid("to_audio" if req.to_audio is None else "from_audio", "give a clip for both ends or neither")
    blank = blank_errors({"from_prompt": req.from_prompt, "to_prompt": req.to_prompt}) if req.from_audio is None else []
    if blank:  # each end is made from its prompt, as /v1/generate makes it (with clips a prompt only steers them)
        raise RequestValidationError(blank)
    clips = {"from_audio": _decode("from_audio", req.from_audio, rate),
             "to_audio": _decode("to_audio", req.to_audio, rate)} if req.from_audio else {}
    a, b = morph_seeds(req.from_seed, req.to_seed, int(p.seed or 0))  # with_seed() set p.seed
    digests = {"input_sha256": {field: digest for field, (_, digest) in clips.items()}} if clips else {}
    return _queue(request, "morph", p, f"{req.from_prompt} -> {req.to_prompt}",
                  {field: wav for field, (wav, _) in clips.items()} or None, from_prompt=req.from_prompt,
                  to_prompt=req.to_prompt, from_seed=a, to_seed=b, clips=bool(clips), **digests)


@router.get("/v1/kit/pieces", summary="The pieces a kit can hold (GM notes) and the default set")
def kit_pieces() -> dict[str, Any]:
    return {"pieces": [{"name": p.name, "label": p.label, "note": p.note, "class": p.category}
                       for p in PIECES.values()],
            "default": list(DEFAULT_PIECES), "max_round_robins": SPECS["round_robins"].le,
            "max_velocity_layers": SPECS["velocity_layers"].le}


@router.post("/v1/kit/pad", status_code=202, responses=ACCEPTED,
             summary="Queue one pad of a kit: audition it, or re-roll it with another pad_seed")
def kit_pad(req: PadRequest, request: Request) -> JSONResponse:
    if req.piece not in PIECES:
        raise _invalid("piece", f"unknown piece {req.piece!r} (valid: {', '.join(PIECES)})", "enum")
    p = dataclasses.replace(req.params(KIT, KIT_DEFAULTS), seed=req.seed, pieces=req.piece)
    _limits(request, p, 1, {"prompt": p.prompt})
    pad_seed = req.pad_seed if req.pad_seed is not None else int(np.random.default_rng().integers(MAX_SEED))
    return _queue(request, "pad", p, p.prompt, piece=req.piece, pad_seed=pad_seed)


@router.post("/v1/kit", status_code=202, responses=ACCEPTED,
             summary="Queue a whole kit: samples, SFZ, Decent Sampler, Hydrogen, GM map, kit.json (its pack.zip)")
def kit_zip(req: KitRequest, request: Request) -> JSONResponse:
    from sampleforge.kit.build import character, slug
    from sampleforge.kit.pieces import parse_pieces
    from sampleforge.kit.writers import check_name

    p = req.params((*KIT, "seed", "pieces", "round_robins", "velocity_layers"), KIT_DEFAULTS).with_seed()
    names = parse_pieces(p.pieces)
    _limits(request, p, len(names) * p.round_robins * p.velocity_layers, {"prompt": p.prompt}, "pieces")
    for piece, value in req.pad_seeds.items():
        if piece not in names:
            raise _invalid("pad_seeds", f"{piece!r} is not a piece of this kit ({', '.join(names)})")
        if not 0 <= value <= MAX_SEED:
            raise _invalid("pad_seeds", f"{piece}: a seed is 0 to {MAX_SEED}, got {value}", "range")
    if req.name:  # shown by the presets as given, so it is one line, as the command line's --name
        _checked(check_name, req.name)
    folder = slug(req.name or character(p.prompt) or p.prompt)  # the only part of the name that becomes a path
    return _queue(request, "kit", p, p.prompt, pad_seeds=req.pad_seeds, name=folder, kit_name=req.name or None)
