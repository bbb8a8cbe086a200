"""Resumable training checkpoints: safetensors + JSON only, written atomically.

    out_dir/checkpoint/
      model.safetensors    the model's weights
      ema.safetensors      the EMA weights (when EMA is on)
      state.safetensors    optimizer state tensors ("optimizer.<param>.<name>") and RNG states ("rng.*")
      state.json           step, epoch, position, config, RNG states of python/numpy, optimizer scalars

Nothing is pickled. A checkpoint is written into ``checkpoint.tmp/`` and then swapped in by renames
(``checkpoint`` -> ``checkpoint.old``, ``checkpoint.tmp`` -> ``checkpoint``), so a process killed at
any moment leaves either the previous or the new checkpoint whole; :func:`find_checkpoint` repairs
the half-swapped state and removes a stale ``checkpoint.tmp``.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import Tensor, nn

from sampleforge.errors import CheckpointError

log = logging.getLogger("sampleforge.train")

FORMAT = 1
MODEL, EMA_FILE = "model.safetensors", "ema.safetensors"
STATE_TENSORS, STATE_JSON = "state.safetensors", "state.json"
# what every checkpoint's state.json says (besides the task's own state)
META_KEYS = ("task", "step", "epoch", "position", "n_items", "world_size", "elapsed", "config", "rng", "optimizer")


def checkpoint_path(out_dir: Path) -> Path:
    """Where the checkpoint of a run in ``out_dir`` lives."""
    return out_dir / "checkpoint"


def find_checkpoint(out_dir: Path) -> Path | None:
    """The complete checkpoint in ``out_dir`` or None; repairs an interrupted swap, drops a stale temp dir."""
    final, tmp, old = _paths(out_dir)
    if not final.exists() and old.exists():
        log.warning("%s: recovering the previous checkpoint (a save was interrupted)", old)
        os.rename(old, final)
    if tmp.exists():
        log.warning("%s: removing an incomplete checkpoint (a save was interrupted)", tmp)
        shutil.rmtree(tmp)
    if old.exists():
        shutil.rmtree(old)
    return final if (final / STATE_JSON).exists() else None


def save_checkpoint(
    out_dir: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    meta: dict[str, Any],
    tensors: dict[str, Tensor],
    ema: dict[str, Tensor] | None = None,
) -> Path:
    """Write model, optimizer, EMA, ``meta`` (JSON-able) and extra ``tensors`` atomically; returns the dir."""
    final, tmp, old = _paths(out_dir)
    find_checkpoint(out_dir)
    tmp.mkdir(parents=True)
    save_model(model, str(tmp / MODEL), force_contiguous=True)
    if ema is not None:
        save_file(_contiguous(ema), str(tmp / EMA_FILE))
    opt_tensors, opt_meta = flatten_optimizer(optimizer)
    save_file(_contiguous({**opt_tensors, **tensors}), str(tmp / STATE_TENSORS))
    (tmp / STATE_JSON).write_text(json.dumps({"format": FORMAT, **meta, "optimizer": opt_meta}, indent=1))
    for f in tmp.iterdir():
        _fsync(f)
    _fsync(tmp)
    if final.exists():
        os.rename(final, old)
    os.rename(tmp, final)
    _fsync(out_dir)
    shutil.rmtree(old, ignore_errors=True)
    return final


def read_meta(path: Path) -> dict[str, Any]:
    """The JSON part of the checkpoint at ``path`` (cheap: check it before loading weights)."""
    try:
        meta: dict[str, Any] = json.loads((path / STATE_JSON).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path / STATE_JSON}: unreadable ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise CheckpointError(f"{path / STATE_JSON}: format {found!r}, expected {FORMAT}")
    missing = [key for key in META_KEYS if key not in meta]
    if missing:
        raise CheckpointError(f"{path / STATE_JSON}: lacks {', '.join(missing)} (damaged or edited)")
    return meta


def load_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device
) -> tuple[dict[str, Tensor], dict[str, Tensor] | None]:
    """Load weights and optimizer state in place; returns (extra state tensors, EMA tensors or None)."""
    meta = read_meta(path)
    try:
        load_model(model, str(path / MODEL), strict=True, device=str(device))
        tensors = load_file(str(path / STATE_TENSORS))
        ema = load_file(str(path / EMA_FILE)) if (path / EMA_FILE).exists() else None
    except SafetensorError as exc:
        raise CheckpointError(f"{path}: damaged ({_first_reason(exc)}); put back a copy of it, or start the "
                              f"stage anew (remove {path.parent}, or choose another --out)") from None
    except (RuntimeError, OSError) as exc:
        raise CheckpointError(f"{path}: cannot load ({_first_reason(exc)}); was it written for another model "
                              "config (the model section of the recipe changed since)?") from None
    load_optimizer(optimizer, tensors, meta["optimizer"], path)
    return {k: v for k, v in tensors.items() if not k.startswith("optimizer.")}, ema


def _first_reason(exc: BaseException) -> str:
    """The line of a load error that says what differs: torch's state-dict error opens with a bare "Error(s) in
    loading state_dict for MelVAE:" and names the first mismatched or missing tensor on the next line."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if len(lines) > 1 and lines[0].endswith(":"):
        return f"{lines[0]} {lines[1]}"
    return lines[0]


def get_rng_state(gen: torch.Generator) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """This process's RNG states (python, numpy, global torch, ``gen``): (JSON part, tensor part)."""
    py = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    np_state = [name, np.asarray(keys).tolist(), pos, has_gauss, cached]
    js = {"python": [py[0], list(py[1]), py[2]], "numpy": np_state}
    ts = {"torch": torch.get_rng_state(), "generator": gen.get_state()}
    if gen.device.type == "cuda":
        ts["cuda"] = torch.cuda.get_rng_state(gen.device)
    return js, ts


def set_rng_state(js: dict[str, Any], ts: dict[str, Tensor], gen: torch.Generator) -> None:
    """Restore what :func:`get_rng_state` returned."""
    version, internal, gauss = js["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = js["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(ts["torch"])
    gen.set_state(ts["generator"])
    if "cuda" in ts and gen.device.type == "cuda":
        torch.cuda.set_rng_state(ts["cuda"], gen.device)


def _paths(out_dir: Path) -> tuple[Path, Path, Path]:
    final = checkpoint_path(out_dir)
    return final, final.with_name("checkpoint.tmp"), final.with_name("checkpoint.old")


def _contiguous(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Optimizer state → tensors ``optimizer.<param index>.<name>`` + JSON for the rest."""
    sd = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, state in sd["state"].items():
        for name, value in state.items():
            if isinstance(value, Tensor):
                tensors[f"optimizer.{idx}.{name}"] = value
            else:
                scalars.setdefault(str(idx), {})[name] = value
    groups = [{k: v for k, v in g.items() if k != "params"} for g in sd["param_groups"]]
    return tensors, {"type": type(optimizer).__name__, "scalars": scalars, "param_groups": groups}


def load_optimizer(
    optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: dict[str, Any], path: Path | str
) -> None:
    """Rebuild the optimizer state; hyper-parameters stay as configured (the config was checked)."""
    if meta.get("type") != type(optimizer).__name__:
        now = type(optimizer).__name__
        raise CheckpointError(f"{path}: optimizer {meta.get('type')!r}, this run uses {now!r}")
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    for idx, scalars in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(scalars)
    sd = optimizer.state_dict()
    n_params = sum(len(g["params"]) for g in sd["param_groups"])
    if state and max(state) >= n_params:
        raise CheckpointError(f"{path}: optimizer state of {max(state) + 1} parameters, model has {n_params}")
    sd["state"] = state
    optimizer.load_state_dict(sd)
