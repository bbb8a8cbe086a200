"""What ``candidates`` costs: ms a clip with and without it, by prompt, in one run (so the ratios hold on a busy
machine), and the share of clips the drum judge keeps.

    python -m benchmarks.candidates [--model drums-v2] [--candidates 4,8] [--count 16] [--repeats 3] [--threads 2]

A plain class prompt pays for the judge and for the few clips it hears as another class; a keyword the model holds
back pays for the renders that leave the class (up to N, then the model's own clip).
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
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    gen = Generator.from_pretrained(args.model)
    settings = [None, *(int(c) for c in args.candidates.split(","))]
    run = {"steps": args.steps, "sampler": args.sampler, "n": args.count}
    gen.generate_full("kick", **{**run, "n": 2}, seed=1, candidates=2)  # warm up; loads the judge
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for prompt in args.prompts:
        row: dict[str, dict[str, float | None]] = {}
        for c in settings:
            times, kept = [], []
            for rep in range(args.repeats):
                t0 = time.perf_counter()
                g = gen.generate_full(prompt, seed=7000 + rep * args.count, candidates=c, **run)
                times.append(time.perf_counter() - t0)
                kept += [j is not None for j in g.candidates or []]
            ms = statistics.median(times) / args.count * 1000
            row[str(c)] = {"ms_per_clip": round(ms, 1), "kept": round(sum(kept) / len(kept), 3) if kept else None}
        base = row["None"]["ms_per_clip"]
        print(f"{prompt:<16} " + "  ".join(
            f"{k:>4}: {v['ms_per_clip']:6.1f} ms ({(v['ms_per_clip'] or 0) / (base or 1):.2f}x"
            + (f", kept {v['kept']:.0%})" if v["kept"] is not None else ")") for k, v in row.items()), flush=True)
        out[prompt] = row
    if args.json:
        what = (f"ms a clip by candidates (None: one render, not judged), batch {args.count}, median of {args.repeats} "
                f"batches (seeds 7000-{7000 + args.repeats * args.count - 1}); kept: share of clips that kept a candidate "
                "(both drum judges heard it as the class)")
        args.json.write_text(json.dumps({"what": what, "model": args.model, "threads": args.threads, "count": args.count,
                                         "steps": args.steps, "sampler": args.sampler, "prompts": out}, indent=2) + "\n")


if __name__ == "__main__":
    main()
