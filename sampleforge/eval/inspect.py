"""``sampleforge inspect PATH``: a model folder (via ``bundle.inspect_bundle``) or a legacy ``.pt`` checkpoint
(via ``legacy.inspect_legacy_pt``, ``torch.load(weights_only=True)``, never unpickling objects): components,
parameter counts, dtypes, config, vocabulary and hashes, as text or JSON.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sampleforge.errors import CheckpointError

LEGACY_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")


def inspect_path(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A model folder or a shipped model name → ``{"kind": "bundle", ...}``; a ``.pt`` file → ``{"kind": "legacy_pt", ...}``."""
    from sampleforge import bundle, legacy
    from sampleforge.backends.resolve import resolve

    bundle.check_named(path)
    here = Path(path).expanduser()
    if here.is_dir() and not (here / "config.json").is_file() and any(here.glob("*.ckpt")):
        path = resolve(path).path  # an audio-diffusion-pytorch folder: its checkpoint, as generate takes it
    elif str(path).startswith("hf:") or (here / "model_index.json").is_file() or (here / "model_config.json").is_file():
        from sampleforge.backends.inspect import inspect_diffusers, inspect_stable_audio_tools

        ref = resolve(path)
        if ref.format == "diffusers":
            return inspect_diffusers(ref.path)
        if ref.format == "stable-audio-tools":
            return inspect_stable_audio_tools(ref.path)
        path = ref.path
    p = Path(path).expanduser()
    if p.is_file() and p.suffix.lower() in LEGACY_SUFFIXES:
        return {"kind": "legacy_pt", **legacy.inspect_legacy_pt(p)}
    if p.is_file() and p.suffix.lower() == ".safetensors":
        raise CheckpointError(f"{p}: a single weight file; inspect the model folder that holds it ({p.parent})")
    if p.is_file() and p.name != "config.json":
        raise CheckpointError(f"{p}: not a model folder or a .pt checkpoint (expected one of {', '.join(LEGACY_SUFFIXES)})")
    return {"kind": "bundle", **bundle.inspect_bundle(p)}


def _human_count(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def _human_bytes(n: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out += _flatten(v, key + ".")
        else:
            out.append((key, v))
    return out


def _config_lines(config: Any) -> list[str]:
    if not isinstance(config, dict):
        return [f"  {config!r}"]
    groups: dict[str, list[str]] = {}
    for key, value in _flatten(config):
        head, _, rest = key.partition(".")
        groups.setdefault(head if rest else "", []).append(f"{rest or key}={value}")
    lines = []
    for head, items in groups.items():
        label = f"{head}:" if head else "model:"
        lines.append(f"  {label:<11} " + ", ".join(items))
    return lines


def _vocab_line(vocab: Any, limit: int = 40) -> str:
    if isinstance(vocab, dict):
        items = sorted(vocab.items(), key=lambda kv: (-kv[1], kv[0])) if all(
            isinstance(v, (int, float)) for v in vocab.values()) else list(vocab.items())
        words = [f"{w} ({c})" for w, c in items[:limit]]
    elif isinstance(vocab, list):
        words = [str(w) for w in vocab[:limit]]
    else:
        return f"vocabulary: {vocab}"
    more = f", ... (+{len(vocab) - limit})" if len(vocab) > limit else ""
    return f"vocabulary: {len(vocab)} keywords: " + ", ".join(words) + more


def format_inspect(info: dict[str, Any]) -> str:
    """Readable text for an :func:`inspect_path` result."""
    lines: list[str] = []
    if info.get("kind") == "diffusers":
        from sampleforge.backends.inspect import format_diffusers

        return format_diffusers(info)
    if info.get("kind") == "stable-audio-tools":
        from sampleforge.backends.inspect import format_stable_audio_tools

        return format_stable_audio_tools(info)
    if info.get("kind") == "legacy_pt":
        lines.append(f"legacy checkpoint: {info['path']}")
        lines.append(f"sha256: {info.get('sha256', '?')}")
        lines.append("entries:")
        total = 0
        for key, v in info.get("keys", {}).items():
            if "parameters" in v:
                total += v["parameters"]
                lines.append(f"  {key:<24} {v['tensors']:>5} tensors  {_human_count(v['parameters']):>8} params  "
                             f"{', '.join(v['dtypes'])}")
            elif "tensor" in v:
                lines.append(f"  {key:<24} tensor {v['tensor']} {v['dtype']}")
            else:
                lines.append(f"  {key:<24} {v.get('value', v)}")
        lines.append(f"total parameters: {total:,} ({_human_count(total)})")
        if "config" in info:
            lines += ["config:", *_config_lines(info["config"])]
        if "vocab" in info:
            lines.append(_vocab_line(info["vocab"]))
        return "\n".join(lines)

    if info.get("vocoder_only"):
        lines.append(f"vocoder folder: {info['path']} (the vocoder of a model with its mel front end: "
                     "--vocoder-ckpt, vocoder_checkpoint=)")
    else:
        lines.append(f"model folder: {info['path']}")
    lines.append(f"id: {info.get('id', '?')}")
    lines.append("components:")
    total = 0
    for name, c in info.get("components", {}).items():
        total += c["parameters"]
        lines.append(f"  {name:<8} {c['file']:<22} {_human_count(c['parameters']):>8} params  {c['tensors']:>4} tensors  "
                     f"{','.join(c['dtypes']):<9} {_human_bytes(c['bytes']):>9}  sha256 {c['sha256'][:16]}")
    lines.append(f"total parameters: {total:,} ({_human_count(total)})")
    if info.get("missing"):
        lines.append(f"MISSING: {', '.join(info['missing'])}: this model cannot load")
    for problem in info.get("problems", []):
        lines.append(f"PROBLEM: {problem}: this model cannot load")
    if "config" in info:
        lines += ["config:", *_config_lines(info["config"])]
    if "vocab" in info:
        lines.append(_vocab_line(info["vocab"]))
    lines.append(f"model card (README.md): {'yes' if info.get('card') else 'missing'}")
    return "\n".join(lines)
