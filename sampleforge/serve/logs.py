"""Structured logs: one JSON object per line, with any ``extra={...}`` fields merged in.

Every logger the server runs (sampleforge, uvicorn, asyncio, celery) writes JSON to stderr. The
loggers a flood of hostile connections can trigger (asyncio, uvicorn.error) pass a burst limit: at most
``BURST`` records per message per ``WINDOW_S`` seconds, then one record saying how many were dropped.
"""

from __future__ import annotations

import json
import logging
import logging.config
import re
import threading
import time
import uuid
from typing import Any

BURST = 20
WINDOW_S = 10.0

# attributes every LogRecord has; anything else came from ``extra=`` and is emitted as a field
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


# an absolute path (POSIX or Windows) in a message: its folders, then its last part
_PATH = re.compile(r"(?<![\w.:/\\])(?:/|[A-Za-z]:[\\/])(?:[^\s/\\:'\"()]+[/\\])+(?=[^\s/\\:'\"()])")


def without_folders(message: str) -> str:
    """``message`` with each absolute path cut to its last part ("/srv/models/m/unet.safetensors: ..." ->
    "unet.safetensors: ..."): what a client is told of the server's files (the log keeps the whole message)."""
    return _PATH.sub("", message)


def error_ref() -> str:
    """A short reference for an error a client is told of without its details: the log holds them under it."""
    return uuid.uuid4().hex[:8]


class JsonFormatter(logging.Formatter):
    """``{"ts": ..., "level": ..., "logger": ..., "msg": ..., **extra}``; exceptions as ``"exc"``."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class BurstLimit(logging.Filter):
    """Pass at most ``burst`` records with the same message template per ``window_s`` seconds."""

    def __init__(self, burst: int = BURST, window_s: float = WINDOW_S) -> None:
        super().__init__()
        self.burst, self.window_s = burst, window_s
        self._seen: dict[tuple[str, str], list[float]] = {}  # (logger, template) -> [window start, count]
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg)[:200])
        now = time.monotonic()
        with self._lock:
            window = self._seen.get(key)
            if window is None or now - window[0] >= self.window_s:
                dropped = 0 if window is None else int(window[1]) - self.burst
                if len(self._seen) > 1000:
                    self._seen.clear()
                self._seen[key] = [now, 1]
                if dropped > 0:
                    record.dropped_before = dropped  # emitted as a field: how many the last window dropped
                return True
            window[1] += 1
            return window[1] <= self.burst


def configure_logging(level: str = "info") -> dict[str, Any]:
    """Send sampleforge, uvicorn and celery logs to stderr as JSON. Returns a uvicorn ``log_config``."""
    config: dict[str, Any] = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "filters": {"burst": {"()": BurstLimit}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "loggers": {
            "sampleforge": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"handlers": ["stderr"], "level": level.upper(), "propagate": False,
                              "filters": ["burst"]},
            "asyncio": {"handlers": ["stderr"], "level": "WARNING", "propagate": False, "filters": ["burst"]},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},  # we log requests
            "celery": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
        },
    }
    logging.config.dictConfig(config)
    return config
