"""CLI: ``sampleforge generate``, ``sampleforge vocab``, ``sampleforge demo``."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from sampleforge.errors import UserInputError

DEMO_CLASSES = ("kick", "snare", "closed_hat", "open_hat", "clap", "tom", "crash")


def register(sub: Any) -> None:
    p = sub.add_parser("generate", help="generate drum one-shots from a keyword prompt")
    p.add_argument("--prompt", default="", help='keywords, e.g. "punchy 808 kick"')
    p.add_argument("--cfg-scale", type=float, default=3.0, help="classifier-free guidance scale (default 3)")
    p.add_argument("--steps", type=int, default=50, help="sampling steps (default 50)")
    p.add_argument("--seed", type=int, default=None, help="seed; clip k of --count uses seed + k")
    p.add_argument("--output", type=Path, default=None, help="output WAV (with --count > 1: numbered _1, _2...)")
    p.add_argument("--out-dir", type=Path, default=None, help="folder for auto-named files (default generations/)")
    p.add_argument("--count", type=int, default=1, help="number of clips")
    p.add_argument("--sampler", default="ddim", help="ddim, euler, euler_ancestral, heun, dpmpp_2m, ...")
    p.add_argument("--duration", type=float, default=None, help="seconds (default: the model's, 2 s)")
    p.add_argument("--model", default=None, help="model folder or shipped name (default drums-v1)")
    p.add_argument("--diffusion-ckpt", default=None, help="U-Net weights (.safetensors) or a model folder")
    p.add_argument("--vae-ckpt", default=None, help="VAE weights (.safetensors) or a model folder")
    p.add_argument("--vocoder-ckpt", default=None, help="vocoder weights (.safetensors) or a model folder")
    p.add_argument("--no-vocoder", action="store_true", help="Griffin-Lim instead of the neural vocoder")
    p.add_argument("--format", choices=("wav", "flac"), default="wav")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="bf16: the U-Net in bfloat16, ~2x faster for big --count on CPUs with AVX512-BF16 (default fp32)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_generate)

    v = sub.add_parser("vocab", help="list the keywords a model knows, with their counts in its training data")
    v.add_argument("--model", default=None)
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=cmd_vocab)

    d = sub.add_parser("demo", help="generate a small drum pack with the shipped model")
    d.add_argument("--out-dir", type=Path, default=Path("generations"))
    d.add_argument("--per-class", type=int, default=3)
    d.add_argument("--model", default=None)
    d.add_argument("--seed", type=int, default=1)
    d.set_defaults(func=cmd_demo)


def _check_args(args: argparse.Namespace) -> None:
    if args.steps < 1:
        raise UserInputError(f"--steps must be at least 1, got {args.steps}")
    if not math.isfinite(args.cfg_scale) or args.cfg_scale < 0:
        raise UserInputError(f"--cfg-scale must be a finite number >= 0, got {args.cfg_scale}")
    if args.count < 1:
        raise UserInputError(f"--count must be at least 1, got {args.count}")
    if args.seed is not None and args.seed < 0:
        raise UserInputError(f"--seed must be >= 0, got {args.seed}")
    if args.no_vocoder and args.vocoder_ckpt:
        raise UserInputError("--no-vocoder and --vocoder-ckpt contradict each other")


def _progress(total_clips: int, quiet: bool) -> Any:
    if quiet:
        return None, None
    from tqdm import tqdm

    bar = tqdm(desc="sampling", unit="step", file=sys.stderr, leave=False)

    def callback(i: int, total: int) -> None:
        if bar.total != total:
            bar.reset(total=total)
        bar.n = i + 1 if i + 1 <= total else total
        bar.refresh()

    return bar, callback


def cmd_generate(args: argparse.Namespace) -> int:
    _check_args(args)  # before the heavy imports: a bad value answers at once
    import secrets

    from sampleforge import api
    from sampleforge.audio.io import write_audio

    if args.output is not None:  # fail before loading anything
        api.check_writable(args.output)
    elif args.out_dir is not None:
        api.check_writable(args.out_dir / "probe.wav")
    default: Any = api._DEFAULT
    vocoder = None if args.no_vocoder else (args.vocoder_ckpt or default)
    gen, use_vocoder = api.load_generator(args.diffusion_ckpt or default, args.vae_ckpt or default, vocoder,
                                          model=args.model)
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    outs: list[Path] = []
    for k in range(args.count):
        if args.output is not None:
            out = args.output if args.count == 1 else args.output.with_name(f"{args.output.stem}_{k + 1}{args.output.suffix}")
        else:
            out = api.auto_name(args.prompt, seed + k, gen.id, args.steps, args.cfg_scale)
            if args.out_dir is not None:
                out = args.out_dir / out.name
        if args.format == "flac" and out.suffix.lower() == ".wav":
            out = out.with_suffix(".flac")
        api.check_writable(out)
        outs.append(out)
    for w in gen.check_prompt(args.prompt):
        print(f"warning: {w}", file=sys.stderr)
    bar, callback = _progress(args.count, args.quiet)
    try:
        result = gen.generate_full(args.prompt, n=args.count, steps=args.steps, cfg_scale=args.cfg_scale,
                                   sampler=args.sampler, seed=seed, duration=args.duration, vocoder=use_vocoder,
                                   callback=callback, precision=args.precision)
    finally:
        if bar is not None:
            bar.close()
    for out, wav, s in zip(outs, result.audio, result.seeds, strict=True):
        meta = api.metadata_for(args.prompt, s, gen.id, args.steps, args.cfg_scale, args.sampler)
        write_audio(out, wav.numpy(), gen.sample_rate, meta, format=args.format)
        print(out)
    return 0


def cmd_vocab(args: argparse.Namespace) -> int:
    from sampleforge.bundle import DEFAULT_MODEL, resolve_model
    from sampleforge.text.keywords import Vocabulary

    path = resolve_model(args.model or DEFAULT_MODEL)
    vocab = Vocabulary.load(path / "vocab.json")
    counts = dict(vocab.counts)
    if args.json:
        print(json.dumps({"keywords": counts, "classes": vocab.classes} if vocab.classes else counts, indent=2))
        return 0
    per_class = " per class" if vocab.classes else ""
    print(f"{len(counts)} keywords in {path.name} (word: clips in the training data{per_class})")
    width = max((len(w) for w in counts), default=4)
    for word, n in counts.items():
        split = ", ".join(f"{c} {k}" for c, k in vocab.classes.get(word, {}).items())
        print(f"  {word:<{width}}  {n:>4}" + (f"  ({split})" if split else ""))
    _print_knob_words(path)
    return 0


def _print_knob_words(path: Path) -> None:
    """The words that act through timbre knobs, for a model conditioned on knobs."""
    from sampleforge.bundle import read_config
    from sampleforge.timbre import WORD_KNOBS

    knobs = read_config(path).text.knobs
    if not knobs:
        return
    print(f"\ntimbre knobs: {', '.join(knobs)} (0-1, quantiles within the class); words that set them:")
    for word, values in WORD_KNOBS.items():
        if set(values) & set(knobs):
            print(f"  {word:<8} " + ", ".join(f"{k} {v:.2f}" for k, v in values.items() if k in knobs))


def cmd_demo(args: argparse.Namespace) -> int:
    """A small pack: a few clips of each main class, with per-clip stats."""
    from sampleforge.bundle import DEFAULT_MODEL, resolve_model
    from sampleforge.errors import CheckpointError

    try:
        resolve_model(args.model or DEFAULT_MODEL)
    except CheckpointError as exc:
        print(f"no model to demo ({exc}); rendering synthesized drums instead", file=sys.stderr)
        return _demo_synth(args)
    import time

    import numpy as np

    from sampleforge import api
    from sampleforge.audio.io import write_wav
    from sampleforge.taxonomy import CATEGORY_PROMPTS

    gen, _ = api.load_generator(model=args.model)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    prompts = [CATEGORY_PROMPTS[c] for c in DEMO_CLASSES]
    t0 = time.perf_counter()
    result = gen.generate_full(prompts, n=args.per_class, steps=50, cfg_scale=3.0, seed=args.seed)
    seconds = time.perf_counter() - t0
    print(f"{len(result.prompts)} clips with {gen.id} in {seconds:.2f} s ({seconds / len(result.prompts):.3f} s/clip)")
    for prompt, seed, wav in zip(result.prompts, result.seeds, result.audio, strict=True):
        out = args.out_dir / api.auto_name(prompt, seed, gen.id, 50, 3.0).name
        write_wav(out, wav.numpy(), gen.sample_rate, api.metadata_for(prompt, seed, gen.id, 50, 3.0, "ddim"))
        x = wav.numpy()
        print(f"  {str(out):<60} peak {np.abs(x).max():.3f}  rms {20 * np.log10(np.sqrt(np.mean(x**2)) + 1e-12):6.1f} dBFS")
    return 0


def _demo_synth(args: argparse.Namespace) -> int:
    from sampleforge.data.synth import render_kit

    clips = render_kit(args.out_dir / "synth", args.per_class, args.seed)
    for clip in clips:
        print(f"  {clip.path}  ({clip.category}: {' '.join(clip.keywords)})")
    return 0
