"""Errors that speak to the user: each says what is wrong and where. The CLI prints them on one line and exits 2."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from sampleforge.strict import ConfigError


class SampleforgeError(Exception):
    """Base class: a problem the user can fix; its message says what and where."""


class UserInputError(SampleforgeError, ValueError):
    """A bad argument value (negative steps, NaN cfg, unwritable output...)."""


class ParamError(UserInputError):
    """A bad value of one setting. The message starts with the name the caller knows it by: the Python API's
    parameter (``duration must be ...``, ``init_audio: ...``), or the command line's flag once ``spelled`` with
    the command's flags. ``mentions``: other settings the problem names, spelled the same way."""

    def __init__(self, name: str, problem: str, mentions: tuple[str, ...] = ()) -> None:
        super().__init__(f"{name}{'' if problem.startswith(':') else ' '}{problem}")
        self.name, self.problem, self.mentions = name, problem, mentions

    def renamed(self, name: str) -> ParamError:
        return ParamError(name, self.problem, self.mentions)

    def spelled(self, names: Mapping[str, str]) -> ParamError:
        """This error with the setting and those it mentions called by ``names`` (e.g. the command line's flags:
        ``{"duration": "--duration"}``); a setting ``names`` lacks keeps its name."""
        problem = self.problem
        for other in self.mentions:
            if other in names:
                problem = re.sub(rf"(?<![\w-]){re.escape(other)}(?![\w-])", names[other], problem)
        return ParamError(names.get(self.name, self.name), problem)


class AudioReadError(SampleforgeError):
    """A file that cannot be read as audio: unreadable, empty, or holding NaN/inf."""


class CheckpointError(SampleforgeError):
    """A model folder or checkpoint that is missing, corrupt, or does not match its config."""


class GenerationWarning(UserWarning):
    """What a generation warns of in the Python API (an unknown keyword, a prompt naming two classes, a setting
    the model ignores): the CLI prints the same lines on stderr, the HTTP API lists them in ``warnings``."""


def names_a_folder(text: str) -> bool:
    """Whether a file name given as ``text`` names a folder (ends in a slash, ``.`` or ``..``): a clip would be
    written by the folder's name."""
    return text.endswith(("/", os.sep)) or os.path.basename(text) in ("", ".", "..")


def file_in_the_way(folder: str | os.PathLike[str]) -> str | None:
    """"X is a file, not a folder" when ``folder`` or a parent of it is an existing file (why it cannot be made)."""
    path = Path(folder)
    for p in (path, *path.parents):
        if p.is_file():
            return f"{p} is a file, not a folder"
    return None


__all__ = ["SampleforgeError", "UserInputError", "ParamError", "AudioReadError", "CheckpointError", "ConfigError",
           "GenerationWarning", "file_in_the_way", "names_a_folder"]
