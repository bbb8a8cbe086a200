"""The ``sampleforge`` command: a thin dispatcher. Each area registers its own sub-commands.

Every sub-command module exposes ``register(subparsers) -> None`` which adds its parser(s) and
sets ``func`` (a callable taking the parsed ``argparse.Namespace`` and returning an exit code).
Errors the user can fix (``SampleforgeError``, ``ConfigError``, a flag argparse refuses) print one line and exit 2;
one about a setting (``ParamError``) names the flag the command has for it, where the Python API names its parameter.
"""

from __future__ import annotations

import argparse
import importlib
import io
import os
import sys
import typing
from collections.abc import Mapping

from sampleforge.errors import ConfigError, ParamError, SampleforgeError, file_in_the_way

# the module that registers each sub-command; only the one a command line names is imported (some pull in
# torch, scipy or FastAPI), all of them for `sampleforge --help`
COMMAND_MODULES = {
    "generate": "sampleforge.commands",
    "vocab": "sampleforge.commands",
    "demo": "sampleforge.commands",
    "vary": "sampleforge.workflow_commands",
    "morph": "sampleforge.workflow_commands",
    "kit": "sampleforge.workflow_commands",
    "import": "sampleforge.legacy_commands",
    "data": "sampleforge.data.commands",
    "train": "sampleforge.train.commands",
    "eval": "sampleforge.eval.commands",
    "sweep": "sampleforge.eval.commands",
    "doctor": "sampleforge.eval.commands",
    "inspect": "sampleforge.eval.commands",
    "serve": "sampleforge.serve.commands",
    "worker": "sampleforge.serve.commands",
}


class UsageError(Exception):
    """A command line argparse refuses; its message is the one line to print."""


# Python API parameters whose command-line flag is named otherwise (the flag's dest); other settings' flags have
# their names (``mask_start`` -> ``--mask-start``)
FLAG_DESTS = {"diffusion_checkpoint": "diffusion_ckpt", "vae_checkpoint": "vae_ckpt",
              "vocoder_checkpoint": "vocoder_ckpt", "ddim_steps": "steps", "n": "count"}
FLAGS_SEEN = "_flags"  # the namespace attribute where the sub-command's parser leaves ``flags()``
PROG_SEEN = "_prog"  # ... and its name, as errors say it ("sampleforge data scan")


class Parser(argparse.ArgumentParser):
    """argparse's parser whose errors are one line naming the command and its --help, not a usage block (its
    sub-command parsers are of this class too)."""

    def error(self, message: str) -> typing.NoReturn:
        raise UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")

    def parse_known_args(self, args: typing.Any = None, namespace: typing.Any = None) -> typing.Any:
        parsed, extras = super().parse_known_args(args, namespace)
        if not hasattr(parsed, FLAGS_SEEN):  # the innermost (sub-)command's parser sets them first
            setattr(parsed, FLAGS_SEEN, self.flags())
            setattr(parsed, PROG_SEEN, self.prog)
        return parsed, extras

    def flags(self) -> dict[str, str]:
        """Setting or API parameter name -> this command's flag for it (``cfg_scale`` -> ``--cfg-scale``)."""
        own = {a.dest: max(a.option_strings, key=len) for a in self._actions if a.option_strings}
        return {**{api: own[dest] for api, dest in FLAG_DESTS.items() if dest in own}, **own}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser for ``command``'s module only, or for every sub-command when ``command`` is None/unknown."""
    from sampleforge import __version__

    parser = Parser(prog="sampleforge", description="Drum one-shots from keyword prompts.")
    parser.add_argument("--version", action="version", version=f"sampleforge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = [COMMAND_MODULES[command]] if command in COMMAND_MODULES else list(dict.fromkeys(COMMAND_MODULES.values()))
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that area is not installed in this build
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv[0] if argv else None)
    try:
        args, unknown = parser.parse_known_args(argv)
        if unknown:  # said by the sub-command, whose --help lists what it takes
            Parser(prog=getattr(args, PROG_SEEN, "sampleforge")).error(f"unrecognized arguments: {' '.join(unknown)}")
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (SampleforgeError, ConfigError) as exc:
        print(f"{_prog(args)}: error: {_as_typed(exc, getattr(args, FLAGS_SEEN, {}))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`sampleforge vocab | head`): stop quietly
        _quiet_stdout()
        return 1
    except OSError as exc:  # a path the file system refuses (a folder flag naming a file, no permission, disk full)
        if exc.filename is None:
            raise
        print(f"{_prog(args)}: error: {_path_problem(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _prog(args: argparse.Namespace) -> str:
    """The command as typed, for its error lines ("sampleforge data scan")."""
    return str(getattr(args, PROG_SEEN, f"sampleforge {args.command}"))


def _as_typed(exc: Exception, flags: Mapping[str, str]) -> str:
    """The message of ``exc``, with the settings it is about named by the flags the user typed (``duration must
    be ...`` -> ``--duration must be ...``)."""
    return str(exc.spelled(flags) if isinstance(exc, ParamError) else exc)


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush does not fail on the closed pipe again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):  # not a file descriptor (a test's capture)
        pass


def _path_problem(exc: OSError) -> str:
    """One line for an OSError about a path: a file where a folder is needed said so, else the system's words."""
    in_the_way = file_in_the_way(exc.filename) if isinstance(exc, (FileExistsError, NotADirectoryError)) else None
    return in_the_way or f"{exc.filename}: {exc.strerror or exc}"


if __name__ == "__main__":
    sys.exit(main())
