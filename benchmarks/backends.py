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
   tokens): one sampler step (a forward at cfg 1, batch 1) in fp32 and int8. Its 8 ping-pong steps cost 8 of
   them.
Speed does not depend on the weights; the differences are those of random weights (a trained model's may
differ) and are reported as relative L2 error and peak-normalised correlation.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

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


def _time(fn: Any, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def bench_dit(layers: int, length: int, repeats: int) -> dict[str, Any]:
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

    ref = forward(dit)
    fp32_s = _time(lambda: forward(dit), repeats)
    q = quantize_int8(dit)
    out_q = forward(q)
    int8_s = _time(lambda: forward(q), repeats)
    bf = dit.to(torch.bfloat16)
    out_bf = forward(bf, torch.bfloat16)
    bf16_s = _time(lambda: forward(bf, torch.bfloat16), repeats)
    params = sum(p.numel() for p in dit.parameters())
    return {"layers": layers, "parameters": params, "latent_frames": length, "batch": 2,
            "fp32_s": fp32_s, "int8": {"s": int8_s, "speedup": fp32_s / int8_s, "rel_l2": _rel(out_q, ref),
                                       "correlation": peak_correlation(out_q, ref)},
            "bf16": {"s": bf16_s, "speedup": fp32_s / bf16_s, "rel_l2": _rel(out_bf, ref),
                     "correlation": peak_correlation(out_bf, ref)}}


def bench_sao_small(repeats: int) -> dict[str, Any]:
    from sampleforge.backends.sat import SatConfig, build_dit, default_inv_freq, rotary

    dit_cfg = {"io_channels": 64, "embed_dim": 1024, "depth": 16, "num_heads": 8, "cond_token_dim": 768,
               "global_cond_dim": 768, "attn_kwargs": {"qk_norm": "ln"}}
    cfg = SatConfig(sample_rate=44100, sample_size=524288, objective="rf_denoiser", dit=dit_cfg, decoder={},
                    downsampling=2048, scale=1.0, latent_channels=64, audio_channels=2, cond_dim=768,
                    conditioners={}, cross_ids=(), global_ids=())
    torch.manual_seed(0)
    dit = build_dit(cfg).eval()
    x, t = torch.randn(1, 64, cfg.frames), torch.tensor([0.5])
    cross, glob = torch.randn(1, 65, 768), torch.randn(1, 1, 768)
    emb = rotary(default_inv_freq(cfg.head_dim), cfg.frames + 1)

    def forward(model: Any) -> torch.Tensor:
        with torch.inference_mode():
            return model(x, t, encoder_hidden_states=cross, global_hidden_states=glob, rotary_embedding=emb,
                         return_dict=False)[0]

    ref = forward(dit)
    fp32_s = _time(lambda: forward(dit), repeats)
    q = quantize_int8(dit)
    out_q = forward(q)
    int8_s = _time(lambda: forward(q), repeats)
    return {"parameters": sum(p.numel() for p in dit.parameters()), "fp32_step_s": fp32_s,
            "int8": {"step_s": int8_s, "speedup": fp32_s / int8_s, "rel_l2": _rel(out_q, ref),
                     "correlation": peak_correlation(out_q, ref)}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30.0, help="audio decoded (default 30)")
    ap.add_argument("--decoder-channels", type=int, default=32, help="Oobleck width (Stable Audio Open: 128)")
    ap.add_argument("--chunk", type=float, default=2.0, help="decode chunk in seconds (default 2)")
    ap.add_argument("--layers", type=int, default=2, help="DiT blocks (Stable Audio Open: 24)")
    ap.add_argument("--length", type=int, default=256, help="latent frames (256 = 11.9 s)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--sao-small", action="store_true", help="only part 3: Stable Audio Open Small's DiT")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.sao_small:
        sao = bench_sao_small(args.repeats)
        print(f"Stable Audio Open Small DiT ({sao['parameters'] / 1e6:.1f} M params, 256 frames, batch 1): fp32 "
              f"{sao['fp32_step_s']:.2f} s/step; int8 {sao['int8']['step_s']:.2f} s ({sao['int8']['speedup']:.2f}x), "
              f"output rel. L2 {sao['int8']['rel_l2']:.3f}, correlation {sao['int8']['correlation']:.4f}")
        if args.json:
            args.json.write_text(json.dumps({"sao_small": sao}, indent=2))
        return 0
    decode = bench_decode(args.seconds, args.decoder_channels, args.chunk)
    print(f"decode {decode['seconds_of_audio']:.1f} s of stereo audio: full {decode['full']['peak_mib']:.0f} MiB peak, "
          f"{decode['full']['seconds']:.1f} s; chunks of {args.chunk:g} s {decode['chunked']['peak_mib']:.0f} MiB peak, "
          f"{decode['chunked']['seconds']:.1f} s; rel. L2 {decode['rel_l2']:.2e}, correlation {decode['correlation']:.6f}")
    dit = bench_dit(args.layers, args.length, args.repeats)
    print(f"DiT ({dit['layers']} blocks, {dit['parameters'] / 1e6:.1f} M params, {dit['latent_frames']} frames, batch 2): "
          f"fp32 {dit['fp32_s'] * 1000:.0f} ms/forward")
    for name in ("int8", "bf16"):
        d = dit[name]
        print(f"  {name}: {d['s'] * 1000:.0f} ms ({d['speedup']:.2f}x), output rel. L2 {d['rel_l2']:.3f}, "
              f"correlation {d['correlation']:.4f}")
    if args.json:
        args.json.write_text(json.dumps({"decode": decode, "dit": dit}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
