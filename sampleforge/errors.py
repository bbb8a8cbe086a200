"""Errors that speak to the user: each says what is wrong and where. The CLI prints them on one line and exits 2."""

from __future__ import annotations

from sampleforge.strict import ConfigError


class SampleforgeError(Exception):
    """Base class: a problem the user can fix; its message says what and where."""


class UserInputError(SampleforgeError, ValueError):
    """A bad argument value (negative steps, NaN cfg, unwritable output...)."""


class AudioReadError(SampleforgeError):
    """A file that cannot be read as audio: unreadable, empty, or holding NaN/inf."""


class CheckpointError(SampleforgeError):
    """A model folder or checkpoint that is missing, corrupt, or does not match its config."""


__all__ = ["SampleforgeError", "UserInputError", "AudioReadError", "CheckpointError", "ConfigError"]
