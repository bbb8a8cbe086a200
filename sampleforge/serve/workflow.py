"""HTTP routes of the producer's workflow: variations (``POST /v1/vary``), morphs (``POST /v1/morph``), kit
pads (``POST /v1/kit/pad``) and whole kits as a zip (``POST /v1/kit``).

They answer directly (no job queue): a request runs on the server's model, one workflow request at a time
(others wait up to ``WAIT_SECONDS``, then 429). Audio goes both ways as base64 in JSON: input clips in
``audio`` / ``from_audio`` / ``to_audio`` (any WAV, FLAC, AIFF or OGG; up to ``max_upload_bytes`` per
request), results as ``{"data": base64, "media_type", "name", ...}`` with their provenance.
A kit pad and the kit zip made with the same prompt, seed and ``pad_seeds`` hold the same sounds.
"""

from __future__ import annotations

import base64
import binascii
import re
import tempfile
import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from sampleforge.audio.finish import apply_length
from sampleforge.audio.io import FORMATS, read_audio, write_audio
from sampleforge.errors import AudioReadError, UserInputError
from sampleforge.kit.pieces import DEFAULT_PIECES, MAX_ROUND_ROBINS, MAX_VELOCITY_LAYERS, PIECES

MAX_SEED = 2**31 - 1
WAIT_SECONDS = 60.0
UPLOAD_PATHS = ("/v1/vary", "/v1/morph")
MEDIA = {"wav": "audio/wav", "flac": "audio/flac"}
Format = Literal["wav16", "wav24", "wav32f", "wav", "flac"]
Length = Literal["auto"] | float | None

router = APIRouter(tags=["workflow"])
_busy = threading.Semaphore(1)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_strip_whitespace=True)


class _Sampling(_Strict):
    steps: int = Field(50, ge=1, le=100_000, description="sampler steps (server limit: see /v1/models)")
    cfg_scale: float = Field(3.0, ge=0.0, le=30.0, description="classifier-free guidance scale")
    sampler: str = Field("ddim", min_length=1, max_length=40)
    format: Format = "wav"
    length: Length = Field(None, description="'auto' (each clip trimmed to its sound) or seconds; default 2 s")


class VaryRequest(_Sampling):
    """Variations of one clip."""

    audio: str = Field(min_length=1, description="the clip, base64 (WAV, FLAC, AIFF or OGG)")
    prompt: str = Field("", max_length=2000)
    strength: float = Field(0.3, ge=0.0, le=1.0, description="0 = the clip through the VAE, 1 = ignore it")
    count: int = Field(4, ge=1, le=1000)
    seed: int | None = Field(None, ge=0, le=MAX_SEED)


class MorphRequest(_Sampling):
    """From one prompt/seed (or clip) to another."""

    from_prompt: str = Field("", max_length=2000)
    to_prompt: str = Field("", max_length=2000)
    from_seed: int | None = Field(None, ge=0, le=MAX_SEED)
    to_seed: int | None = Field(None, ge=0, le=MAX_SEED, description="default: from_seed + 1")
    from_audio: str | None = Field(None, description="a clip (base64) as the first end; needs to_audio")
    to_audio: str | None = None
    morph_steps: int = Field(5, ge=2, le=1000, description="clips from end to end, both included")
    strength: float = Field(0.5, ge=0.0, le=1.0, description="with clips: how far from them")


class _KitCommon(_Sampling):
    prompt: str = Field("", max_length=2000, description="the kit's character, e.g. 'dusty 808'")
    relatedness: float = Field(0.5, ge=0.0, le=1.0)
    knobs: dict[str, float] | None = Field(None, description="timbre knobs (0-1) shared by every pad")
    length: Length = "auto"


class PadRequest(_KitCommon):
    """One pad of a kit (to audition or re-roll it)."""

    piece: str = Field(description=f"one of {', '.join(PIECES)}")
    seed: int = Field(ge=0, le=MAX_SEED, description="the kit's seed (its shared noise)")
    pad_seed: int | None = Field(None, ge=0, le=MAX_SEED, description="the pad's own noise; random if omitted")
    format: Format = "wav16"


class KitRequest(_KitCommon):
    """A whole kit as a zip (WAVs + SFZ + Decent Sampler + Hydrogen + GM map + kit.json)."""

    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="the kit's seed (its shared noise); random if omitted")
    pieces: list[str] = Field(default_factory=lambda: list(DEFAULT_PIECES), min_length=1, max_length=32)
    pad_seeds: dict[str, int] = Field(default_factory=dict, description="{piece: seed} from the pads you kept")
    round_robins: int = Field(1, ge=1, le=MAX_ROUND_ROBINS)
    velocity_layers: int = Field(1, ge=1, le=MAX_VELOCITY_LAYERS)
    name: str | None = Field(None, max_length=60)
    format: Format = "wav24"


def _invalid(field: str, msg: str, kind: str = "value_error") -> RequestValidationError:
    return RequestValidationError([{"loc": ("body", field), "msg": msg, "type": kind}])


def _limits(request: Request, req: _Sampling, clips: int, prompts: dict[str, str]) -> None:
    """This server's limits: 422 naming the field."""
    service = request.app.state.service
    cfg = service.config
    if req.steps > cfg.max_steps:
        raise _invalid("steps", f"at most {cfg.max_steps} steps", "less_than_equal")
    if clips > cfg.max_count * 4:
        raise _invalid("count", f"at most {cfg.max_count * 4} clips per request, asked for {clips}",
                       "less_than_equal")
    if req.sampler not in service.samplers:
        raise _invalid("sampler", f"unknown sampler {req.sampler!r} (valid: {', '.join(service.samplers)})", "enum")
    if isinstance(req.length, float) and not 0 < req.length <= cfg.max_duration:
        raise _invalid("length", f"must be 'auto' or seconds in (0, {cfg.max_duration}]", "range")
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


def _meta(gen: Any, req: _Sampling, **extra: Any) -> dict[str, str]:
    base = {"model": gen.id, "steps": req.steps, "cfg_scale": req.cfg_scale, "sampler": req.sampler,
            "format": req.format, "length": req.length, **extra}
    return {k: str(v) for k, v in base.items() if v is not None}


@router.post("/v1/vary", summary="Variations of an uploaded clip (audio-to-audio)")
def vary(req: VaryRequest, request: Request) -> dict[str, Any]:
    gen = request.app.state.service.generator
    _limits(request, req, req.count, {"prompt": req.prompt})
    wav = _decode("audio", req.audio, gen.sample_rate)
    result = _run(gen.vary, wav, req.prompt, n=req.count, strength=req.strength, steps=req.steps,
                  cfg_scale=req.cfg_scale, sampler=req.sampler, seed=req.seed)
    clips = []
    for k, (clip, seed) in enumerate(zip(result.audio.numpy(), result.seeds, strict=True)):
        meta = _meta(gen, req, prompt=req.prompt, seed=seed, operation="vary", strength=req.strength)
        clips.append({"index": k, "seed": seed, "name": f"variation_{seed}.{FORMATS[req.format][0]}",
                      **_encode(apply_length(clip, gen.sample_rate, req.length), gen.sample_rate, req.format, meta)})
    return {"model": gen.id, "strength": req.strength, "warnings": result.warnings, "clips": clips}


@router.post("/v1/morph", summary="A morph between two prompts/seeds or two uploaded clips")
def morph(req: MorphRequest, request: Request) -> dict[str, Any]:
    from sampleforge.pipeline import Generator, MorphEnd

    gen = request.app.state.service.generator
    _limits(request, req, req.morph_steps, {"from_prompt": req.from_prompt, "to_prompt": req.to_prompt})
    if (req.from_audio is None) != (req.to_audio is None):
        raise _invalid("to_audio" if req.to_audio is None else "from_audio", "give a clip for both ends or neither")
    a_audio = _decode("from_audio", req.from_audio, gen.sample_rate) if req.from_audio else None
    b_audio = _decode("to_audio", req.to_audio, gen.sample_rate) if req.to_audio else None
    sa = Generator.resolve_seed(req.from_seed)
    sb = req.to_seed if req.to_seed is not None else (sa + 1) % (MAX_SEED + 1)
    result = _run(gen.morph, MorphEnd(req.from_prompt, sa, a_audio), MorphEnd(req.to_prompt, sb, b_audio),
                  count=req.morph_steps, strength=req.strength, steps=req.steps, cfg_scale=req.cfg_scale,
                  sampler=req.sampler)
    clips = []
    for k, clip in enumerate(result.audio.numpy()):
        t = k / (req.morph_steps - 1)
        meta = _meta(gen, req, operation="morph", prompt=f"{req.from_prompt} -> {req.to_prompt}",
                     seed=f"{sa} -> {sb}", t=f"{t:.4f}")
        clips.append({"index": k, "t": t, "name": f"morph_{k + 1}of{req.morph_steps}.{FORMATS[req.format][0]}",
                      **_encode(apply_length(clip, gen.sample_rate, req.length), gen.sample_rate, req.format, meta)})
    return {"model": gen.id, "from_seed": sa, "to_seed": sb, "warnings": result.warnings, "clips": clips}


@router.get("/v1/kit/pieces", summary="The pieces a kit can hold (GM notes) and the default set")
def kit_pieces() -> dict[str, Any]:
    return {"pieces": [{"name": p.name, "label": p.label, "note": p.note, "class": p.category}
                       for p in PIECES.values()],
            "default": list(DEFAULT_PIECES), "max_round_robins": MAX_ROUND_ROBINS,
            "max_velocity_layers": MAX_VELOCITY_LAYERS}


@router.post("/v1/kit/pad", summary="One pad of a kit: audition it, or re-roll it with another pad_seed")
def kit_pad(req: PadRequest, request: Request) -> dict[str, Any]:
    from sampleforge.kit.build import build_kit
    from sampleforge.kit.writers import sample_metadata

    gen = request.app.state.service.generator
    _limits(request, req, 1, {"prompt": req.prompt})
    if req.piece not in PIECES:
        raise _invalid("piece", f"unknown piece {req.piece!r} (valid: {', '.join(PIECES)})", "enum")
    pad_seed = req.pad_seed if req.pad_seed is not None else int(np.random.default_rng().integers(MAX_SEED))
    kit = _run(build_kit, gen, req.prompt, [req.piece], seed=req.seed, relatedness=req.relatedness,
               pad_seeds={req.piece: pad_seed}, knobs=req.knobs, length=req.length, steps=req.steps, cfg_scale=req.cfg_scale,
               sampler=req.sampler)
    s = kit.samples[0]
    clip = _encode(s.audio, gen.sample_rate, req.format, sample_metadata(s, kit))
    return {"piece": req.piece, "label": PIECES[req.piece].label, "note": PIECES[req.piece].note,
            "seed": req.seed, "pad_seed": pad_seed, "prompt": s.prompt, "warnings": kit.warnings,
            "name": f"{req.piece}.{FORMATS[req.format][0]}", **clip}


@router.post("/v1/kit", summary="A whole kit as a zip: samples, SFZ, Decent Sampler, Hydrogen, GM map, kit.json",
             response_class=Response)
def kit_zip(req: KitRequest, request: Request) -> Response:
    from sampleforge.kit.build import build_kit
    from sampleforge.kit.writers import write_kit, zip_folder

    gen = request.app.state.service.generator
    _limits(request, req, len(req.pieces) * req.round_robins * req.velocity_layers, {"prompt": req.prompt})
    kit = _run(build_kit, gen, req.prompt, req.pieces, seed=req.seed, round_robins=req.round_robins,
               velocity_layers=req.velocity_layers, relatedness=req.relatedness, pad_seeds=req.pad_seeds or None,
               knobs=req.knobs,
               length=req.length, steps=req.steps, cfg_scale=req.cfg_scale, sampler=req.sampler, name=req.name)
    with tempfile.TemporaryDirectory(prefix="sampleforge-kit-") as tmp:
        write_kit(kit, Path(tmp) / kit.name, req.format)
        data = zip_folder(Path(tmp) / kit.name, kit.name)
    return Response(data, media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{kit.name}.zip"'})
