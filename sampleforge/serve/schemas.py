"""Request bodies of the HTTP API (pydantic). Static bounds here; per-server limits in ``limits.py``.

Every model forbids unknown fields and non-finite numbers, so a typo or a NaN is a 422 naming the
field, never a 5xx.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_SEED = 2**31 - 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_strip_whitespace=True)


class GenerateRequest(_Strict):
    """``POST /v1/generate``: one prompt, ``count`` clips (seeds seed, seed+1, ...)."""

    prompt: str = Field(min_length=1, max_length=2000, description="keywords, e.g. 'punchy 808 kick'")
    count: int = Field(1, ge=1, le=1000, description="clips to make (server limit: see /v1/models)")
    steps: int = Field(50, ge=1, le=100_000, description="sampler steps")
    cfg_scale: float = Field(3.0, ge=0.0, le=30.0, description="classifier-free guidance scale")
    sampler: str | None = Field(None, min_length=1, max_length=40, description="see /v1/models; default: the model's")
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="seed of clip 0; random if omitted")
    duration: float | None = Field(None, gt=0.0, le=600.0, description="seconds; the model's length if omitted")
    format: Literal["wav", "flac"] = "wav"


class TaskParams(_Strict):
    """The ``params`` of a task (AudioLDM-service style names)."""

    diffusionSteps: int = Field(50, ge=1, le=100_000)
    guidanceScale: float = Field(3.0, ge=0.0, le=30.0)
    duration: float | None = Field(None, gt=0.0, le=600.0)
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    count: int = Field(1, ge=1, le=1000)
    sampler: str | None = Field(None, min_length=1, max_length=40)
    format: Literal["wav", "flac"] = "wav"


class TaskData(_Strict):
    operation: Literal["generate"]
    prompt: str = Field(min_length=1, max_length=2000)
    params: TaskParams = Field(default_factory=lambda: TaskParams.model_validate({}))


class TaskRequest(_Strict):
    """``POST /v1/tasks``: ``{"type": "audio-generation", "data": {"operation": "generate", ...}}``."""

    type: Literal["audio-generation"]
    data: TaskData
    id: str | None = Field(None, max_length=200, description="the client's own task id, echoed back")
    modelType: str | None = Field(None, max_length=100, description="accepted and ignored")
    storeResults: bool = True

    def to_generate(self) -> GenerateRequest:
        p = self.data.params
        return GenerateRequest(
            prompt=self.data.prompt, count=p.count, steps=p.diffusionSteps, cfg_scale=p.guidanceScale,
            sampler=p.sampler, seed=p.seed, duration=p.duration, format=p.format,
        )
