"""Generation speed and memory, and the ratio against the drum waveform-diffusion peer.

    python -m benchmarks.speed [--model drums-v1] [--threads 1,2] [--batches 1,16] [--no-peer] [--json FILE]
    python -m benchmarks.speed --vocoders [--model M] [--threads 2] [--batches 1]   # vocoder vs Griffin-Lim only
    python -m benchmarks.speed --model drums-v2 --vs drums-v1 [--threads 2] [--repeats 20]  # paired ratio, one run

For each thread count and batch size: seconds per 2-s clip for 50 DDIM steps with CFG (the reference
setting) and for the fast setting (``--fast``, default dpmpp_2m with 8 steps), the split between the
sampling loop (U-Net, plus the text encoder and finishing), the VAE decode and the vocoder, the real-time
factor (seconds of audio per second of compute) and the peak resident memory.

The peer is tiny-audio-diffusion's drum model (benchmarks/peers.py): a 31.6 M-parameter 1-D U-Net on
stereo waveforms, unconditional (one forward per step, no CFG), 50 steps. One clip takes minutes on a CPU,
so we time a few U-Net forwards (random weights) and multiply by 50. Its native clip is 32768 samples
(0.74 s); the headline compares a 2-s clip (88320 samples, the next length its U-Net accepts).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks import peers
from sampleforge.errors import UserInputError
from sampleforge.params import add_arguments, from_namespace


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports KiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 if sys.platform != "darwin" else rss / 1e6


def _med(x: list[float]) -> float:
    return sorted(x)[len(x) // 2]


def time_generation(gen: Any, batch: int, steps: int, sampler: str, cfg_scale: float, repeats: int) -> dict[str, float]:
    """Median wall (and CPU) seconds of ``generate_full`` for ``batch`` clips, and of its decode and vocoder stages."""
    prompts = ["kick"] * batch
    totals, cpus, decodes, vocodes = [], [], [], []
    for r in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        g = gen.generate_full(prompts, n=1, steps=steps, cfg_scale=cfg_scale, sampler=sampler, seed=r)
        totals.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        samples, frames = g.audio.shape[1], g.mels.shape[-1]
        lat = g.latents.to(gen.device)
        t0 = time.perf_counter()
        mels = gen.decode(lat, frames)
        decodes.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        gen.vocode(mels, samples)
        vocodes.append(time.perf_counter() - t0)
    total, decode, vocode = _med(totals), _med(decodes), _med(vocodes)
    audio_seconds = batch * samples / gen.sample_rate
    return {
        "batch": batch, "steps": steps, "sampler": sampler, "cfg_scale": cfg_scale,
        "seconds_per_clip": total / batch, "cpu_seconds_per_clip": _med(cpus) / batch,
        "unet_seconds_per_clip": max(total - decode - vocode, 0.0) / batch,
        "decode_seconds_per_clip": decode / batch, "vocoder_seconds_per_clip": vocode / batch,
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
    voc, gl = _med(times["vocoder"]) / batch, _med(times["griffin_lim"]) / batch
    return {"batch": batch, "vocoder_seconds_per_clip": voc, "griffin_lim_seconds_per_clip": gl,
            "griffin_lim_iters": gen.griffin_lim.n_iter, "griffin_lim_mel_iters": gen.griffin_lim.mel_iters,
            "ratio": voc / gl, "repeats": repeats}


def time_peer(model: torch.nn.Module, threads: int, repeats: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    native, native_cpu = peers.time_forward(model, peers.PEER_LENGTH, repeats=repeats)
    two_s_len = peers.peer_length(2.0)
    two_s, two_s_cpu = peers.time_forward(model, two_s_len, repeats=repeats)
    n = peers.PEER_STEPS
    return {
        "threads": threads, "parameters": peers.n_params(model), "steps": n,
        "native_length": peers.PEER_LENGTH, "seconds_per_forward_native": native,
        "cpu_seconds_per_forward_native": native_cpu, "seconds_per_native_clip": native * n,
        "two_second_length": two_s_len, "seconds_per_forward_2s": two_s, "cpu_seconds_per_forward_2s": two_s_cpu,
        "seconds_per_2s_clip": two_s * n, "cpu_seconds_per_2s_clip": two_s_cpu * n,
    }


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
    ap.add_argument("--model", default="drums-v1", help="model folder or shipped name")
    ap.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    ap.add_argument("--batches", default="1,16", help="comma-separated batch sizes")
    add_arguments(ap, ("steps", "cfg_scale", "precision"))  # the reference setting: DDIM + CFG
    ap.add_argument("--fast", default="dpmpp_2m:8", help="the fast setting, sampler:steps")
    ap.add_argument("--repeats", type=int, default=None,
                    help="timed runs per cell at batch 1 (1 for bigger batches; default 2, with --vocoders 30)")
    ap.add_argument("--gl-iters", type=int, default=None,
                    help="Griffin-Lim iterations (default: the model's config.json griffin_lim.n_iter)")
    ap.add_argument("--no-peer", action="store_true", help="skip the peer comparison")
    ap.add_argument("--peer-repeats", type=int, default=2, help="timed peer forwards per length")
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
    reference = from_namespace(args)

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
    components = None if args.vocoder is None else {"vocoder": vocoder_weights(args.vocoder)}
    gen = Generator.from_pretrained(args.model, device="cpu", components=components, precision=reference.precision)
    reference = gen.resolve(reference)  # steps and cfg scale left unset: the model's own
    if args.gl_iters is not None:
        gen.griffin_lim.n_iter = args.gl_iters
        gen.griffin_lim.mel_iters = min(gen.griffin_lim.mel_iters, args.gl_iters)
    gl = gen.griffin_lim
    vocoder = "neural vocoder" if gen.bundle.vocoder is not None else (
        f"Griffin-Lim {describe_griffin_lim(gl.n_iter, gl.mel_iters)}")
    vocoder += f"; U-Net {gen.precision}"
    n_params = {k: sum(p.numel() for p in m.parameters()) for k, m in gen.bundle.modules().items()}
    print(f"model {gen.id}: " + ", ".join(f"{k} {v / 1e6:.2f} M" for k, v in n_params.items())
          + f"; {vocoder}; torch {torch.__version__}, CPU")
    if args.vocoders:
        return _vocoders_only(gen, threads, batches, args)
    if args.vs:
        other = Generator.from_pretrained(args.vs, device="cpu", precision=reference.precision)
        settings = [(gen.samplers[0], reference.steps), (fast_sampler, int(fast_steps))]
        return _paired(gen, other, threads, settings, reference.cfg_scale, args.repeats or 20, args.json)
    gen.generate_full("kick", steps=2, seed=0)  # warm-up
    ours: list[dict[str, Any]] = []
    for t in threads:
        torch.set_num_threads(t)
        for b in batches:
            for sampler, steps in ((gen.samplers[0], reference.steps), (fast_sampler, int(fast_steps))):
                r = time_generation(gen, b, steps, sampler, reference.cfg_scale, (args.repeats or 2) if b == 1 else 1)
                r["threads"] = t
                ours.append(r)
                print(f"threads {t} batch {b:>2} {sampler:>9} {steps:>3} steps + CFG: {r['seconds_per_clip']:.3f} s/clip "
                      f"(CPU {r['cpu_seconds_per_clip']:.3f}; U-Net sampling {r['unet_seconds_per_clip']:.3f}, VAE decode "
                      f"{r['decode_seconds_per_clip']:.4f}, vocoder {r['vocoder_seconds_per_clip']:.4f})  "
                      f"{r['realtime_factor']:.1f}x real time"
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
        out["peer"] = []
        peer = peers.build_peer()
        for t in threads:
            p = time_peer(peer, t, args.peer_repeats)
            out["peer"].append(p)
            base = next(r for r in ours if r["threads"] == t and r["batch"] == 1 and r["sampler"] == "ddim")
            fast = next(r for r in ours if r["threads"] == t and r["batch"] == 1 and r["sampler"] == fast_sampler)
            p["ratio_vs_ddim50"] = p["seconds_per_2s_clip"] / base["seconds_per_clip"]
            p["ratio_vs_fast"] = p["seconds_per_2s_clip"] / fast["seconds_per_clip"]
            p["cpu_ratio_vs_ddim50"] = p["cpu_seconds_per_2s_clip"] / base["cpu_seconds_per_clip"]
            p["cpu_ratio_vs_fast"] = p["cpu_seconds_per_2s_clip"] / fast["cpu_seconds_per_clip"]
            print(f"peer (tiny-audio-diffusion drums, {p['parameters'] / 1e6:.1f} M params, threads {t}): "
                  f"{p['seconds_per_forward_native']:.2f} s/forward (CPU {p['cpu_seconds_per_forward_native']:.2f}) "
                  f"at {p['native_length']} samples -> {p['seconds_per_native_clip']:.0f} s per native 0.74-s clip; "
                  f"{p['seconds_per_forward_2s']:.2f} s/forward (CPU {p['cpu_seconds_per_forward_2s']:.2f}) at "
                  f"{p['two_second_length']} samples -> {p['seconds_per_2s_clip']:.0f} s per 2-s clip "
                  f"({p['steps']} steps, no CFG)"
                  + _busy_note(p["seconds_per_forward_2s"], p["cpu_seconds_per_forward_2s"], t), flush=True)
            print(f"HEADLINE (threads {t}, batch 1, 2-s clip): sampleforge is {p['ratio_vs_ddim50']:.0f}x faster than "
                  f"the peer at 50 DDIM steps + CFG, {p['ratio_vs_fast']:.0f}x with {fast_sampler} {fast_steps} steps "
                  f"(by CPU time: {p['cpu_ratio_vs_ddim50']:.0f}x and {p['cpu_ratio_vs_fast']:.0f}x)")
        out["peak_rss_mb_with_peer"] = peak_rss_mb()
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


def _paired(a: Any, b: Any, threads: list[int], settings: list[tuple[str, int]], cfg_scale: float, pairs: int,
            json_path: Path | None) -> int:
    """Model ``a`` against model ``b``: one clip each in turn (a b b a ...: neither always goes first), batch 1,
    each model's own CFG scale unless given; per setting the medians and the median of the pairs' a/b ratios."""
    rows = []
    for gen in (a, b):
        gen.generate_full("kick", steps=2, seed=0)  # warm-up
    for t in threads:
        torch.set_num_threads(t)
        for sampler, steps in settings:
            times: dict[str, list[float]] = {"a": [], "b": []}
            for k in range(pairs):
                for key in ("ab" if k % 2 == 0 else "ba"):
                    gen = a if key == "a" else b
                    t0 = time.perf_counter()
                    gen.generate_full(["kick"], n=1, steps=steps, cfg_scale=cfg_scale, sampler=sampler, seed=k)
                    times[key].append(time.perf_counter() - t0)
            ratios = [x / y for x, y in zip(times["a"], times["b"], strict=True)]
            row = {"threads": t, "sampler": sampler, "steps": steps, "pairs": pairs, "a": a.id, "b": b.id,
                   "a_seconds": _med(times["a"]), "b_seconds": _med(times["b"]), "ratio": _med(ratios),
                   "ratio_quartiles": [sorted(ratios)[len(ratios) // 4], sorted(ratios)[3 * len(ratios) // 4]]}
            rows.append(row)
            print(f"threads {t} {sampler:>9} {steps:>3} steps + CFG: {a.id} {row['a_seconds']:.3f} s, {b.id} "
                  f"{row['b_seconds']:.3f} s a clip; ratio {row['ratio']:.3f} (quartiles "
                  f"{row['ratio_quartiles'][0]:.3f}-{row['ratio_quartiles'][1]:.3f}, {pairs} pairs)", flush=True)
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
