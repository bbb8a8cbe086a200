"""The producer's workflow, measured: natural lengths per class, what the old tail fade cut, and the time of a
variation batch and of a whole kit.

    python -m benchmarks.workflow [--model drums-v2] [--per-class 4] [--steps 25] [--sampler dpmpp_2m]

``--model`` defaults to the default model (drums-v2); the first line of the output names the model timed.

Per class: the median ``--length auto`` length (s) of generated clips, the share of the fixed 2-s file that
was silence, and the tail the old fixed fade (30 ms ending at -60 dB) attenuated that the natural fade keeps
(ms above -60 dB). Then seconds for ``vary`` (8 variations) and for the default 11-piece kit.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from sampleforge.audio.finish import apply_length, finish, tail_end
from sampleforge.kit.build import build_kit
from sampleforge.locations import DEFAULT_MODEL
from sampleforge.pipeline import Generator
from sampleforge.taxonomy import CATEGORY_PROMPTS

CLASSES = ("kick", "snare", "clap", "closed_hat", "open_hat", "tom", "crash", "ride", "rim")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=DEFAULT_MODEL,
                    help=f"model folder or shipped name (default: the default model, {DEFAULT_MODEL})")
    ap.add_argument("--per-class", type=int, default=4)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--sampler", default="dpmpp_2m")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    gen = Generator.from_pretrained(args.model, device="cpu")
    sr = gen.sample_rate
    which = " (the default model)" if args.model == DEFAULT_MODEL else ""
    print(f"model timed: {gen.id}{which}, {args.per_class} clips per class, {args.sampler} {args.steps} steps, torch threads "
          f"{torch.get_num_threads()}")
    print(f"{'class':<11} {'auto length s':>13} {'silence in 2 s':>15} {'tail kept ms':>13}")
    for c in CLASSES:
        raw = gen.generate_full(CATEGORY_PROMPTS[c], n=args.per_class, steps=args.steps, sampler=args.sampler,
                                seed=args.seed, normalize=None).audio.numpy()
        natural = finish(raw, sr, tail="natural")
        fixed = finish(raw, sr, tail="fixed")
        lengths = [apply_length(x, sr, "auto").shape[0] / sr for x in natural]
        kept = []
        for nat, old in zip(natural, fixed, strict=True):
            end = int(tail_end(nat, -60.0))
            cut = np.abs(old[:end]) < 0.999 * np.abs(nat[:end])  # samples the fixed fade turned down
            kept.append(1000 * (end - int(np.argmax(cut))) / sr if cut.any() else 0.0)
        print(f"{c:<11} {np.median(lengths):>13.2f} {100 * (1 - np.median(lengths) / 2):>14.0f}% "
              f"{np.median(kept):>13.0f}")
    clip = gen.generate("snare", steps=args.steps, sampler=args.sampler, seed=args.seed).numpy()[0]
    t0 = time.perf_counter()
    gen.vary(clip, prompt="snare", count=8, strength=0.3, steps=args.steps, sampler=args.sampler, seed=1)
    t_vary = time.perf_counter() - t0
    t0 = time.perf_counter()
    build_kit(gen, prompt="punchy 808", seed=1, steps=args.steps, sampler=args.sampler)
    t_kit = time.perf_counter() - t0
    print(f"vary: 8 variations at strength 0.3 in {t_vary:.2f} s; kit: 11 pieces in {t_kit:.2f} s")


if __name__ == "__main__":
    main()
