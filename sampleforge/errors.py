"""Errors that speak to the user: each says what is wrong and where. The CLI prints them on one line and exits 2."""

from __future__ import annotations

import os
from pathlib import Path

from sampleforge.strict import ConfigError


class SampleforgeError(Exception):
    """Base class: a problem the user can fix; its message says what and where."""


class UserInputError(SampleforgeError, ValueError):
    """A bad argument value (negative steps, NaN cfg, unwritable output...)."""


class AudioReadError(SampleforgeError):
    """A file that cannot be read as audio: unreadable, empty, or holding NaN/inf."""


class CheckpointError(SampleforgeError):
    """A model folder or checkpoint that is missing, corrupt, or does not match its config."""


def file_in_the_way(folder: str | os.PathLike[str]) -> str | None:
    """"X is a file, not a folder" when ``folder`` or a parent of it is an existing file (why it cannot be made)."""
    path = Path(folder)
    for p in (path, *path.parents):
        if p.is_file():
            return f"{p} is a file, not a folder"
    return None


__all__ = ["SampleforgeError", "UserInputError", "AudioReadError", "CheckpointError", "ConfigError", "file_in_the_way"]
