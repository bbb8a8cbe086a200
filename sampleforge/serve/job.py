"""A job as the service keeps it: its typed generation parameters, its state and its results.

A generation job (``POST /v1/generate``, ``/v1/tasks``) is its prompt and settings; a workflow job (a variation,
morph, kit pad or kit) also carries its ``request``: ``{"operation": ..., "settings": {...}, ...}`` (see
serve/operations.py), and runs alone, never batched with other jobs.

States and transitions (enforced by the job store's guarded updates):

    queued --claim--> running --finish--> succeeded
       |                 |------fail----> failed
       |                 |--release/requeue--> queued      (shutdown, or a worker that died: attempts bounded)
       +--cancel---------+--cancel------> cancelled
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sampleforge.audio.io import FORMATS
from sampleforge.params import SPECS, GenerationParams

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
ACTIVE = (QUEUED, RUNNING)
TERMINAL = (SUCCEEDED, FAILED, CANCELLED)


# settings that do not change how a batch is sampled: each job keeps its own (prompt, clips, seeds, file format)
PER_JOB = ("prompt", "count", "seed", "format")


def http_settings() -> tuple[str, ...]:
    """The settings a job carries: those an HTTP request may set (``GenerationParams`` decides which)."""
    return tuple(name for name, spec in SPECS.items() if spec.http)


def params_to_json(params: GenerationParams) -> str:
    """A job's settings as stored (every HTTP setting, the prompt aside: it has its own column)."""
    return json.dumps({k: getattr(params, k) for k in http_settings() if k != "prompt"}, sort_keys=True)


def params_from_json(text: str, prompt: str) -> GenerationParams:
    """The stored settings back (older rows hold a subset: the rest take their defaults)."""
    return GenerationParams.from_kwargs({**json.loads(text), "prompt": prompt})


def batch_key(params: GenerationParams) -> str:
    """Jobs with equal keys may share one generate() call: every setting but the per-job ones.

    Clip k of a call is made from seed ``seed + k`` by its own noise generator, so a batched job gets
    the audio it would get on its own, whatever the sampler.
    """
    return json.dumps({k: getattr(params, k) for k in http_settings() if k not in PER_JOB}, sort_keys=True)


@dataclass
class Job:
    """One accepted job (a row of the job store, decoded)."""

    id: str
    state: str
    model: str
    prompt: str
    params: GenerationParams  # the prompt's settings with the server's defaults filled in (sampler, duration)
    ttl_s: float
    created_at: float
    seed: int | None = None  # the seed of clip 0 (clip k uses seed + k); set at submit or claim
    progress: float = 0.0
    warnings: list[str] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    attempts: int = 0
    worker: str | None = None
    source: str = "generate"
    client_ref: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    heartbeat_at: float | None = None
    published_at: float | None = None  # celery mode: when the job was last handed to the broker
    request: dict[str, Any] | None = None  # a workflow job's operation and inputs; None: a generation job

    @property
    def count(self) -> int:
        return self.params.count

    @property
    def operation(self) -> str:
        """``generate``, or the workflow operation: ``vary``, ``morph``, ``pad`` or ``kit``."""
        return str(self.request["operation"]) if self.request else "generate"

    @property
    def batch_key(self) -> str:
        """Generation jobs with equal keys share a batch; a workflow job's key is its own."""
        return f"{self.operation}:{self.id}" if self.request else batch_key(self.params)

    @property
    def extension(self) -> str:
        """The audio files' extension: ``wav`` or ``flac`` (``wav16``, ``wav24`` and ``wav32f`` are WAVs)."""
        return FORMATS[self.params.format][0]

    def view_params(self) -> dict[str, Any]:
        """The settings as the API shows them (every HTTP setting but the prompt)."""
        return {k: getattr(self.params, k) for k in http_settings() if k != "prompt"}

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL
