"""CLI: ``sampleforge generate``, ``sampleforge vocab``, ``sampleforge demo``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sampleforge.errors import UserInputError, names_a_folder
from sampleforge.params import (
    GENERATE_SETTINGS,
    SPECS,
    GenerationParams,
    ParamError,
    add_arguments,
    from_namespace,
)


def register(sub: Any) -> None:
    p = sub.add_parser("generate", help="generate audio from a prompt with any supported model",
                       description="Drum one-shots with sampleforge's models, or audio with other people's "
                       "(diffusers Stable Audio / AudioLDM2 folders, hf:OWNER/NAME, audio-diffusion-pytorch .ckpt).")
    add_arguments(p, GENERATE_SETTINGS)
    p.add_argument("--output", type=output_file, default=None,
                   help="output file (with --count > 1: numbered _1, _2...)")
    p.add_argument("--out-dir", type=Path, default=None, help="folder for auto-named files (default generations/)")
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    p.add_argument("--diffusion-ckpt", default=None, type=weights_name, help="U-Net weights (.safetensors) or a model folder")
    p.add_argument("--vae-ckpt", default=None, type=weights_name, help="VAE weights (.safetensors) or a model folder")
    add_vocoder_flags(p)
    p.add_argument("--verbose", action="store_true", help="per-stage times and peak memory on stderr")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_generate)

    v = sub.add_parser("vocab", help="list the keywords a model knows, with their counts in its training data")
    v.add_argument("--model", default=None)
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=cmd_vocab)

    d = sub.add_parser("demo", help="generate a small drum pack with the shipped model (synthesized drums when "
                                    "it is not installed)")
    d.add_argument("--out-dir", type=Path, default=Path("generations"), help="where the pack goes (default generations/)")
    d.add_argument("--per-class", type=int, default=3, help="clips of each drum class (default 3)")
    d.add_argument("--model", default=None, help="model folder or shipped name (default: the shipped model)")
    d.add_argument("--seed", type=int, default=1, help="seed of the first clip; clip k uses seed + k (default 1)")
    d.set_defaults(func=cmd_demo)


def _progress(total_clips: int, quiet: bool) -> Any:
    if quiet:
        return None, None
    from tqdm import tqdm

    bar = tqdm(desc="sampling", unit="step", file=sys.stderr, leave=False, delay=1e9)  # shown at the first step

    def callback(i: int, total: int) -> None:
        if bar.total != total:
            bar.reset(total=total)
            bar.delay = 0
        bar.n = i + 1 if i + 1 <= total else total
        bar.refresh()

    return bar, callback


def output_file(text: str) -> Path:
    """An argparse ``type``: a file name; one ending in a slash, ``.`` or ``..`` names a folder, which is
    --out-dir's (a WAV was written by the folder's name)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty: give a file name (e.g. --output kick.wav)")
    if names_a_folder(text):
        raise argparse.ArgumentTypeError(f"{text} names a folder: give a file name, or use --out-dir {text}")
    return Path(text)


def weights_name(text: str) -> str:
    """An argparse ``type``: a folder, name or weights file, not empty (an empty one would read as 'not given')."""
    if not text.strip():
        raise argparse.ArgumentTypeError("empty: give a folder, a name or a .safetensors file")
    return text


def add_vocoder_flags(p: argparse.ArgumentParser) -> None:
    """--vocoder-ckpt and --no-vocoder, as generate, vary, morph and kit take them (``vocoder_flags`` reads them)."""
    p.add_argument("--vocoder-ckpt", default=None, type=weights_name,
                   help="a vocoder folder or name (drums-vocoder-v1), a model folder, or vocoder weights (.safetensors)")
    p.add_argument("--no-vocoder", action="store_true", help="Griffin-Lim instead of the neural vocoder")


def vocoder_flags(args: argparse.Namespace) -> bool | str:
    """The vocoder ``add_vocoder_flags`` asked for: a folder, name or file; False for Griffin-Lim; True for the
    model's own. Both flags at once, or either with a ``--model MODEL+VOCODER``, are a one-line error."""
    if args.no_vocoder and args.vocoder_ckpt:
        raise UserInputError("--no-vocoder and --vocoder-ckpt contradict each other")
    if args.no_vocoder or args.vocoder_ckpt:
        from sampleforge.backends.resolve import refuse_second_vocoder

        refuse_second_vocoder(getattr(args, "model", None), "--no-vocoder" if args.no_vocoder else "--vocoder-ckpt",
                              "--model")
    return args.vocoder_ckpt or not args.no_vocoder


# suffixes of audio formats sampleforge does not write: a WAV by such a name would mislead
OTHER_AUDIO_SUFFIXES = (".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aif", ".aiff", ".wma")


def _check_output_flags(args: argparse.Namespace) -> None:
    """--output and --out-dir are one or the other; --output x.flac without --format means FLAC."""
    if args.output is None:
        return
    if args.out_dir is not None:
        raise UserInputError("--output names the file, --out-dir the folder of auto-named files: give one of them")
    from sampleforge import api

    args.format = api.output_format(args.output, args.format, "output", cli=True)


def cmd_generate(args: argparse.Namespace) -> int:
    _check_output_flags(args)
    params = from_namespace(args).with_seed()  # before the heavy imports: a bad value answers at once
    choice = vocoder_flags(args)
    from sampleforge import api
    from sampleforge.backends.memory import measure_peak

    if args.output is not None:  # fail before loading anything
        api.check_writable(args.output)
    elif args.out_dir is not None:
        api.check_writable(args.out_dir / "probe.wav", "out_dir")
    gen, use_vocoder = _load_model(args, params, choice)
    named = api.named_settings(params)
    params = gen.resolve(params)
    assert params.seed is not None and params.sampler is not None
    outs = [_output_path(args, params, gen.id, k, named) for k in range(params.count)]
    for out in outs:
        api.check_writable(out, "output" if args.output is not None else "out_dir")
    for w in gen.check_prompt(params.prompt):
        print(f"warning: {w}", file=sys.stderr)
    bar, callback = _progress(params.count, args.quiet)
    try:
        with measure_peak(gen.device) as peak:
            result = gen.run(params, vocoder=use_vocoder, callback=callback)
    finally:
        if bar is not None:
            bar.close()
    shown = set(gen.check_prompt(params.prompt))
    for w in result.warnings:
        if w not in shown:
            print(f"warning: {w}", file=sys.stderr)
    if args.verbose:
        print(verbose_line(gen, result.stats, peak, result.params), file=sys.stderr)
    common = api.provenance(gen, params)  # the clips differ by seed only
    for k, (out, wav, s) in enumerate(zip(outs, result.audio, result.seeds, strict=True)):
        api.write_clip(out, wav, gen.sample_rate, params,
                       {**common, "seed": str(s), **api.candidate_meta(result.candidates, k)})
        print(out)
    return 0


def _load_model(args: argparse.Namespace, params: GenerationParams, vocoder: bool | str) -> tuple[Any, bool]:
    """(the backend for --model and the load-time settings, whether to use a sampleforge model's vocoder);
    ``vocoder``: ``vocoder_flags``' choice."""
    from sampleforge import api
    from sampleforge.backends import BackendOptions, load_backend, resolve

    overrides = args.diffusion_ckpt or args.vae_ckpt or args.vocoder_ckpt or args.no_vocoder
    if params.model is not None and resolve(params.model).format != "sampleforge":
        if overrides:
            raise UserInputError("--diffusion-ckpt, --vae-ckpt, --vocoder-ckpt and --no-vocoder apply to "
                                 "sampleforge models only")
        return load_backend(params.model, BackendOptions.from_params(params, args.device)), True
    if overrides or (args.device is None and params.quantize == "none"):
        default: Any = api._DEFAULT  # the load-time settings apply with replaced components too
        return api.load_generator(args.diffusion_ckpt or default, args.vae_ckpt or default,
                                  api.vocoder_checkpoint(vocoder), model=params.model,
                                  options=BackendOptions.from_params(params, args.device))
    from sampleforge.bundle import DEFAULT_MODEL

    return load_backend(params.model or DEFAULT_MODEL, BackendOptions.from_params(params, args.device)), True


def verbose_line(gen: Any, stats: dict[str, float], peak: Any, params: GenerationParams | None = None) -> str:
    """One line: the settings as run (the model's own defaults filled in), the stages' times and peak memory,
    and the process's peak resident memory."""
    from sampleforge.backends.memory import process_peak_bytes

    parts = [f"model {gen.id} ({gen.kind}) on {gen.device}"]
    if params is not None:
        parts.append(f"{params.sampler}, {params.steps} steps, cfg {params.cfg_scale:g}, {params.duration:g} s")
    for stage in ("sample", "decode"):
        if f"{stage}_s" in stats:
            mem = stats.get(f"{stage}_peak_mib")
            parts.append(f"{stage} {stats[f'{stage}_s']:.2f} s" + (f" (+{mem:.1f} MiB peak)" if mem is not None else ""))
    total = f"generate {peak.seconds:.2f} s"
    if peak.mib is not None:
        total += f", peak +{peak.mib:.1f} MiB {'on the GPU' if peak.where == 'cuda' else 'resident'}"
    parts.append(total)
    proc = process_peak_bytes()
    if proc is not None:
        parts.append(f"process peak {proc / 2**20:.0f} MiB")
    return "; ".join(parts)


def _output_path(args: argparse.Namespace, params: GenerationParams, model: str, k: int,
                 named: dict[str, Any]) -> Path:
    """Where clip k goes: ``--output`` (numbered when --count > 1) or an auto name (in ``--out-dir``); ``named``:
    ``api.named_settings`` of the settings as asked."""
    from sampleforge import api

    assert params.seed is not None and params.steps is not None and params.cfg_scale is not None
    if args.output is not None:
        out: Path = args.output if params.count == 1 else \
            args.output.with_name(f"{args.output.stem}_{k + 1}{args.output.suffix}")
    else:
        out = api.auto_name(params.prompt, params.seed + k, model, params.steps, params.cfg_scale, named)
        if args.out_dir is not None:
            out = args.out_dir / out.name
    return api.audio_suffix(out, params.format)


def cmd_vocab(args: argparse.Namespace) -> int:
    from sampleforge.backends.resolve import resolve
    from sampleforge.bundle import DEFAULT_MODEL, not_a_model, read_timbre
    from sampleforge.errors import CheckpointError
    from sampleforge.model_config import read_config
    from sampleforge.text.keywords import Vocabulary
    from sampleforge.timbre import word_table

    ref = resolve(DEFAULT_MODEL if args.model is None else args.model)  # MODEL+VOCODER: MODEL's keywords
    if ref.format != "sampleforge":
        raise UserInputError(f"--model {ref.spec}: a {ref.format} model has no keyword vocabulary")
    path = ref.path
    if (other := not_a_model(path)) is not None:
        raise CheckpointError(other)
    vocab = Vocabulary.load(path / "vocab.json")
    counts = dict(vocab.counts)
    table = word_table(read_config(path).text.knobs, read_timbre(path))
    if args.json:
        full = {"keywords": counts, **({"classes": vocab.classes} if vocab.classes else {}),
                **({"timbre": table} if table else {})}
        print(json.dumps(full if len(full) > 1 else counts, indent=2))
        return 0
    per_class = " per class" if vocab.classes else ""
    print(f"{len(counts)} keywords in {path.name} (word: clips in the training data{per_class})")
    width = max((len(w) for w in counts), default=4)
    for word, n in counts.items():
        split = ", ".join(f"{c} {k}" for c, k in vocab.classes.get(word, {}).items())
        print(f"  {word:<{width}}  {n:>4}" + (f"  ({split})" if split else ""))
    _print_knob_words(table)
    return 0


def _print_knob_words(table: dict[str, Any]) -> None:
    """The words that act through timbre knobs (``timbre.word_table``), for a model conditioned on knobs."""
    if not table:
        return
    knobs = table["knobs"]
    print(f"\ntimbre knobs: {', '.join(knobs)} (0-1, quantiles within the class); words that set them:")
    for word, values in table["words"].items():
        print(f"  {word:<8} " + ", ".join(f"{k} {v:.2f}" for k, v in values.items()))
    measured = table["class_words"]
    if any(measured.values()):
        print("what words mean for each class, measured on the real training clips (these come first):")
        width = max(len(f"{w} {c}") for c, words in measured.items() for w in words)
        for category, words in measured.items():
            for word, values in words.items():
                print(f"  {word + ' ' + category:<{width}}  " + ", ".join(f"{k} {v:.2f}" for k, v in values.items()))
    if table["knob_limits"]:
        print("how far a word may move each knob before the class stops being itself (sampleforge eval knob-limits; "
              "a value you set is not limited):")
        for category, bounds in table["knob_limits"].items():
            print(f"  {category:<11} " + "  ".join(f"{k} {lo:.2f}-{hi:.2f}" for k, (lo, hi) in bounds.items()))
    _print_word_reaches(table["word_reach"], "words whose knobs go only part of the way from the middle together for "
                        "a class, or the class would not hold, and words that leave it whatever their knobs "
                        "(sampleforge eval word-reach):")
    if table["pair_reach"]:
        print("two words that set two knobs toward these ends (or a class's own word and another's knob end) go only "
              "part of the way from the middle together, and three words that set three go further, or the class "
              "would not hold (sampleforge eval pair-reach; 1: as far as the words say):")
        for category, corners in table["pair_reach"].items():
            print(f"  {category:<11} " + "  ".join(
                f"({c.replace(':', ' ').replace('+', ', ')}) {'leaves the class' if f is None else f'{f:g}'}"
                for c, f in corners.items()))
    _print_word_reaches(table["keyword_reach"], "keywords given only part of their strength for a class, or the "
                        "class would not hold (sampleforge eval keyword-reach):")


def _print_word_reaches(table: dict[str, dict[str, float | None]], heading: str) -> None:
    """A class -> word -> reach table of ``vocab`` under its heading (nothing when it is empty)."""
    if table:
        print(heading)
        for category, words in table.items():
            print(f"  {category:<11} " + "  ".join(f"{w} {'leaves the class' if f is None else f'{f:g}'}"
                                                  for w, f in words.items()))


def cmd_demo(args: argparse.Namespace) -> int:
    """A small pack: a few clips of each main class, with per-clip stats."""
    from sampleforge.backends.resolve import resolve
    from sampleforge.bundle import DEFAULT_MODEL
    from sampleforge.errors import CheckpointError, file_in_the_way

    for flag, name, value in (("--per-class", "count", args.per_class), ("--seed", "seed", args.seed)):
        try:  # before anything loads, named by its flag
            SPECS[name].check(value)
        except ParamError as exc:
            raise exc.renamed(flag) from None
    in_the_way = file_in_the_way(args.out_dir)  # before anything loads
    if in_the_way:
        raise ParamError("out_dir", f": {in_the_way}")
    try:
        resolve(DEFAULT_MODEL if args.model is None else args.model)
    except CheckpointError as exc:
        if args.model is not None:  # the user's model, not the shipped one: its problem is an error
            raise
        print(f"no model to demo ({exc}); rendering synthesized drums instead", file=sys.stderr)
        return _demo_synth(args)
    import time

    import numpy as np

    from sampleforge import api
    from sampleforge.audio.io import write_wav
    from sampleforge.taxonomy import CATEGORY_PROMPTS, MAIN_CLASSES

    gen, _ = api.load_generator(model=args.model)
    prompts = [CATEGORY_PROMPTS[c] for c in MAIN_CLASSES]
    asked = GenerationParams.from_kwargs({"n": args.per_class, "seed": args.seed})  # as generate_full reads them
    plan = gen.plan(asked, prompts)
    planned = _demo_names(args.out_dir, gen, plan.params, plan.prompts, plan.seeds)
    for out in planned:  # before generating: an earlier clip is replaced, a file of the user's never
        api.check_writable(out, "out_dir")
    t0 = time.perf_counter()
    result = gen.generate_full(prompts, n=args.per_class, seed=args.seed)
    p = result.params
    seconds = time.perf_counter() - t0
    for w in result.warnings:  # as generate says them
        print(f"warning: {w}", file=sys.stderr)
    print(f"{len(result.prompts)} clips with {gen.id} in {seconds:.2f} s ({seconds / len(result.prompts):.3f} s/clip)")
    names = _demo_names(args.out_dir, gen, p, result.prompts, result.seeds)
    if names != planned:
        for out in names:
            api.check_writable(out, "out_dir")
    for out, prompt, seed, wav in zip(names, result.prompts, result.seeds, result.audio, strict=True):
        assert p.sampler is not None
        write_wav(out, wav.numpy(), gen.sample_rate, api.provenance(gen, p, prompt=prompt, seed=seed))
        x = wav.numpy()
        print(f"  {str(out):<60} peak {np.abs(x).max():.3f}  rms {20 * np.log10(np.sqrt(np.mean(x**2)) + 1e-12):6.1f} dBFS")
    return 0


def _demo_names(out_dir: Path, gen: Any, p: GenerationParams, prompts: list[str], seeds: list[int]) -> list[Path]:
    """The demo's clips' files in ``out_dir``: ``api.auto_name`` of each prompt and seed."""
    from sampleforge import api

    assert p.steps is not None and p.cfg_scale is not None
    return [out_dir / api.auto_name(x, s, gen.id, p.steps, p.cfg_scale).name for x, s in zip(prompts, seeds, strict=True)]


def _demo_synth(args: argparse.Namespace) -> int:
    """The synthesized fallback: ``data synth``'s kit in OUT/synth (refused, before anything is written, when that
    folder holds files the synth did not write; an earlier fallback's are replaced)."""
    from sampleforge.data.synth import render_kit

    clips = render_kit(args.out_dir / "synth", args.per_class, args.seed, setting="out_dir")
    for clip in clips:
        print(f"  {clip.path}  ({clip.category}: {' '.join(clip.keywords)})")
    return 0
