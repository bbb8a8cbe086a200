"""The ``sampleforge`` command: a thin dispatcher. Each area registers its own sub-commands.

Every sub-command module exposes ``register(subparsers) -> None`` which adds its parser(s) and
sets ``func`` (a callable taking the parsed ``argparse.Namespace`` and returning an exit code).
Errors the user can fix (``SampleforgeError``, ``ConfigError``) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from sampleforge.errors import ConfigError, SampleforgeError

# module path of each group of sub-commands; imported lazily so `sampleforge --help` stays fast
COMMAND_MODULES = [
    "sampleforge.commands",  # generate, vocab, demo
    "sampleforge.data.commands",  # data scan
    "sampleforge.train.commands",  # train vae|diffusion|vocoder
    "sampleforge.eval.commands",  # eval, sweep, doctor, inspect
    "sampleforge.serve.commands",  # serve, worker
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sampleforge", description="Drum one-shots from keyword prompts.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that area is not installed in this build
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (SampleforgeError, ConfigError) as exc:
        print(f"sampleforge {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
