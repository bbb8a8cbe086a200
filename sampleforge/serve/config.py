"""The service's settings: one flat dataclass, filled from the command line (``sampleforge serve``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class ServeConfig:
    """Everything the server and its workers need to know. Defaults suit one CPU machine."""

    storage: Path = Path("sampleforge-data")  # job database + result audio (shared by all workers)
    model: str = "drums-v1"  # a shipped model name or a model folder
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1  # in-process worker threads (embedded mode); one per model is right on CPU
    broker: str | None = None  # redis://... -> Celery scale-out; None -> embedded worker threads
    token: str | None = None  # bearer token for /v1/* (None: no auth)
    max_queue: int = 256  # queued + running jobs before POST answers 429
    ttl_hours: float = 24.0  # finished jobs (and their audio) are deleted this long after they finish
    max_count: int = 16  # clips per job
    max_steps: int = 200  # sampler steps per job
    min_duration: float = 0.25  # seconds
    max_duration: float = 4.0  # seconds
    max_prompt_chars: int = 300
    max_batch: int = 16  # clips in one Generator.generate call (several compatible jobs batched)
    max_body_bytes: int = 16_384  # request bodies larger than this get 413
    max_upload_bytes: int = 4_000_000  # ... except on routes that take audio (vary, morph): base64 clips
    max_attempts: int = 3  # a job interrupted this many times (worker died) fails with a reason
    lease_seconds: float = 60.0  # a running job whose worker is silent this long is taken over
    cleanup_interval_s: float = 300.0  # TTL sweep period
    visibility_timeout_s: float = 3600.0  # Celery/Redis: redeliver unacknowledged tasks after this
    sse_max_seconds: float = 600.0  # one /events stream lasts at most this long (clients reconnect)

    @property
    def ttl_seconds(self) -> float:
        return self.ttl_hours * 3600.0

    @property
    def heartbeat_seconds(self) -> float:
        """How often a worker renews its lease: a few times per lease."""
        return max(0.2, self.lease_seconds / 4)
