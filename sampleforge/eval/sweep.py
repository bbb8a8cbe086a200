"""``sampleforge sweep``: one prompt rendered over a grid of cfg x steps x sampler, into one HTML page.

The answer to "is it the weights or the hyper-parameters?" (the "FM radio" report): every cell shows the
latent std, the raw audio std, the clipping percentage and loudness BEFORE finishing (peak normalisation
hides clipping and level problems), the NaN count and the time, with a spectrogram and a player of the
finished clip. All cells use the same seed, so they differ only by the settings.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from sampleforge.errors import UserInputError
from sampleforge.eval import metrics, report
from sampleforge.params import GenerationParams


def run_sweep(generator: Any, base: GenerationParams, cfgs: Sequence[float], steps: Sequence[int],
              samplers: Sequence[str]) -> dict[str, Any]:
    """Render every (sampler, steps, cfg) cell over ``base`` (prompt, seed, count, duration, ...); returns the
    JSON-able result plus ``_audio`` (key -> (count, T))."""
    base = generator.resolve(base)
    unfit = [s for s in samplers if s not in generator.samplers]
    if unfit:  # fail before the first (slow) cell, naming the bad value
        raise UserInputError(f"--sampler {unfit[0]!r} does not fit this model (valid: {', '.join(generator.samplers)})")
    sr = generator.sample_rate
    cells: list[dict[str, Any]] = []
    audio: dict[str, Any] = {}
    for sampler in samplers:
        for st in steps:
            for c in cfgs:
                t0 = time.perf_counter()
                g = generator.run(dataclasses.replace(base, steps=st, cfg_scale=c, sampler=sampler))
                seconds = time.perf_counter() - t0
                raw = generator.vocode(g.mels.to(generator.device), g.audio.shape[1]).float().cpu()
                key = f"{sampler}-{st}-{c}"
                raw_clean = torch.nan_to_num(raw)
                cells.append({
                    "key": key, "sampler": sampler, "steps": int(st), "cfg_scale": float(c), "seeds": list(g.seeds),
                    "seconds": seconds,
                    "latent_std": float(g.latents.float().std()),
                    "mel_mean": float(torch.nan_to_num(g.mels.float()).mean()),
                    "raw_audio_std": float(raw_clean.std()),
                    "raw_peak": float(raw_clean.abs().max()),
                    "raw_clipping_percent": metrics.clipping_percent(raw),
                    "nan_count": metrics.nan_count(g.latents) + metrics.nan_count(g.mels) + metrics.nan_count(raw),
                    "lufs": float(sum(metrics.loudness_lufs(x, sr) for x in raw_clean.numpy()) / len(raw_clean)),
                    "finished_lufs": float(sum(metrics.loudness_lufs(x, sr) for x in g.audio.numpy()) / len(g.audio)),
                    "warnings": list(g.warnings),
                })
                audio[key] = g.audio.numpy()
    return {
        "model_id": generator.id, "prompt": base.prompt, "seed": base.seed, "n": base.count, "duration": base.duration,
        "cfg": [float(c) for c in cfgs], "steps": [int(s) for s in steps], "samplers": list(samplers),
        "device": str(generator.device), "cells": cells, "_audio": audio, "_sample_rate": sr,
    }


def sweep(model: str | Path, base: GenerationParams, cfgs: Sequence[float], steps: Sequence[int],
          samplers: Sequence[str], out_dir: str | Path, device: str | None = None) -> tuple[dict[str, Any], Path, Path]:
    """Load the model, run the grid, write ``sweep.json`` + ``sweep.html``. Returns (result, json, html)."""
    from sampleforge.pipeline import Generator

    gen = Generator.from_pretrained(model, device=device, precision=base.precision)
    result = run_sweep(gen, base, cfgs, steps, samplers)
    js, page = report.write_report(result, out_dir, "sweep", report.sweep_html(result))
    return result, js, page
