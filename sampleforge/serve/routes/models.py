"""``/v1/models`` (the served models, their samplers, this server's limits) and ``/v1/vocab`` (a model's keywords)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.exceptions import RequestValidationError

from sampleforge.params import FORMATS
from sampleforge.serve.routes.common import ApiRoute, ServiceDep, unknown_model
from sampleforge.taxonomy import CATEGORY_PROMPTS
from sampleforge.timbre import word_table

router = APIRouter(tags=["models"], route_class=ApiRoute)


@router.get("/v1/models", summary="The served models, their samplers and this server's limits")
def models(service: ServiceDep) -> dict[str, Any]:
    cfg = service.config
    limits = {"max_count": cfg.max_count, "max_steps": cfg.max_steps, "min_duration": cfg.min_duration,
              "max_duration": cfg.max_duration, "max_prompt_chars": cfg.max_prompt_chars,
              "max_batch": cfg.max_batch, "max_queue": cfg.max_queue}
    return {"default": service.generator.name, "models": [
        {**m.info(), "limits": limits, "formats": list(FORMATS)} for m in service.models.values()]}


@router.get("/v1/vocab", summary="Keywords a served model knows (with training counts), drum classes, timbre words")
def vocab(service: ServiceDep, model: str | None = None) -> dict[str, Any]:
    """``model``: one of /v1/models (default: the default model); another is a 422 naming ``query.model``.
    ``timbre``: the model's timbre knobs and the words that set them (``timbre.word_table``; {} without knobs)."""
    if model is not None and model not in service.models and model.replace(" ", "+") in service.models:
        model = model.replace(" ", "+")  # MODEL+VOCODER with its '+' unencoded (a query string reads it as a space)
    unknown = unknown_model(service, model, ("query", "model"))
    if unknown is not None:
        raise RequestValidationError([unknown])
    generator = service.model(model).generator
    words = sorted(generator.vocab().items(), key=lambda kv: (-kv[1], kv[0]))
    bundle = getattr(generator, "bundle", None)  # a sampleforge model's: its timbre knobs and words
    return {"model": generator.name,
            "keywords": [{"word": w, "count": int(c)} for w, c in words],
            "classes": [{"name": k, "prompt": p, "label": k.replace("_", " ")} for k, p in CATEGORY_PROMPTS.items()],
            "timbre": word_table(bundle.config.text.knobs, bundle.timbre) if bundle is not None else {}}
