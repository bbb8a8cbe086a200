"""CLI: ``sampleforge vary``, ``sampleforge morph``, ``sampleforge kit`` (the functions of ``workflow``).

Their settings are ``GenerationParams`` flags (``params.add_arguments``); a bad value is a one-line error
naming the flag before the model loads.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sampleforge.commands import OTHER_AUDIO_SUFFIXES, _progress, add_vocoder_flags, vocoder_flags
from sampleforge.errors import UserInputError
from sampleforge.params import GENERATE_SETTINGS, add_arguments, from_namespace

# the settings every workflow command takes besides its own (sampling, knobs, format, length, seed); not the
# model and loading settings of other people's models (the workflow runs on sampleforge models only), nor the
# judging of candidates (kit takes it as its own)
OTHER_MODELS = ("model", "offload", "decode_chunk", "quantize", "channels", "init_audio", "init_noise", "mask_start",
                "mask_end")
COMMON = tuple(name for name in GENERATE_SETTINGS if name not in ("prompt", "count", "candidates", *OTHER_MODELS))


def _flags(p: argparse.ArgumentParser, own: tuple[str, ...], base: Any = None) -> None:
    add_arguments(p, (*own, *COMMON), base=base)
    p.add_argument("--model", default=None, help="model folder or shipped name, or MODEL+VOCODER "
                   "(drums-v2+drums-vocoder-v1; default drums-v2)")
    add_vocoder_flags(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def register(sub: Any) -> None:
    from sampleforge.kit.pieces import KIT_DEFAULTS

    v = sub.add_parser("vary", help="variations of your own sample (audio-to-audio)")
    _flags(v, ("input", "strength", "fit_steps", "count", "prompt"))
    v.add_argument("--out-dir", type=Path, default=Path("generations"))
    v.set_defaults(func=cmd_vary)

    m = sub.add_parser("morph", help="morph between two prompts, seeds or samples in N steps")
    _flags(m, ("prompt", "morph_steps", "strength", "fit_steps"))
    m.add_argument("--from-prompt", nargs="+", default=None, metavar="WORD",
                   help="the first end's prompt (default --prompt)")
    m.add_argument("--to-prompt", nargs="+", default=None, metavar="WORD",
                   help="the last end's prompt (default --prompt)")
    m.add_argument("--from-seed", type=int, default=None, help="the first end's seed (default --seed)")
    m.add_argument("--to-seed", type=int, default=None, help="the last end's seed (default: the first's + 1)")
    m.add_argument("--from-input", type=Path, default=None, help="a sample as the first end (needs --to-input)")
    m.add_argument("--to-input", type=Path, default=None, help="a sample as the last end")
    m.add_argument("--out-dir", type=Path, default=Path("generations"))
    m.set_defaults(func=cmd_morph)

    k = sub.add_parser("kit", help="a drum kit with a shared character, for samplers (SFZ, Decent Sampler, "
                                   "Hydrogen, GM map)")
    _flags(k, ("prompt", "pieces", "round_robins", "velocity_layers", "relatedness", "candidates"), base=KIT_DEFAULTS)
    k.add_argument("--out-dir", type=Path, required=True, help="a new or empty folder")
    k.add_argument("--name", nargs="+", default=None, metavar="WORD", help="kit name (default: from the prompt)")
    k.add_argument("--overwrite", action="store_true", help="write into a folder that is not empty (an earlier kit's "
                   "files there are replaced, never files of your own)")
    k.set_defaults(func=cmd_kit)


def _run(fn: Any, quiet: bool, *args: Any, **kwargs: Any) -> Any:
    bar, callback = _progress(1, quiet)
    try:
        return fn(*args, callback=callback, warn=_warn, **kwargs)
    finally:
        if bar is not None:
            bar.close()


def _warn(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr)


def _words(value: list[str] | None) -> str | None:
    """The text of a flag that takes several words (``--to-prompt punchy snare``)."""
    return None if value is None else " ".join(value)


# what read_audio reads, and other audio files: a word of the prompt ending so is a sample given one too many
AUDIO_SUFFIXES = (".wav", ".wave", ".flac", *OTHER_AUDIO_SUFFIXES)


def _samples_in(prompt: str) -> list[str]:
    """The words of ``prompt`` that name audio files (`vary a.wav b.wav`: b.wav is no prompt word)."""
    return [w for w in prompt.split() if w.lower().endswith(AUDIO_SUFFIXES)]


def cmd_vary(args: argparse.Namespace) -> int:
    if args.input is not None and args.input_word is not None and not _samples_in(args.input_word):
        # the sample given by --input: the words without a flag are all the prompt's (`vary --input a.wav kick`)
        args.prompt_words = [args.input_word, *(args.prompt_words or [])]
        args.input_word = None
    params = from_namespace(args)
    extra = _samples_in(params.prompt)
    if extra and params.input is not None:
        raise UserInputError(f"--input takes one sample, and {extra[0]} would be read as the prompt: vary one "
                             "sample at a time")
    if extra:
        raise UserInputError(f"{extra[0]} would be read as the prompt: give the sample to vary first "
                             f"(vary {extra[0]} WORDS...) or with --input")
    if params.input is None:
        raise UserInputError("--input: give the sample to vary")
    if not Path(params.input).is_file():
        raise UserInputError(f"--input: {params.input} is not a file")
    from sampleforge import workflow

    paths = _run(workflow.vary, args.quiet, None, params, out_dir=args.out_dir, model=args.model,
                 vocoder=vocoder_flags(args))
    for p in paths:
        print(p)
    return 0


def cmd_morph(args: argparse.Namespace) -> int:
    params = from_namespace(args).with_seed()
    extra = _samples_in(params.prompt)
    if extra:
        raise UserInputError(f"--from-input and --to-input take one sample each, and {extra[0]} would be read as "
                             "the prompt")
    if (args.from_input is None) != (args.to_input is None):
        raise UserInputError("--from-input and --to-input go together")
    from_prompt, to_prompt = _words(args.from_prompt), _words(args.to_prompt)
    if from_prompt is not None and to_prompt is not None and params.prompt:
        raise UserInputError(f"the prompt {params.prompt!r} is used by neither end: --from-prompt and --to-prompt "
                             "give both")
    if (from_prompt is None) != (to_prompt is None) and not params.prompt.strip() and args.from_input is None:
        given, other = ("--from-prompt", "--to-prompt") if to_prompt is None else ("--to-prompt", "--from-prompt")
        raise UserInputError(f"{given} gives one end only: give the other with {other} (or the prompt both share)")
    for flag in ("from_seed", "to_seed"):
        value = getattr(args, flag)
        if value is not None and not 0 <= value < 2**31:
            raise UserInputError(f"--{flag.replace('_', '-')} must be an integer between 0 and {2**31 - 1}, got {value}")
    from sampleforge import workflow
    from sampleforge.pipeline import MorphEnd

    a = MorphEnd(from_prompt if from_prompt is not None else params.prompt,
                 args.from_seed if args.from_seed is not None else params.seed, args.from_input)
    b = MorphEnd(to_prompt if to_prompt is not None else params.prompt, args.to_seed, args.to_input)
    paths = _run(workflow.morph, args.quiet, a, b, params, out_dir=args.out_dir, model=args.model,
                 vocoder=vocoder_flags(args))
    for p in paths:
        print(p)
    return 0


def cmd_kit(args: argparse.Namespace) -> int:
    from sampleforge.kit.pieces import KIT_DEFAULTS
    from sampleforge.kit.writers import check_name, check_out_dir

    params = from_namespace(args, base=KIT_DEFAULTS)
    vocoder = vocoder_flags(args)  # a contradiction answers before the folder is made
    if args.name is not None:
        check_name(_words(args.name))
    check_out_dir(args.out_dir, args.overwrite)  # before loading the model
    from sampleforge import workflow
    from sampleforge.kit.writers import KIT_FILES

    out = _run(workflow.make_kit, args.quiet, args.out_dir, params, name=_words(args.name), overwrite=args.overwrite,
               model=args.model, vocoder=vocoder)
    samples = json.loads((out / "kit.json").read_text(encoding="utf-8"))["samples"]  # the kit's files, not the user's
    print(f"{out}: {len(samples) + len(KIT_FILES)} files ({len(samples)} samples, {', '.join(KIT_FILES)})")
    return 0
