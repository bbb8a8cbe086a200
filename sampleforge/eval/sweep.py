"""``sampleforge sweep``: one prompt rendered over a grid of cfg x steps x sampler, into one HTML page.

The answer to "is it the weights or the hyper-parameters?" (the "FM radio" report): every cell shows the
latent std, the raw audio std, the clipping percentage and loudness BEFORE finishing (peak normalisation
hides clipping and level problems), the NaN count and the time, with a spectrogram and a player of the
finished clip. All cells use the same seed, so they differ only by the settings.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from sampleforge.errors import UserInputError
from sampleforge.eval import metrics, report
from sampleforge.params import GenerationParams

MAX_CELLS = 64  # settings in one sweep: each cell is a row of players and pictures in one page
MAX_CLIPS = 256  # clips in one sweep (cells x count): the page carries every clip as a player
DEFAULT_SAMPLERS = 3  # samplers swept when none is named (ddim, dpmpp_2m, heun; other models: their first three)
SWEEP_KEYS = ("model_id", "prompt", "cells")  # the keys that tell an earlier sweep.json from any other file


def check_grid(cells: int, count: int) -> None:
    """Refuse a grid too large for one page before anything is rendered (UserInputError naming the sizes)."""
    if cells > MAX_CELLS:
        raise UserInputError(f"the sweep has {cells} cells (cfg x steps x sampler), at most {MAX_CELLS}: "
                             "sweep fewer settings at a time")
    if cells * count > MAX_CLIPS:
        raise UserInputError(f"the sweep renders {cells} cells x {count} clips = {cells * count} clips, at most "
                             f"{MAX_CLIPS}: lower --count or sweep fewer settings")


def run_sweep(generator: Any, base: GenerationParams, cfgs: Sequence[float], steps: Sequence[int],
              samplers: Sequence[str]) -> dict[str, Any]:
    """Render every (sampler, steps, cfg) cell over ``base`` (prompt, seed, count, duration, ...) with any
    backend; returns the JSON-able result plus ``_audio`` (key -> (count, T)). The stage statistics come from
    the backend's ``Generation``: the sampler's latents and the waveform before finishing (``raw``)."""
    base = generator.resolve(base)
    check_grid(len(samplers) * len(steps) * len(cfgs), base.count)
    unfit = [s for s in samplers if s not in generator.samplers]
    if unfit:  # fail before the first (slow) cell, naming the bad value
        raise UserInputError(f"--sampler {unfit[0]!r} does not fit this model (valid: {', '.join(generator.samplers)})")
    sr = generator.sample_rate
    cells: list[dict[str, Any]] = []
    audio: dict[str, Any] = {}
    bar = tqdm(total=len(samplers) * len(steps) * len(cfgs), desc=f"sweep ({base.count} clips a cell)", unit="cell",
               file=sys.stderr, disable=None, leave=False)
    for sampler in samplers:
        for st in steps:
            for c in cfgs:
                bar.set_postfix_str(f"{sampler} {st} steps cfg {c:g}", refresh=False)
                t0 = time.perf_counter()
                g = generator.run(dataclasses.replace(base, steps=st, cfg_scale=c, sampler=sampler))
                seconds = time.perf_counter() - t0
                key = f"{sampler}-{st}-{c}"
                cells.append({"key": key, "sampler": sampler, "steps": int(st), "cfg_scale": float(c),
                              "seeds": list(g.seeds), "seconds": seconds, **stage_stats(g, sr),
                              "warnings": list(g.warnings)})
                audio[key] = mono_rows(g.audio).numpy()
                bar.update(1)
    bar.close()
    warnings = list(dict.fromkeys([*generator.check_prompt(base.prompt), *(w for c in cells for w in c["warnings"])]))
    return {
        "model_id": generator.id, "model_kind": getattr(generator, "kind", "sampleforge"), "prompt": base.prompt,
        "seed": base.seed, "n": base.count, "duration": base.duration, "cfg": [float(c) for c in cfgs],
        "steps": [int(s) for s in steps], "samplers": list(samplers), "device": str(generator.device),
        "warnings": warnings, "cells": cells, "_audio": audio, "_sample_rate": sr,
    }


def mono_rows(wav: torch.Tensor) -> torch.Tensor:
    """(B, T) or (B, C, T) -> (B, T): channels averaged (for loudness, spectrograms and players)."""
    return wav.float().mean(dim=1) if wav.ndim == 3 else wav.float()


def stage_stats(g: Any, sample_rate: int) -> dict[str, Any]:
    """Per-stage statistics of one ``Generation``: latent std, mel mean, raw audio std / peak / clipping %,
    NaN count over every stage, loudness before and after finishing, and the backend's times and memory."""
    raw_all = g.raw if g.raw is not None else g.audio
    raw_clean = torch.nan_to_num(mono_rows(raw_all))
    latents = g.latents if g.latents is not None else torch.zeros(1)
    nan = metrics.nan_count(latents) + metrics.nan_count(raw_all)
    out: dict[str, Any] = {
        "latent_std": float(torch.nan_to_num(latents.float()).std()),
        "mel_mean": None if g.mels is None else float(torch.nan_to_num(g.mels.float()).mean()),
        "raw_audio_std": float(raw_clean.std()),
        "raw_peak": float(raw_clean.abs().max()),
        "raw_clipping_percent": metrics.clipping_percent(raw_all),
        "nan_count": nan + (metrics.nan_count(g.mels) if g.mels is not None else 0),
        "lufs": float(sum(metrics.loudness_lufs(x, sample_rate) for x in raw_clean.numpy()) / len(raw_clean)),
        "finished_lufs": float(sum(metrics.loudness_lufs(x, sample_rate) for x in mono_rows(g.audio).numpy())
                               / len(g.audio)),
    }
    out.update({k: float(v) for k, v in g.stats.items()})
    return out


def sweep(model: str | Path, base: GenerationParams, cfgs: Sequence[float], steps: Sequence[int],
          samplers: Sequence[str] | None, out_dir: str | Path,
          device: str | None = None) -> tuple[dict[str, Any], Path, Path]:
    """Load the model (any backend; ``base`` carries its load-time settings), run the grid, write
    ``sweep.json`` + ``sweep.html``. ``samplers`` None: ddim, dpmpp_2m, heun (other models: their first
    three). Returns (result, json, html)."""
    from sampleforge.backends import BackendOptions, load_backend

    cfgs, steps = list(dict.fromkeys(cfgs)), list(dict.fromkeys(steps))  # a value named twice is one cell
    samplers = list(dict.fromkeys(samplers)) if samplers else None
    # at once, not after loading: the grid's size, and the folder (it may hold only an earlier sweep's page)
    check_grid(len(cfgs) * len(steps) * (len(samplers) if samplers else DEFAULT_SAMPLERS), base.count)
    report.check_report_folder(out_dir, "--out", "sweep", SWEEP_KEYS, ["sweep.json", "sweep.html"])
    gen = load_backend(model, BackendOptions.from_params(base, device))
    if samplers is None:
        samplers = ["ddim", "dpmpp_2m", "heun"] if gen.kind == "sampleforge" else list(gen.samplers[:3])
    result = run_sweep(gen, base, cfgs, steps, samplers)
    js, page = report.write_report(result, out_dir, "sweep", report.sweep_html(result))
    return result, js, page
