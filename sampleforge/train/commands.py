"""CLI: ``sampleforge train vae|diffusion|vocoder|all --data DIR... --config FILE --out RUN [--resume]``."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sampleforge.errors import UserInputError
from sampleforge.params import int_at_least, positive_float

STAGE_CHOICES = ("vae", "diffusion", "vocoder", "vae-decoder", "all")
CONFIG_DEFAULT = Path("configs/default.json")
EXIT_STOPPED = 75  # EX_TEMPFAIL: stopped by --max-minutes or a signal before the end; --resume continues


def register(sub: Any) -> None:
    p = sub.add_parser("train", help="train a model stage on folders of drum samples (resumable)")
    p.add_argument("stage", choices=STAGE_CHOICES, help="vae, then diffusion; vocoder any time; all = vae, diffusion, vae-decoder (+ vocoder); vae-decoder: "
                   "fine-tune the VAE decoder alone (keeps the latents, so the diffusion model stays valid)")
    p.add_argument("--data", nargs="+", type=path_arg("a folder of samples"), default=None,
                   help="folders of samples or Hydrogen kits (default: the installed Hydrogen kits); the run folder "
                        "and the cache are never scanned")
    p.add_argument("--config", type=path_arg("a recipe file"), default=CONFIG_DEFAULT, help="recipe JSON")
    p.add_argument("--out", type=path_arg("a run folder"), required=True,
                   help="run folder; the model is built in OUT/model")
    p.add_argument("--resume", action="store_true", help="continue from OUT's checkpoints")
    p.add_argument("--max-minutes", type=positive_float, default=None,
                   help="stop cleanly (with a checkpoint) after N minutes; a run stopped before its last step exits "
                        f"with status {EXIT_STOPPED} (continue it with --resume), a finished one with 0")
    p.add_argument("--max-steps", type=int_at_least(0), default=None, help="override the config's max_steps")
    p.add_argument("--cache", type=path_arg("a cache folder"), default=None,
                   help="cache folder of the decoded clips (default $SAMPLEFORGE_CACHE or ~/.cache/sampleforge) and "
                        "of the synthesized ones, in CACHE/synth (default OUT/cache/synth)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train)


def path_arg(what: str) -> Callable[[str], Path]:
    """An argparse ``type``: a path, not empty (an empty one would mean the current folder); ``what`` names what
    to give instead."""
    def parse(text: str) -> Path:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"empty: give {what}")
        return Path(text)

    return parse


def cmd_train(args: argparse.Namespace) -> int:
    import time

    import torch

    from sampleforge.data.corpus import HYDROGEN_DIRS
    from sampleforge.train.loop import derived_seed, exclusive, train
    from sampleforge.train.recipe import load_recipe, training_clips
    from sampleforge.train.stage import StageContext

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    recipe = load_recipe(args.config)
    dirs = args.data or [str(d) for d in HYDROGEN_DIRS if d.is_dir()]
    if not dirs:
        raise UserInputError("--data: no folders given and no Hydrogen kits installed (`make data`)")
    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.cache
    stages = [args.stage]
    if args.stage == "all":  # the recipe of the shipped model; the vocoder only when the config has one
        stages = list(recipe.recipe.stages)
        if recipe.model.vocoder is not None and "vocoder" not in stages:
            stages.append("vocoder")
    deadline = time.monotonic() + args.max_minutes * 60 if args.max_minutes else None
    # one command at a time builds a run's model folder (in a distributed launch, the ranks of one command)
    with exclusive(args.out, main=int(os.environ.get("RANK", "0")) == 0):
        for stage in stages:
            clips, held = training_clips(dirs, recipe.data, cache or args.out / "cache", stage, exclude=[args.out])
            print(f"{stage}: {len(clips)} training clips, {len(held)} held out "
                  f"({', '.join(recipe.data.held_out_kits) or 'none'})")
            cfg = recipe.train[stage]
            if args.max_steps is not None:
                cfg.max_steps = args.max_steps
            ctx = StageContext(run_dir=args.out, model_config=recipe.model, data=recipe.data, recipe=recipe.recipe,
                               clips=clips, held_out=held, cache_dir=cache, seed=cfg.seed)
            torch.manual_seed(derived_seed(cfg.seed, "init", stage))  # initial weights: a fresh run is repeatable
            task = _task(stage, ctx)
            minutes = None if deadline is None else max(0.0, (deadline - time.monotonic()) / 60)
            result = train(task, cfg, args.out / stage, resume=args.resume, max_minutes=minutes,
                           progress=not args.no_progress)
            print(f"{stage}: {result.describe()}")
            if int(os.environ.get("RANK", "0")) == 0:  # one process writes the model folder
                ctx.install_export(result.export_dir)
            if getattr(result, "stopped_early", False):
                print(f"stopped early (time limit or signal); continue with: {resume_command(args)}")
                return EXIT_STOPPED
    print(f"model folder: {args.out / 'model'}")
    return 0


def resume_command(args: argparse.Namespace) -> str:
    """The command line that continues this run: its stage, data, config, cache and step limit again, with
    --resume (not the time limit: a new one is the user's to give)."""
    words = ["sampleforge", "train", args.stage, "--resume", "--out", str(args.out)]
    if args.data:
        words += ["--data", *map(str, args.data)]
    if args.config != CONFIG_DEFAULT:
        words += ["--config", str(args.config)]
    if args.cache is not None:
        words += ["--cache", str(args.cache)]
    if args.max_steps is not None:
        words += ["--max-steps", str(args.max_steps)]
    return shlex.join(words)


def _task(stage: str, ctx: Any) -> Any:
    if stage in ("vae", "vae-decoder"):
        from sampleforge.train.vae import VAETask

        return VAETask(ctx, decoder_only=stage == "vae-decoder")
    if stage == "diffusion":
        from sampleforge.train.diffusion import DiffusionTask

        return DiffusionTask(ctx)
    from sampleforge.train.vocoder import VocoderTask

    return VocoderTask(ctx)
