"""What ``candidates`` costs: ms a clip with and without it, by prompt, in one run (so the ratios hold on a busy
machine), and the share of clips the drum judge keeps.

    python -m benchmarks.candidates [--model drums-v2] [--candidates 4,8] [--count 16] [--repeats 3] [--threads 2]
                                    [--whole]

A plain class prompt pays for the judge and for the few clips it hears as another class; a keyword the model holds
back pays for the renders that leave the class (up to N, then the model's own clip). Those renders are judged first
by a quick Griffin-Lim and vocoded only when heard as the class there; ``--whole`` times them vocoded whole too.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from sampleforge.pipeline import Generator

PROMPTS = ("kick", "snare", "open hat", "808 snare", "distorted clap")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="drums-v2")
    ap.add_argument("--prompts", nargs="+", default=list(PROMPTS))
    ap.add_argument("--candidates", default="4,8", help="comma-separated candidate counts to time against none")
    ap.add_argument("--count", type=int, default=16, help="clips a batch")
    ap.add_argument("--repeats", type=int, default=3, help="batches a setting (seeds follow on); the median is kept")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--sampler", default="dpmpp_2m")
    ap.add_argument("--whole", action="store_true",
                    help="also time each candidate count with every candidate rendered whole (no quick Griffin-Lim "
                         "first for a held-back keyword)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    gen = Generator.from_pretrained(args.model)
    settings: list[tuple[str, int | None, bool]] = [("None", None, True)]  # (label, candidates, quick screen)
    for c in (int(c) for c in args.candidates.split(",")):
        settings += [(str(c), c, True)] + ([(f"{c} whole", c, False)] if args.whole else [])
    run = {"steps": args.steps, "sampler": args.sampler, "n": args.count}
    gen.generate_full("kick", **{**run, "n": 2}, seed=1, candidates=2)  # warm up; loads the judge
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for prompt in args.prompts:
        row: dict[str, dict[str, float | None]] = {}
        times: dict[str, list[float]] = {label: [] for label, _, _ in settings}
        kept: dict[str, list[bool]] = {label: [] for label, _, _ in settings}
        for rep in range(args.repeats):  # the settings in turn, so that a busy spell falls on all of them
            for label, count, screen in settings:
                gen.quick_screen = screen
                t0 = time.perf_counter()
                g = gen.generate_full(prompt, seed=7000 + rep * args.count, candidates=count, **run)
                times[label].append(time.perf_counter() - t0)
                kept[label] += [j is not None for j in g.candidates or []]
        for label, _, _ in settings:
            ms = statistics.median(times[label]) / args.count * 1000
            k = kept[label]
            row[label] = {"ms_per_clip": round(ms, 1), "kept": round(sum(k) / len(k), 3) if k else None}
        base = row["None"]["ms_per_clip"]
        print(f"{prompt:<16} " + "  ".join(
            f"{k:>4}: {v['ms_per_clip']:6.1f} ms ({(v['ms_per_clip'] or 0) / (base or 1):.2f}x"
            + (f", kept {v['kept']:.0%})" if v["kept"] is not None else ")") for k, v in row.items()), flush=True)
        out[prompt] = row
    if args.json:
        what = (f"ms a clip by candidates (None: one render, not judged), batch {args.count}, median of {args.repeats} "
                f"batches (seeds 7000-{7000 + args.repeats * args.count - 1}), the settings in turn; kept: share of clips that kept "
                "a candidate (both drum judges heard it as the class); whole: every candidate rendered whole, none "
                "first heard by a quick Griffin-Lim")
        args.json.write_text(json.dumps({"what": what, "model": args.model, "threads": args.threads, "count": args.count,
                                         "steps": args.steps, "sampler": args.sampler, "prompts": out}, indent=2) + "\n")


if __name__ == "__main__":
    main()
