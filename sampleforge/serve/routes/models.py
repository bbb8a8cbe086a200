"""``/v1/models`` (the served model, its samplers, this server's limits) and ``/v1/vocab``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from sampleforge.params import FORMATS
from sampleforge.serve.routes.common import ServiceDep
from sampleforge.taxonomy import CATEGORY_PROMPTS

router = APIRouter(tags=["models"])


@router.get("/v1/models", summary="The served models, their samplers and this server's limits")
def models(service: ServiceDep) -> dict[str, Any]:
    cfg = service.config
    limits = {"max_count": cfg.max_count, "max_steps": cfg.max_steps, "min_duration": cfg.min_duration,
              "max_duration": cfg.max_duration, "max_prompt_chars": cfg.max_prompt_chars,
              "max_batch": cfg.max_batch, "max_queue": cfg.max_queue}
    return {"default": service.generator.name, "models": [
        {**m.info(), "limits": limits, "formats": list(FORMATS)} for m in service.models.values()]}


@router.get("/v1/vocab", summary="Keywords the model knows (with training counts) and drum classes")
def vocab(service: ServiceDep) -> dict[str, Any]:
    words = sorted(service.generator.vocab().items(), key=lambda kv: (-kv[1], kv[0]))
    return {"model": service.generator.name,
            "keywords": [{"word": w, "count": int(c)} for w, c in words],
            "classes": [{"name": k, "prompt": p, "label": k.replace("_", " ")} for k, p in CATEGORY_PROMPTS.items()]}
