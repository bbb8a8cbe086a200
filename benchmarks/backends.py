"""Memory and speed controls of the backends, measured on random-weight networks of real shapes (offline).

    python -m benchmarks.backends [--seconds 30] [--json FILE]

1. Chunked decode: a Stable Audio Open-shaped Oobleck decoder (hop 2048, 64 latent channels, strides
   2-4-4-8-8; its channel width cut to ``--decoder-channels`` so it runs on a CPU) decodes ``--seconds`` of
   stereo 44.1 kHz audio in one piece and in chunks; peak resident memory and time of each, and how far the
   chunked waveform is from the full one.
2. int8 dynamic quantisation and bf16 of a Stable Audio-shaped DiT (``--layers`` blocks, width 1536 as in
   Stable Audio Open 1.0): time per forward on the CPU and the output's difference from fp32.
3. ``--sao-small``: the DiT that ``backends.sat`` builds for Stable Audio Open Small (16 blocks, width 1024,
   8 heads, q/k LayerNorms, 64 latent channels, 256 frames + the prepended global token; 65 conditioning
   tokens): one sampler step (a forward at cfg 1, batch 1) in fp32, int8 and bf16. Its 8 ping-pong steps cost 8
   of them.
fp32, int8 and bf16 are timed in turn (one forward each a round, the order reversed every other round; ``--repeats``
rounds after a warm-up forward each), and each speed-up is the median of the rounds' ratios, by wall and by CPU
time. Everything runs on ``--threads`` torch threads (default 1), set before any work.
Speed does not depend on the weights; the differences are those of random weights (a trained model's may
differ) and are reported as relative L2 error and peak-normalised correlation.
"""

from __future__ import annotations

import argparse
import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks import timing
from sampleforge.backends.memory import in_chunks, measure_peak, quantize_int8
from sampleforge.eval.metrics import peak_correlation


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm().clamp(min=1e-12))


def bench_decode(seconds: float, channels: int, chunk_s: float) -> dict[str, Any]:
    from diffusers import AutoencoderOobleck

    torch.manual_seed(0)
    vae = AutoencoderOobleck(encoder_hidden_size=32, downsampling_ratios=[2, 4, 4, 8, 8], decoder_channels=channels,
                             decoder_input_channels=64, audio_channels=2, channel_multiples=[1, 2, 4, 8, 16],
                             sampling_rate=44100).eval()
    frames = int(seconds * 44100 / 2048)
    z = torch.randn(1, 64, frames)
    chunk = max(1, int(chunk_s * 44100 / 2048))
    with torch.inference_mode():
        with measure_peak() as full_peak:
            full = vae.decode(z).sample
        with measure_peak() as chunk_peak:
            pieces = in_chunks(lambda x: vae.decode(x).sample, z, chunk=chunk, overlap=8)
    return {"seconds_of_audio": frames * 2048 / 44100, "decoder_channels": channels, "chunk_seconds": chunk_s,
            "full": {"peak_mib": full_peak.mib, "seconds": full_peak.seconds},
            "chunked": {"peak_mib": chunk_peak.mib, "seconds": chunk_peak.seconds},
            "rel_l2": _rel(pieces, full), "correlation": peak_correlation(pieces, full)}


def compare_in_turn(variants: dict[str, Callable[[], Any]], rounds: int, baseline: str = "fp32",
                    clock: timing.Clock = timing.clock) -> dict[str, dict[str, Any]]:
    """Each variant's median seconds (wall and CPU) over ``rounds`` rounds in turn (``timing.in_turn``) and, for
    the others, their speed-up over ``baseline``: the median of the rounds' ratios (wall and CPU), with quartiles."""
    times = timing.in_turn(variants, rounds, clock)
    base = times[baseline]
    out: dict[str, dict[str, Any]] = {}
    for name, t in times.items():
        row: dict[str, Any] = {"s": timing.median(t["wall"]), "cpu_s": timing.median(t["cpu"])}
        if name != baseline:
            wall, cpu = timing.ratio_summary(base["wall"], t["wall"]), timing.ratio_summary(base["cpu"], t["cpu"])
            row.update(speedup=wall["median"], speedup_quartiles=wall["quartiles"], cpu_speedup=cpu["median"])
        out[name] = row
    return out


def precisions_in_turn(dit: Any, forward: Callable[..., torch.Tensor], repeats: int, clock: timing.Clock
                       ) -> tuple[dict[str, dict[str, Any]], torch.Tensor, torch.Tensor, torch.Tensor]:
    """``dit`` in fp32, an int8 copy (``quantize_int8``) and a bf16 copy, ``forward(model[, dtype])`` each: the
    rows of ``compare_in_turn`` and the three outputs (their first calls, which are also the warm-ups)."""
    q = quantize_int8(dit)
    bf = copy.deepcopy(dit).to(torch.bfloat16)
    ref, out_q, out_bf = forward(dit), forward(q), forward(bf, torch.bfloat16)
    timed = compare_in_turn({"fp32": lambda: forward(dit), "int8": lambda: forward(q),
                             "bf16": lambda: forward(bf, torch.bfloat16)}, repeats, clock=clock)
    return timed, ref, out_q, out_bf


def bench_dit(layers: int, length: int, repeats: int, clock: timing.Clock = timing.clock) -> dict[str, Any]:
    from diffusers import StableAudioDiTModel

    torch.manual_seed(0)
    dit = StableAudioDiTModel(sample_size=length, in_channels=64, num_layers=layers, attention_head_dim=64,
                              num_attention_heads=24, num_key_value_attention_heads=12, out_channels=64,
                              cross_attention_dim=768, time_proj_dim=256, global_states_input_dim=1536,
                              cross_attention_input_dim=768).eval()
    x = torch.randn(2, 64, length)
    t = torch.tensor([0.5, 0.5])
    enc = torch.randn(2, 130, 768)
    glob = torch.randn(2, 1, 1536)

    def forward(model: Any, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        with torch.inference_mode():
            return model(x.to(dtype), t.to(dtype), encoder_hidden_states=enc.to(dtype),
                         global_hidden_states=glob.to(dtype), return_dict=False)[0].float()

    timed, ref, out_q, out_bf = precisions_in_turn(dit, forward, repeats, clock)
    params = sum(p.numel() for p in dit.parameters())
    return {"layers": layers, "parameters": params, "latent_frames": length, "batch": 2, "rounds": repeats,
            "fp32_s": timed["fp32"]["s"], "fp32_cpu_s": timed["fp32"]["cpu_s"],
            "int8": {**timed["int8"], "rel_l2": _rel(out_q, ref), "correlation": peak_correlation(out_q, ref)},
            "bf16": {**timed["bf16"], "rel_l2": _rel(out_bf, ref), "correlation": peak_correlation(out_bf, ref)}}


def bench_sao_small(repeats: int, depth: int = 16, clock: timing.Clock = timing.clock) -> dict[str, Any]:
    """Stable Audio Open Small's DiT (``depth`` blocks; 16 as shipped) in fp32, int8 and bf16, timed in turn."""
    from sampleforge.backends.sat import SatConfig, build_dit, default_inv_freq, rotary

    dit_cfg = {"io_channels": 64, "embed_dim": 1024, "depth": depth, "num_heads": 8, "cond_token_dim": 768,
               "global_cond_dim": 768, "attn_kwargs": {"qk_norm": "ln"}}
    cfg = SatConfig(sample_rate=44100, sample_size=524288, objective="rf_denoiser", dit=dit_cfg, decoder={},
                    encoder=None, downsampling=2048, scale=1.0, latent_channels=64, audio_channels=2, cond_dim=768,
                    conditioners={}, cross_ids=(), global_ids=())
    torch.manual_seed(0)
    dit = build_dit(cfg).eval()
    x, t = torch.randn(1, 64, cfg.frames), torch.tensor([0.5])
    cross, glob = torch.randn(1, 65, 768), torch.randn(1, 1, 768)
    emb = rotary(default_inv_freq(cfg.head_dim), cfg.frames + 1)

    def forward(model: Any, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        with torch.inference_mode():
            return model(x.to(dtype), t.to(dtype), encoder_hidden_states=cross.to(dtype),
                         global_hidden_states=glob.to(dtype), rotary_embedding=emb,  # fp32, as backends.sat
                         return_dict=False)[0].float()

    timed, ref, out_q, out_bf = precisions_in_turn(dit, forward, repeats, clock)

    def step(name: str, out: torch.Tensor) -> dict[str, Any]:
        row = timed[name]
        return {"step_s": row["s"], "cpu_step_s": row["cpu_s"], "speedup": row["speedup"],
                "speedup_quartiles": row["speedup_quartiles"], "cpu_speedup": row["cpu_speedup"],
                "rel_l2": _rel(out, ref), "correlation": peak_correlation(out, ref)}

    return {"parameters": sum(p.numel() for p in dit.parameters()), "depth": depth, "rounds": repeats,
            "fp32_step_s": timed["fp32"]["s"], "fp32_cpu_step_s": timed["fp32"]["cpu_s"],
            "int8": step("int8", out_q), "bf16": step("bf16", out_bf)}


def _speedup(d: dict[str, Any]) -> str:
    q = d["speedup_quartiles"]
    return f"{d['speedup']:.2f}x, quartiles {q[0]:.2f}-{q[1]:.2f}; by CPU time {d['cpu_speedup']:.2f}x"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30.0, help="audio decoded (default 30)")
    ap.add_argument("--decoder-channels", type=int, default=32, help="Oobleck width (Stable Audio Open: 128)")
    ap.add_argument("--chunk", type=float, default=2.0, help="decode chunk in seconds (default 2)")
    ap.add_argument("--layers", type=int, default=2, help="DiT blocks (Stable Audio Open: 24)")
    ap.add_argument("--length", type=int, default=256, help="latent frames (256 = 11.9 s)")
    ap.add_argument("--repeats", type=int, default=5,
                    help="rounds in turn of fp32, int8 and bf16, one forward each (default 5)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads for everything (default 1)")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--sao-small", action="store_true", help="only part 3: Stable Audio Open Small's DiT")
    args = ap.parse_args(argv)
    if args.threads < 1:
        ap.error("--threads must be at least 1")
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    threads = timing.set_threads(args.threads)  # before any work
    print(f"torch {torch.__version__}, CPU, {threads} thread{'s' if threads > 1 else ''}; fp32, int8 and bf16 timed "
          f"in turn, {args.repeats} rounds", flush=True)
    if args.sao_small:
        sao = bench_sao_small(args.repeats)
        print(f"Stable Audio Open Small DiT ({sao['parameters'] / 1e6:.1f} M params, 256 frames, batch 1): fp32 "
              f"{sao['fp32_step_s']:.2f} s/step (CPU {sao['fp32_cpu_step_s']:.2f})")
        for name in ("int8", "bf16"):
            d = sao[name]
            print(f"  {name}: {d['step_s']:.2f} s/step (CPU {d['cpu_step_s']:.2f}; {_speedup(d)}), output rel. L2 "
                  f"{d['rel_l2']:.3f}, correlation {d['correlation']:.4f}")
        if args.json:
            args.json.write_text(json.dumps({"threads": threads, "sao_small": sao}, indent=2) + "\n")
        return 0
    decode = bench_decode(args.seconds, args.decoder_channels, args.chunk)
    print(f"decode {decode['seconds_of_audio']:.1f} s of stereo audio: full {decode['full']['peak_mib']:.0f} MiB peak, "
          f"{decode['full']['seconds']:.1f} s; chunks of {args.chunk:g} s {decode['chunked']['peak_mib']:.0f} MiB peak, "
          f"{decode['chunked']['seconds']:.1f} s; rel. L2 {decode['rel_l2']:.2e}, correlation {decode['correlation']:.6f}")
    dit = bench_dit(args.layers, args.length, args.repeats)
    print(f"DiT ({dit['layers']} blocks, {dit['parameters'] / 1e6:.1f} M params, {dit['latent_frames']} frames, batch 2): "
          f"fp32 {dit['fp32_s'] * 1000:.0f} ms/forward (CPU {dit['fp32_cpu_s'] * 1000:.0f})")
    for name in ("int8", "bf16"):
        d = dit[name]
        print(f"  {name}: {d['s'] * 1000:.0f} ms (CPU {d['cpu_s'] * 1000:.0f}; {_speedup(d)}), output rel. L2 "
              f"{d['rel_l2']:.3f}, correlation {d['correlation']:.4f}")
    if args.json:
        args.json.write_text(json.dumps({"threads": threads, "decode": decode, "dit": dit}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
