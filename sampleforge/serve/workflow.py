"""HTTP routes of the producer's workflow: variations (``POST /v1/vary``), morphs (``POST /v1/morph``), kit
pads (``POST /v1/kit/pad``) and whole kits as a zip (``POST /v1/kit``).

They answer directly (no job queue): a request runs on the served model it names in ``model`` (default: the
server's first), which must be a sampleforge model (they encode audio into its latents); one workflow request at a time
(others wait up to ``WAIT_SECONDS``, then 429). Audio goes both ways as base64 in JSON: input clips in
``audio`` / ``from_audio`` / ``to_audio`` (any WAV, FLAC, AIFF or OGG; up to ``max_upload_bytes`` per
request), results as ``{"data": base64, "media_type", "name", ...}`` with their provenance.
A kit pad and the kit zip made with the same prompt, seed and ``pad_seeds`` hold the same sounds.
"""

from __future__ import annotations

import base64
import binascii
import copy
import dataclasses
import re
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from fastapi import APIRouter, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model

from sampleforge.audio.finish import apply_length, parse_length
from sampleforge.audio.io import FORMATS, read_audio, write_audio
from sampleforge.errors import AudioReadError, UserInputError
from sampleforge.kit.pieces import DEFAULT_PIECES, KIT_DEFAULTS, PIECES
from sampleforge.params import DEFAULTS, MAX_SEED, SPECS, GenerationParams
from sampleforge.serve.schemas import _field as derived_field

WAIT_SECONDS = 60.0
UPLOAD_PATHS = ("/v1/vary", "/v1/morph")
MEDIA = {"wav": "audio/wav", "flac": "audio/flac"}
_UNSET: Any = object()

router = APIRouter(tags=["workflow"])
_busy = threading.Semaphore(1)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_strip_whitespace=True)


# the settings each route takes (GenerationParams fields: names, bounds, defaults and help derive from there)
SAMPLING = ("model", "steps", "cfg_scale", "sampler", "format", "length", "decay", "brightness", "weight", "punch")
VARY = ("prompt", "strength", "count", "seed", *SAMPLING)
MORPH = ("morph_steps", "strength", *SAMPLING)
KIT = ("prompt", "relatedness", *SAMPLING)


def _setting(name: str, default: Any = _UNSET) -> tuple[Any, Any]:
    """One request field for setting ``name`` (optionally another default); length and pieces also take their
    JSON shapes (a number of seconds, a list of pieces)."""
    annotation, info = derived_field(SPECS[name])
    if name == "length":
        annotation = Annotated[str | float | None, AfterValidator(SPECS[name].check)]
    elif name == "pieces":
        annotation = Annotated[str | list[str] | None, AfterValidator(SPECS[name].check)]
    if default is not _UNSET:
        info = copy.copy(info)
        info.default = default
    return annotation, info


def _model(model_name: str, doc: str, settings: tuple[str, ...], defaults: dict[str, Any] | None = None,
           base: type[BaseModel] = _Strict, **fields: Any) -> Any:
    made: dict[str, Any] = {s: _setting(s, (defaults or {}).get(s, _UNSET)) for s in settings}
    return create_model(model_name, __base__=base, __doc__=doc, **made, **fields)  # type: ignore[call-overload]


class _Params(_Strict):
    """A request whose settings fields are made at import time from the ``GenerationParams`` declarations."""

    if TYPE_CHECKING:  # the derived fields are invisible to a type checker: they read as Any

        def __getattr__(self, name: str) -> Any: ...

    def params(self, settings: tuple[str, ...], base: GenerationParams = DEFAULTS) -> GenerationParams:
        """The request's settings as GenerationParams (over ``base``)."""
        return GenerationParams.from_kwargs({s: getattr(self, s) for s in settings}, base=base)


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
        from_prompt=(str, Field("", max_length=2000)), to_prompt=(str, Field("", max_length=2000)),
        from_seed=(int | None, Field(None, ge=0, le=MAX_SEED, description="random if omitted")),
        to_seed=(int | None, Field(None, ge=0, le=MAX_SEED, description="default: from_seed + 1")),
        from_audio=(str | None, Field(None, description="a clip (base64) as the first end; needs to_audio")),
        to_audio=(str | None, Field(None, description="a clip (base64) as the last end")))
    PadRequest = _model(
        "PadRequest", "One pad of a kit (to audition or re-roll it).", KIT,
        {"format": "wav16", "length": "auto"}, base=_Params,
        piece=(str, Field(description=f"one of {', '.join(PIECES)}")),
        seed=(int, Field(ge=0, le=MAX_SEED, description="the kit's seed (its shared noise)")),
        pad_seed=(int | None, Field(None, ge=0, le=MAX_SEED, description="the pad's own noise; random if omitted")))
    KitRequest = _model(
        "KitRequest", "A whole kit as a zip (samples + SFZ + Decent Sampler + Hydrogen + GM map + kit.json).",
        (*KIT, "seed", "pieces", "round_robins", "velocity_layers"), {"format": "wav24", "length": "auto"},
        base=_Params,
        pad_seeds=(dict[str, int], Field(default_factory=dict, description="{piece: seed} from the pads you kept")),
        name=(str | None, Field(None, max_length=60)))


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


def _limits(request: Request, p: GenerationParams, clips: int, prompts: dict[str, str]) -> None:
    """This server's limits (they only narrow GenerationParams'): 422 naming the field."""
    service = request.app.state.service
    cfg = service.config
    samplers = _generator(request, p.model).samplers
    if p.steps is not None and p.steps > cfg.max_steps:
        raise _invalid("steps", f"at most {cfg.max_steps} steps", "less_than_equal")
    if clips > cfg.max_count * 4:
        raise _invalid("count", f"at most {cfg.max_count * 4} clips per request, asked for {clips}",
                       "less_than_equal")
    if p.sampler is not None and p.sampler not in samplers:
        raise _invalid("sampler", f"unknown sampler {p.sampler!r} (valid: {', '.join(samplers)})", "enum")
    length = parse_length(p.length)
    if isinstance(length, float) and length > cfg.max_duration:
        raise _invalid("length", f"must be 'auto' or at most {cfg.max_duration} seconds", "range")
    for field, text in prompts.items():
        if len(text) > cfg.max_prompt_chars:
            raise _invalid(field, f"at most {cfg.max_prompt_chars} characters", "string_too_long")


def _decode(field: str, data: str, sample_rate: int) -> np.ndarray:
    """A base64 clip -> (T,) float32 at ``sample_rate``; 422 naming ``field`` when it is not audio."""
    try:
        raw = base64.b64decode(data.split(",", 1)[-1], validate=True)  # a data: URL prefix is allowed
    except (binascii.Error, ValueError):
        raise _invalid(field, "not valid base64") from None
    with tempfile.TemporaryDirectory(prefix="sampleforge-upload-") as tmp:
        path = Path(tmp) / "input"
        path.write_bytes(raw)
        try:
            wav = read_audio(path, sample_rate)
        except AudioReadError as exc:
            raise _invalid(field, f"not readable audio ({str(exc).split(': ', 1)[-1]})") from None
    if float(np.abs(wav).max()) < 1e-4:
        raise _invalid(field, "silent (peak below -80 dBFS)")
    return wav


def _encode(wav: np.ndarray, sample_rate: int, fmt: str, meta: dict[str, str]) -> dict[str, Any]:
    """(T,) audio -> ``{"data": base64, "media_type", "samples"}`` in ``fmt`` with ``meta`` inside the file."""
    container = FORMATS[fmt][0]
    with tempfile.TemporaryDirectory(prefix="sampleforge-out-") as tmp:
        path = write_audio(Path(tmp) / f"clip.{container}", wav, sample_rate, meta, format=fmt)
        data = path.read_bytes()
    return {"data": base64.b64encode(data).decode("ascii"), "media_type": MEDIA[container],
            "samples": int(wav.shape[0])}


def _run(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` holding the workflow slot (429 when it stays busy); UserInputError -> 422."""
    if not _busy.acquire(timeout=WAIT_SECONDS):
        raise HTTPException(429, "the server is busy with another variation, morph or kit; retry later",
                            headers={"Retry-After": "10"})
    try:
        return fn(*args, **kwargs)
    except UserInputError as exc:
        msg = str(exc)
        field = re.match(r"[a-z_]+", msg)
        raise _invalid(field.group(0) if field else "body", msg) from None
    finally:
        _busy.release()


def _clip(gen: Any, p: GenerationParams, wav: np.ndarray, **extra: Any) -> dict[str, Any]:
    """One result clip at the settings' length and format, with its provenance inside."""
    from sampleforge.workflow import provenance

    return _encode(apply_length(wav, gen.sample_rate, parse_length(p.length)), gen.sample_rate, p.format,
                   provenance(gen, p, **extra))


@router.post("/v1/vary", summary="Variations of an uploaded clip (audio-to-audio)")
def vary(req: VaryRequest, request: Request) -> dict[str, Any]:
    p = req.params(VARY)
    _limits(request, p, p.count, {"prompt": p.prompt})
    gen = _generator(request, p.model).generator
    wav = _decode("audio", req.audio, gen.sample_rate)
    result = _run(gen.vary, wav, p)
    r = result.params
    ext = FORMATS[r.format][0]
    clips = [{"index": k, "seed": seed, "name": f"variation_{seed}.{ext}",
              **_clip(gen, r, clip, seed=seed, operation="vary", strength=r.strength)}
             for k, (clip, seed) in enumerate(zip(result.audio.numpy(), result.seeds, strict=True))]
    return {"model": gen.id, "strength": r.strength, "warnings": result.warnings, "clips": clips}


@router.post("/v1/morph", summary="A morph between two prompts/seeds or two uploaded clips")
def morph(req: MorphRequest, request: Request) -> dict[str, Any]:
    from sampleforge.pipeline import MorphEnd

    p = req.params(MORPH)
    _limits(request, p, p.morph_steps, {"from_prompt": req.from_prompt, "to_prompt": req.to_prompt})
    gen = _generator(request, p.model).generator
    if (req.from_audio is None) != (req.to_audio is None):
        raise _invalid("to_audio" if req.to_audio is None else "from_audio", "give a clip for both ends or neither")
    a_audio = _decode("from_audio", req.from_audio, gen.sample_rate) if req.from_audio else None
    b_audio = _decode("to_audio", req.to_audio, gen.sample_rate) if req.to_audio else None
    result = _run(gen.morph, MorphEnd(req.from_prompt, req.from_seed, a_audio),
                  MorphEnd(req.to_prompt, req.to_seed, b_audio), p)
    r, n = result.params, len(result.seeds)
    sa, sb = result.seeds[0], result.seeds[-1]
    clips = [{"index": k, "t": k / (n - 1), "name": f"morph_{k + 1}of{n}.{FORMATS[r.format][0]}",
              **_clip(gen, r, clip, operation="morph", prompt=f"{req.from_prompt} -> {req.to_prompt}",
                      seed=f"{sa} -> {sb}", t=f"{k / (n - 1):.4f}")}
             for k, clip in enumerate(result.audio.numpy())]
    return {"model": gen.id, "from_seed": sa, "to_seed": sb, "warnings": result.warnings, "clips": clips}


@router.get("/v1/kit/pieces", summary="The pieces a kit can hold (GM notes) and the default set")
def kit_pieces() -> dict[str, Any]:
    return {"pieces": [{"name": p.name, "label": p.label, "note": p.note, "class": p.category}
                       for p in PIECES.values()],
            "default": list(DEFAULT_PIECES), "max_round_robins": SPECS["round_robins"].le,
            "max_velocity_layers": SPECS["velocity_layers"].le}


@router.post("/v1/kit/pad", summary="One pad of a kit: audition it, or re-roll it with another pad_seed")
def kit_pad(req: PadRequest, request: Request) -> dict[str, Any]:
    from sampleforge.kit.build import build_kit
    from sampleforge.kit.writers import sample_metadata

    if req.piece not in PIECES:
        raise _invalid("piece", f"unknown piece {req.piece!r} (valid: {', '.join(PIECES)})", "enum")
    p = dataclasses.replace(req.params(KIT, KIT_DEFAULTS), seed=req.seed, pieces=req.piece)
    _limits(request, p, 1, {"prompt": p.prompt})
    gen = _generator(request, p.model).generator
    pad_seed = req.pad_seed if req.pad_seed is not None else int(np.random.default_rng().integers(MAX_SEED))
    kit = _run(build_kit, gen, p, pad_seeds={req.piece: pad_seed})
    s = kit.samples[0]
    clip = _encode(s.audio, gen.sample_rate, p.format, sample_metadata(s, kit))
    return {"piece": req.piece, "label": PIECES[req.piece].label, "note": PIECES[req.piece].note,
            "seed": req.seed, "pad_seed": pad_seed, "prompt": s.prompt, "warnings": kit.warnings,
            "name": f"{req.piece}.{FORMATS[p.format][0]}", **clip}


@router.post("/v1/kit", summary="A whole kit as a zip: samples, SFZ, Decent Sampler, Hydrogen, GM map, kit.json",
             response_class=Response)
def kit_zip(req: KitRequest, request: Request) -> Response:
    from sampleforge.kit.build import build_kit
    from sampleforge.kit.pieces import parse_pieces
    from sampleforge.kit.writers import write_kit, zip_folder

    p = req.params((*KIT, "seed", "pieces", "round_robins", "velocity_layers"), KIT_DEFAULTS)
    _limits(request, p, len(parse_pieces(p.pieces)) * p.round_robins * p.velocity_layers, {"prompt": p.prompt})
    gen = _generator(request, p.model).generator
    kit = _run(build_kit, gen, p, pad_seeds=req.pad_seeds or None, name=req.name)
    with tempfile.TemporaryDirectory(prefix="sampleforge-kit-") as tmp:
        write_kit(kit, Path(tmp) / kit.name, p.format)
        data = zip_folder(Path(tmp) / kit.name, kit.name)
    return Response(data, media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{kit.name}.zip"'})
