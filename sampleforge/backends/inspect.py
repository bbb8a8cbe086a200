"""``sampleforge inspect`` for other people's model folders (diffusers pipelines, stable-audio-tools folders):
components, parameter counts, dtypes and the sampler mapping, read from the configs and safetensors headers
without building any network."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sampleforge.backends import schedulers
from sampleforge.backends.resolve import check_diffusers_folder
from sampleforge.errors import CheckpointError


def _header(f: Path) -> dict[str, tuple[list[int], str]]:
    """A safetensors file's header: tensor name -> (shape, dtype); CheckpointError naming the file when it cannot
    be read as safetensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(f), framework="pt") as handle:
            return {key: (list(sl.get_shape()), str(sl.get_dtype())) for key in handle.keys()
                    for sl in [handle.get_slice(key)]}
    except Exception as exc:  # safetensors' errors are of its Rust extension; a truncated file is an OSError
        raise CheckpointError(f"{f}: not a readable safetensors file ({exc})") from None


def _tensor_summary(files: list[Path]) -> dict[str, Any]:
    tensors = params = 0
    dtypes: set[str] = set()
    for f in files:
        if f.suffix != ".safetensors":
            continue
        for shape, dtype in _header(f).values():
            n = 1
            for d in shape:
                n *= int(d)
            tensors, params = tensors + 1, params + n
            dtypes.add(dtype.lower())
    return {"tensors": tensors, "parameters": params, "dtypes": sorted(dtypes),
            "bytes": sum(f.stat().st_size for f in files)}


def inspect_diffusers(path: Path) -> dict[str, Any]:
    """A diffusers pipeline folder -> its pipeline class, family, components and sampler mapping."""
    from sampleforge.backends.diffusers_backend import FAMILIES

    components = check_diffusers_folder(path)
    index = json.loads((path / "model_index.json").read_text())
    cls = str(index["_class_name"])
    family = FAMILIES.get(cls, "unsupported")
    out: dict[str, Any] = {}
    for name, spec in components.items():
        if spec[1] is None:
            continue
        folder = path / name
        files = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin"))
        out[name] = {"class": spec[1], "library": spec[0], "files": [f.name for f in files],
                     **(_tensor_summary(files) if files else {})}
    native = str(components.get("scheduler", [None, "?"])[1])
    return {"kind": "diffusers", "path": str(path), "pipeline": cls, "family": family,
            "diffusers_version": index.get("_diffusers_version"), "components": out,
            "samplers": schedulers.describe(family, native)}


def inspect_stable_audio_tools(path: Path) -> dict[str, Any]:
    """A stable-audio-tools folder -> its config's shape, the tensors under each part of the checkpoint, and
    the samplers and defaults it runs with (SatFormatError naming a config field sampleforge cannot run)."""
    from sampleforge.backends.sat import CONDITIONERS, DECODER, DIT, ENCODER, OBJECTIVES, read_config

    cfg = read_config(path)
    parts = {"transformer": DIT, "decoder": DECODER, "encoder": ENCODER,
             "conditioners": CONDITIONERS}
    counts = dict.fromkeys(parts, 0)
    files = sorted(path.glob("*.safetensors"))
    for f in files[:1]:
        for key, (shape, _) in _header(f).items():
            part = next((name for name, prefix in parts.items() if key.startswith(prefix)), None)
            if part is not None:
                n = 1
                for d in shape:
                    n *= int(d)
                counts[part] += n
    samplers, steps, cfg_scale = OBJECTIVES[cfg.objective]
    return {"kind": "stable-audio-tools", "path": str(path), "objective": cfg.objective,
            "sample_rate": cfg.sample_rate, "window_s": cfg.sample_size / cfg.sample_rate,
            "dit": {k: cfg.dit[k] for k in ("embed_dim", "depth", "num_heads", "io_channels")} | {"qk_norm": cfg.qk_norm},
            "conditioners": {cid: kind for cid, (kind, _) in cfg.conditioners.items()},
            "weights": [f.name for f in files] or [f.name for f in sorted(path.glob("*.ckpt"))],
            "parameters": counts if files else None, "samplers": list(samplers),
            "defaults": {"steps": steps, "cfg_scale": cfg_scale}}


def format_stable_audio_tools(info: dict[str, Any]) -> str:
    d = info["dit"]
    lines = [f"stable-audio-tools model: {info['path']}",
             f"{info['objective']} DiT: {d['depth']} layers x {d['embed_dim']} wide, {d['num_heads']} heads, "
             f"qk_norm {d['qk_norm']}, {d['io_channels']} latent channels; {info['sample_rate']} Hz, window "
             f"{info['window_s']:.2f} s",
             "conditioners: " + ", ".join(f"{k} ({v})" for k, v in info["conditioners"].items()),
             f"weights: {', '.join(info['weights'])}"]
    if info["parameters"]:
        lines += [f"  {name:<13} {n:>12,} params" for name, n in info["parameters"].items()]
    lines.append(f"samplers (--sampler): {', '.join(info['samplers'])}; defaults {info['defaults']['steps']} steps, "
                 f"cfg {info['defaults']['cfg_scale']:g}")
    return "\n".join(lines)


def format_diffusers(info: dict[str, Any]) -> str:
    lines = [f"diffusers pipeline: {info['path']}", f"{info['pipeline']} (family {info['family']}, saved with "
             f"diffusers {info.get('diffusers_version')})", "components:"]
    total = 0
    for name, c in info["components"].items():
        total += int(c.get("parameters", 0))
        weights = f"{c['parameters']:>12,} params  {','.join(c['dtypes']):<9} {c['bytes'] / 1e6:9.1f} MB" \
            if "parameters" in c else ""
        lines.append(f"  {name:<18} {c['class']:<34} {weights}")
    lines.append(f"total parameters: {total:,}")
    lines.append("samplers (--sampler):")
    lines += [f"  {k:<16} {v}" for k, v in info["samplers"].items()]
    return "\n".join(lines)
