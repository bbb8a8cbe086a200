"""Generation speed and memory, and the ratio against the drum waveform-diffusion peer.

    python -m benchmarks.speed [--model drums-v2] [--threads 1,2] [--batches 1,16] [--no-peer] [--json FILE]
    python -m benchmarks.speed --vocoders [--model M] [--threads 2] [--batches 1]   # vocoder vs Griffin-Lim only
    python -m benchmarks.speed --model drums-v2 --vs drums-v1 [--threads 2] [--repeats 20]  # paired ratio, one run

``--model`` defaults to the default model (drums-v2); the first line of the output names the model timed. For
each thread count and batch size: seconds per 2-s clip for the model's first sampler (DDIM) at its own steps (50)
with CFG (the reference setting) and for the fast setting (``--fast``, default dpmpp_2m with 8 steps), the medians of
``--repeats`` runs at batch 1 and ``--batch-repeats`` at bigger batches, each with a new seed. The split between the
sampling loop (U-Net, plus the text encoder and finishing), the VAE decode and the vocoder is timed inside each
timed generation (``stage_timers``); then the real-time factor (seconds of audio per second of compute) and the
peak resident memory.

The peer is tiny-audio-diffusion's drum model (benchmarks/peers.py): a 31.6 M-parameter 1-D U-Net on
stereo waveforms, unconditional (one forward per step, no CFG), 50 steps. One clip takes minutes on a CPU,
so we time U-Net forwards (random weights) and multiply by 50. Its native clip is 32768 samples (0.74 s); the
headline compares a 2-s clip (88320 samples, the next length its U-Net accepts). The headline ratio is measured in
turn: each of ``--peer-repeats`` rounds times one peer forward and one sampleforge clip in each setting, the order
reversed every other round, and the ratio is the median of the rounds' ratios (by wall and by CPU time).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import resource
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from benchmarks import peers, timing
from sampleforge.errors import UserInputError
from sampleforge.locations import DEFAULT_MODEL
from sampleforge.params import add_arguments, from_namespace

STAGES = ("decode", "vocode")  # the Generator's stage methods that a generation calls after its sampling loop


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports KiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 if sys.platform != "darwin" else rss / 1e6


@dataclasses.dataclass
class StageTimes:
    """Seconds spent in each stage method, and how many calls, while ``stage_timers`` was on."""

    seconds: dict[str, float]
    calls: dict[str, int]


@contextlib.contextmanager
def stage_timers(gen: Any, stages: Sequence[str] = STAGES) -> Iterator[StageTimes]:
    """Time ``gen``'s ``stages`` methods inside whatever the block calls: each method is wrapped, on this instance
    only, by a timer that adds the seconds of every call; the class's methods are back after the block."""
    times = StageTimes(dict.fromkeys(stages, 0.0), dict.fromkeys(stages, 0))
    own = {name: gen.__dict__.get(name) for name in stages}

    def timer(name: str, inner: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                times.seconds[name] += time.perf_counter() - t0
                times.calls[name] += 1

        return timed

    for name in stages:
        setattr(gen, name, timer(name, getattr(gen, name)))
    try:
        yield times
    finally:
        for name in stages:
            if own[name] is None:
                delattr(gen, name)
            else:
                setattr(gen, name, own[name])


def time_generation(gen: Any, batch: int, steps: int, sampler: str, cfg_scale: float, repeats: int,
                    clock: timing.Clock = timing.clock) -> dict[str, Any]:
    """Median wall (and CPU) seconds of ``generate_full`` for ``batch`` clips over ``repeats`` runs (seeds 0, 1, ...),
    and its split into the sampling loop, the VAE decode and the vocoder. The decode and the vocoder are timed
    inside each timed run (``stage_timers``); the sampling loop is the rest of that run. Should the pipeline not call
    them through ``gen.decode`` and ``gen.vocode``, they are re-timed on their own after each run and the sampling
    loop is the median total less their medians, an estimate (``stage_split`` says which)."""
    prompts = ["kick"] * batch
    totals: list[float] = []
    cpus: list[float] = []
    decodes: list[float] = []
    vocodes: list[float] = []
    inside = True
    samples = 0
    for r in range(repeats):
        with stage_timers(gen) as stages:
            t0, c0 = clock()
            g = gen.generate_full(prompts, n=1, steps=steps, cfg_scale=cfg_scale, sampler=sampler, seed=r)
            t1, c1 = clock()
        totals.append(t1 - t0)
        cpus.append(c1 - c0)
        samples = g.audio.shape[1]
        if all(stages.calls.values()):
            decodes.append(stages.seconds["decode"])
            vocodes.append(stages.seconds["vocode"])
            continue
        inside = False
        lat = g.latents.to(gen.device)
        t0 = time.perf_counter()
        mels = gen.decode(lat, g.mels.shape[-1])
        decodes.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        gen.vocode(mels, samples)
        vocodes.append(time.perf_counter() - t0)
    total, decode, vocode = timing.median(totals), timing.median(decodes), timing.median(vocodes)
    if inside:
        unet = timing.median([t - d - v for t, d, v in zip(totals, decodes, vocodes, strict=True)])
    else:
        unet = max(total - decode - vocode, 0.0)
    audio_seconds = batch * samples / gen.sample_rate
    return {
        "batch": batch, "steps": steps, "sampler": sampler, "cfg_scale": cfg_scale, "repeats": repeats,
        "seconds_per_clip": total / batch, "cpu_seconds_per_clip": timing.median(cpus) / batch,
        "unet_seconds_per_clip": unet / batch,
        "decode_seconds_per_clip": decode / batch, "vocoder_seconds_per_clip": vocode / batch,
        "stage_split": "timed inside the generation" if inside else "estimate",
        "per_repeat_seconds": {"total": totals, "decode": decodes, "vocoder": vocodes},
        "realtime_factor": audio_seconds / total, "clip_seconds": samples / gen.sample_rate,
    }


def time_vocoders(gen: Any, batch: int, repeats: int) -> dict[str, float]:
    """Median seconds per clip of the model's vocoder and of its Griffin-Lim on the same real-shaped log-mel
    (``batch`` clips of the model's duration), timed alternately so that both see the same machine load."""
    samples, frames = gen.frames(gen.bundle.config.duration)
    mel = (torch.randn(batch, gen.bundle.config.mel.n_mels, frames, generator=torch.Generator().manual_seed(0))
           - 5.0).to(gen.device)
    times: dict[str, list[float]] = {"vocoder": [], "griffin_lim": []}
    for r in range(repeats + 2):  # the first two rounds warm up
        for name, neural in (("vocoder", True), ("griffin_lim", False)):
            t0 = time.perf_counter()
            gen.vocode(mel, samples, vocoder=neural)
            if r >= 2:
                times[name].append(time.perf_counter() - t0)
    voc, gl = timing.median(times["vocoder"]) / batch, timing.median(times["griffin_lim"]) / batch
    return {"batch": batch, "vocoder_seconds_per_clip": voc, "griffin_lim_seconds_per_clip": gl,
            "griffin_lim_iters": gen.griffin_lim.n_iter, "griffin_lim_mel_iters": gen.griffin_lim.mel_iters,
            "ratio": voc / gl, "repeats": repeats}


def one_clip(gen: Any, sampler: str, steps: int, cfg_scale: float | None) -> Callable[[], Any]:
    """A call that generates one clip of "kick" (batch 1) with ``gen``, seed 0 at the first call, 1 at the next, ...;
    ``cfg_scale`` None: the model's own guidance for the prompt."""
    seeds = itertools.count()
    return lambda: gen.generate_full(["kick"], n=1, steps=steps, cfg_scale=cfg_scale, sampler=sampler,
                                     seed=next(seeds))


def peer_in_turn(gen: Any, peer_forward: Callable[[], Any], settings: Sequence[tuple[str, int]], cfg_scale: float,
                 rounds: int, peer_steps: int = peers.PEER_STEPS,
                 clock: timing.Clock = timing.clock) -> dict[str, Any]:
    """The peer against ``gen``, measured in turn: each round times one ``peer_forward`` (a peer U-Net forward on a
    2-s clip) and one clip of ``gen`` (batch 1, prompt "kick", a new seed each round) for each (sampler, steps) of
    ``settings``, the order reversed every other round (``timing.in_turn``). A peer clip costs ``peer_steps``
    forwards. Per setting: the median seconds of a clip and the median of the rounds' peer / sampleforge ratios,
    by wall and by CPU time."""
    variants = {f"{sampler}:{steps}": one_clip(gen, sampler, steps, cfg_scale) for sampler, steps in settings}
    variants["peer"] = peer_forward
    times = timing.in_turn(variants, rounds, clock)
    peer = times["peer"]
    out: dict[str, Any] = {
        "rounds": rounds, "steps": peer_steps,
        "seconds_per_forward_2s": timing.median(peer["wall"]), "cpu_seconds_per_forward_2s": timing.median(peer["cpu"]),
        "seconds_per_2s_clip": peer_steps * timing.median(peer["wall"]),
        "cpu_seconds_per_2s_clip": peer_steps * timing.median(peer["cpu"]), "settings": [],
    }
    for sampler, steps in settings:
        ours = times[f"{sampler}:{steps}"]
        wall = timing.ratio_summary(peer["wall"], ours["wall"], scale=peer_steps)
        cpu = timing.ratio_summary(peer["cpu"], ours["cpu"], scale=peer_steps)
        out["settings"].append({
            "sampler": sampler, "steps": steps, "seconds_per_clip": timing.median(ours["wall"]),
            "cpu_seconds_per_clip": timing.median(ours["cpu"]), "ratio": wall["median"],
            "ratio_quartiles": wall["quartiles"], "cpu_ratio": cpu["median"], "cpu_ratio_quartiles": cpu["quartiles"]})
    return out


def _busy_note(wall: float, cpu: float, threads: int) -> str:
    """A warning when this process got much less CPU than its threads could use (a shared, busy machine)."""
    share = cpu / max(wall * threads, 1e-9)
    if share > 0.7:
        return ""
    if threads == 1:
        return f"  [machine busy: got {share:.0%} of a core; the CPU-time figure is closer to an idle machine]"
    return (f"  [machine busy: got {share:.0%} of {threads} cores; with several threads both wall and CPU time are "
            "inflated (threads spin waiting for a descheduled sibling): rerun on an idle machine]")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL,
                    help=f"model folder or shipped name (default: the default model, {DEFAULT_MODEL})")
    ap.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    ap.add_argument("--batches", default="1,16", help="comma-separated batch sizes")
    add_arguments(ap, ("steps", "cfg_scale", "precision"))  # the reference setting: DDIM + CFG
    ap.add_argument("--fast", default="dpmpp_2m:8", help="the fast setting, sampler:steps")
    ap.add_argument("--repeats", type=int, default=None,
                    help="timed runs per cell at batch 1 (default 5; pairs with --vs, default 20; rounds with "
                         "--vocoders, default 30)")
    ap.add_argument("--batch-repeats", type=int, default=3, help="timed runs per cell at bigger batches (default 3)")
    ap.add_argument("--gl-iters", type=int, default=None,
                    help="Griffin-Lim iterations (default: the model's config.json griffin_lim.n_iter)")
    ap.add_argument("--no-peer", action="store_true", help="skip the peer comparison")
    ap.add_argument("--peer-repeats", type=int, default=5,
                    help="rounds in turn of a peer forward and a sampleforge clip per setting (default 5)")
    ap.add_argument("--vocoders", action="store_true",
                    help="time only the model's vocoder against its Griffin-Lim (--repeats rounds, default 30)")
    ap.add_argument("--vocoder", type=Path, default=None, metavar="RUN/model",
                    help="put this vocoder on the model (a model folder with one, e.g. a vocoder training run's "
                         "model/, or its vocoder.safetensors)")
    ap.add_argument("--vs", default=None, metavar="MODEL",
                    help="time --model against MODEL in one process, clip by clip in turn (batch 1, --repeats pairs, "
                         "default 20): the median of the pairs' ratios holds on a machine whose speed drifts")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    for flag in ("repeats", "batch_repeats", "peer_repeats"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            ap.error(f"--{flag.replace('_', '-')} must be at least 1")
    asked = from_namespace(args)

    from sampleforge.audio.griffinlim import describe as describe_griffin_lim
    from sampleforge.bundle import vocoder_weights
    from sampleforge.pipeline import Generator

    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    fast_sampler, _, fast_steps = args.fast.partition(":")
    if args.vocoder is not None:
        from sampleforge.backends.resolve import refuse_second_vocoder

        try:
            refuse_second_vocoder(args.model, "--vocoder", "--model")
        except UserInputError as exc:
            ap.error(str(exc))
        if not vocoder_weights(args.vocoder).is_file():
            ap.error(f"--vocoder: {vocoder_weights(args.vocoder)} does not exist")
    components: dict[str, Path | None] | None = (
        None if args.vocoder is None else {"vocoder": vocoder_weights(args.vocoder)})
    gen = Generator.from_pretrained(args.model, device="cpu", components=components, precision=asked.precision)
    # steps and cfg scale left unset: the model's own for the prompt the cells time
    reference = gen.resolve(dataclasses.replace(asked, prompt="kick"))
    if args.gl_iters is not None:
        gen.griffin_lim.n_iter = args.gl_iters
        gen.griffin_lim.mel_iters = min(gen.griffin_lim.mel_iters, args.gl_iters)
    gl = gen.griffin_lim
    vocoder = "neural vocoder" if gen.bundle.vocoder is not None else (
        f"Griffin-Lim {describe_griffin_lim(gl.n_iter, gl.mel_iters)}")
    vocoder += f"; U-Net {gen.precision}"
    n_params = {k: sum(p.numel() for p in m.parameters()) for k, m in gen.bundle.modules().items()}
    which = " (the default model)" if args.model == DEFAULT_MODEL else ""
    print(f"model timed: {gen.id}{which}: " + ", ".join(f"{k} {v / 1e6:.2f} M" for k, v in n_params.items())
          + f"; {vocoder}; torch {torch.__version__}, CPU")
    if args.vocoders:
        return _vocoders_only(gen, threads, batches, args)
    if args.vs:
        other = Generator.from_pretrained(args.vs, device="cpu", precision=asked.precision)
        settings = [(gen.samplers[0], reference.steps), (fast_sampler, int(fast_steps))]
        return _paired(gen, other, threads, settings, asked.cfg_scale, args.repeats or 20, args.json)
    assert reference.steps is not None and reference.cfg_scale is not None
    settings = [(gen.samplers[0], reference.steps), (fast_sampler, int(fast_steps))]
    gen.generate_full("kick", steps=2, seed=0)  # warm-up
    ours: list[dict[str, Any]] = []
    for t in threads:
        torch.set_num_threads(t)
        for b in batches:
            for sampler, steps in settings:
                r = time_generation(gen, b, steps, sampler, reference.cfg_scale,
                                    (args.repeats or 5) if b == 1 else args.batch_repeats)
                r["threads"] = t
                ours.append(r)
                split = "U-Net sampling" + (" (estimate)" if r["stage_split"] == "estimate" else "")
                print(f"threads {t} batch {b:>2} {sampler:>9} {steps:>3} steps + CFG: {r['seconds_per_clip']:.3f} s/clip "
                      f"(CPU {r['cpu_seconds_per_clip']:.3f}; {split} {r['unet_seconds_per_clip']:.3f}, VAE decode "
                      f"{r['decode_seconds_per_clip']:.4f}, vocoder {r['vocoder_seconds_per_clip']:.4f}; median of "
                      f"{r['repeats']})  {r['realtime_factor']:.1f}x real time"
                      + _busy_note(r["seconds_per_clip"], r["cpu_seconds_per_clip"], t), flush=True)
    ours_rss = peak_rss_mb()
    print(f"peak RSS (sampleforge): {ours_rss:.0f} MB")
    out: dict[str, Any] = {"model": gen.id, "parameters": n_params, "vocoder": vocoder, "ours": ours,
                           "peak_rss_mb": ours_rss}

    missing = peers.peer_missing()
    if args.no_peer or missing:
        if missing and not args.no_peer:
            print(f"peer skipped: {missing}")
    else:
        out["peer"] = [_peer_row(gen, peers.build_peer(), t, settings, reference.cfg_scale, args.peer_repeats)
                       for t in threads]
        out["peak_rss_mb_with_peer"] = peak_rss_mb()
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


def _peer_row(gen: Any, peer: torch.nn.Module, threads: int, settings: list[tuple[str, int]], cfg_scale: float,
              rounds: int) -> dict[str, Any]:
    """The peer on ``threads`` threads: its forward at the native length (two runs, for its own figure), then the
    2-s clip against ``gen`` in turn (``peer_in_turn``); prints both and the headline."""
    torch.set_num_threads(threads)
    native, native_cpu = peers.time_forward(peer, peers.PEER_LENGTH, repeats=2)
    forward = peers.forward_fn(peer, peers.peer_length(2.0))
    forward()  # warm-up
    p = peer_in_turn(gen, forward, settings, cfg_scale, rounds)
    (base, fast) = p["settings"]
    p.update({
        "threads": threads, "parameters": peers.n_params(peer), "native_length": peers.PEER_LENGTH,
        "seconds_per_forward_native": native, "cpu_seconds_per_forward_native": native_cpu,
        "seconds_per_native_clip": native * p["steps"], "two_second_length": peers.peer_length(2.0),
        "ratio_vs_ddim50": base["ratio"], "ratio_vs_fast": fast["ratio"],
        "cpu_ratio_vs_ddim50": base["cpu_ratio"], "cpu_ratio_vs_fast": fast["cpu_ratio"],
    })
    print(f"peer (tiny-audio-diffusion drums, {p['parameters'] / 1e6:.1f} M params, threads {threads}): "
          f"{native:.2f} s/forward (CPU {native_cpu:.2f}) at {p['native_length']} samples -> "
          f"{p['seconds_per_native_clip']:.0f} s per native 0.74-s clip; {p['seconds_per_forward_2s']:.2f} s/forward "
          f"(CPU {p['cpu_seconds_per_forward_2s']:.2f}) at {p['two_second_length']} samples -> "
          f"{p['seconds_per_2s_clip']:.0f} s per 2-s clip ({p['steps']} steps, no CFG; median of {rounds} rounds)"
          + _busy_note(p["seconds_per_forward_2s"], p["cpu_seconds_per_forward_2s"], threads), flush=True)
    said = [f"{s['ratio']:.0f}x (quartiles {s['ratio_quartiles'][0]:.0f}-{s['ratio_quartiles'][1]:.0f}; by CPU time "
            f"{s['cpu_ratio']:.0f}x) at {s['sampler']} {s['steps']} steps + CFG ({s['seconds_per_clip']:.3f} s a clip)"
            for s in p["settings"]]
    print(f"HEADLINE (threads {threads}, batch 1, 2-s clip, {rounds} rounds in turn, median of the rounds' ratios): "
          f"sampleforge {gen.id} is faster than the peer by " + " and ".join(said), flush=True)
    return p


def _paired(a: Any, b: Any, threads: list[int], settings: list[tuple[str, int]], cfg_scale: float | None, pairs: int,
            json_path: Path | None) -> int:
    """Model ``a`` against model ``b``: one clip each in turn (a b b a ...: neither always goes first), batch 1,
    prompt "kick", each model at its own guidance for it unless ``cfg_scale`` is given; per setting the medians and
    the median of the pairs' a/b ratios (by wall and by CPU time)."""
    rows = []
    for gen in (a, b):
        gen.generate_full("kick", steps=2, seed=0)  # warm-up
    for t in threads:
        torch.set_num_threads(t)
        for sampler, steps in settings:
            times = timing.in_turn({"a": one_clip(a, sampler, steps, cfg_scale),
                                    "b": one_clip(b, sampler, steps, cfg_scale)}, pairs)
            wall = timing.ratio_summary(times["a"]["wall"], times["b"]["wall"])
            cpu = timing.ratio_summary(times["a"]["cpu"], times["b"]["cpu"])
            row = {"threads": t, "sampler": sampler, "steps": steps, "pairs": pairs, "a": a.id, "b": b.id,
                   "cfg_scale": cfg_scale if cfg_scale is not None else "each model's own",
                   "a_seconds": timing.median(times["a"]["wall"]), "b_seconds": timing.median(times["b"]["wall"]),
                   "ratio": wall["median"], "ratio_quartiles": wall["quartiles"], "cpu_ratio": cpu["median"]}
            rows.append(row)
            print(f"threads {t} {sampler:>9} {steps:>3} steps + CFG: {a.id} {row['a_seconds']:.3f} s, {b.id} "
                  f"{row['b_seconds']:.3f} s a clip; ratio {row['ratio']:.3f} (quartiles "
                  f"{row['ratio_quartiles'][0]:.3f}-{row['ratio_quartiles'][1]:.3f}, {pairs} pairs; by CPU time "
                  f"{row['cpu_ratio']:.3f})", flush=True)
    if json_path:
        json_path.write_text(json.dumps({"paired": rows}, indent=2) + "\n")
    return 0


def _vocoders_only(gen: Any, threads: list[int], batches: list[int], args: argparse.Namespace) -> int:
    if gen.bundle.vocoder is None:
        print("this model has no neural vocoder: nothing to compare with Griffin-Lim", file=sys.stderr)
        return 2
    repeats = args.repeats or 30
    rows: list[dict[str, Any]] = []
    for t in threads:
        torch.set_num_threads(t)
        for b in batches:
            c0, w0 = time.process_time(), time.perf_counter()
            r = time_vocoders(gen, b, repeats)
            r["threads"] = t
            rows.append(r)
            print(f"threads {t} batch {b:>2}: vocoder {1000 * r['vocoder_seconds_per_clip']:.1f} ms/clip, Griffin-Lim "
                  f"{r['griffin_lim_iters']} {1000 * r['griffin_lim_seconds_per_clip']:.1f} ms/clip "
                  f"(ratio {r['ratio']:.2f}; median of {repeats})"
                  + _busy_note(time.perf_counter() - w0, time.process_time() - c0, t), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"model": gen.id, "vocoders": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
