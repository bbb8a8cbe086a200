"""The service's settings: one flat dataclass, filled from the command line (``sampleforge serve``)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from sampleforge.errors import UserInputError
from sampleforge.locations import DEFAULT_MODEL

SETTINGS_KEY = "server_settings"  # the store's meta row where a --broker server records shared_settings()


@dataclass
class ServeConfig:
    """Everything the server and its workers need to know. Defaults suit one CPU machine."""

    storage: Path = Path("sampleforge-data")  # job database + result audio (shared by all workers)
    model: str = DEFAULT_MODEL  # a shipped model name or a model folder
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
    durable: bool = True  # fsync result files, SQLite synchronous=FULL: finished jobs survive a power loss
    # connection limits (uvicorn + middleware): a slow or stalled client is dropped, never held for ever
    max_connections: int = 4096  # open connections; more get 503 (raise the file-handle limit to match)
    header_timeout_s: float = 10.0  # a request's line and headers must arrive within this
    body_timeout_s: float = 15.0  # a request's body must arrive within this (from its first byte)
    keep_alive_s: float = 5.0  # an idle keep-alive connection is closed after this
    max_header_bytes: int = 16_384  # a request line + headers longer than this: 400 and the connection is closed

    def check(self) -> None:
        """Refuse settings that would silently weaken the server (an empty or space-padded token)."""
        check_token(self.token)

    @property
    def loopback(self) -> bool:
        """True if the server only listens on this machine (127.0.0.0/8, ::1, localhost)."""
        return is_loopback(self.host)

    @property
    def ttl_seconds(self) -> float:
        return self.ttl_hours * 3600.0

    @property
    def heartbeat_seconds(self) -> float:
        """How often a worker renews its lease: a few times per lease."""
        return max(0.2, self.lease_seconds / 4)

    def shared_settings(self) -> dict[str, float]:
        """The settings a --broker server and its workers should share, keyed by their flags."""
        return {"--lease-seconds": self.lease_seconds, "--max-attempts": self.max_attempts,
                "--max-batch": self.max_batch}

    @property
    def handoff_seconds(self) -> float:
        """How often a --broker server publishes waiting jobs and re-queues those of silent workers."""
        return min(2.0, max(0.2, self.lease_seconds / 2))

    @property
    def lost_after_seconds(self) -> float:
        """A --broker server publishes a queued job again once its last hand-off is this old and its model's
        broker queue holds fewer messages than the model has queued jobs (the broker lost some)."""
        return 5 * self.handoff_seconds


def check_token(token: str | None) -> None:
    """An empty token would turn auth off, and one with surrounding whitespace could never match (clients'
    header values arrive stripped): both are refused rather than silently accepted."""
    if token is None:
        return
    if not token.strip():
        raise UserInputError("the token is empty, which would turn auth off; give a real token, or none at all "
                             "to serve without auth on loopback")
    if token != token.strip():
        raise UserInputError("the token starts or ends with whitespace, so no client could ever match it; "
                             "remove the whitespace")
    if any(not 0x21 <= ord(ch) <= 0x7E for ch in token):
        raise UserInputError("the token must be printable ASCII without spaces (it travels in an HTTP header)")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
