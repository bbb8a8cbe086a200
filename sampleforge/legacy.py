"""Legacy ``.pt`` checkpoints of the reference design: read safely, inspect, convert to a model folder.

They are read with ``torch.load(weights_only=True)`` (tensors and plain containers only): anything that would
need unpickling arbitrary objects is refused. ``sampleforge import`` (``legacy_commands``) is the command line.
"""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from sampleforge.bundle import Bundle, build_modules, load_state, save_bundle, sha256
from sampleforge.errors import CheckpointError
from sampleforge.model_config import ModelConfig, check_config
from sampleforge.strict import ConfigError
from sampleforge.text.keywords import Vocabulary

PathLike = str | os.PathLike[str]


def load_weights_only(file: Path, name: str | None = None) -> Any:
    """``torch.load(file, weights_only=True)`` on the CPU, torch's warnings silenced; a file that is no
    ``torch.save`` file, or holds objects other than tensors and plain containers (refused, never executed), is a
    CheckpointError of one fixed sentence naming it as ``name`` (default: the path). torch's own texts are long
    and advise loading unsafely: they are never quoted."""
    name = str(file) if name is None else name
    with file.open("rb") as f:
        head = f.read(2)
    if not zipfile.is_zipfile(file) and not head.startswith(b"\x80"):  # torch.save: a zip, or a pickle (protocol 2+)
        raise CheckpointError(f"{name}: not a PyTorch checkpoint (neither torch.save's zip nor a pickle)")
    try:
        with warnings.catch_warnings():  # torch warns of pickle protocols it did not write; the error says enough
            warnings.simplefilter("ignore")
            return torch.load(str(file), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # weights_only met something other than tensors and plain containers
        raise CheckpointError(
            f"{name}: holds objects other than tensors; refused, not executed (sampleforge reads checkpoints with "
            "torch.load(weights_only=True): other objects cannot be read safely)"
        ) from None
    except Exception:
        raise CheckpointError(f"{name}: corrupt or not a torch.save file") from None


def import_legacy_pt(path: PathLike) -> dict[str, Any]:
    """Read a reference-design ``.pt`` checkpoint safely (``weights_only=True``) → its parts.

    Recognised keys: ``ema_state_dict``/``model_state_dict`` (U-Net), ``text_enc_state_dict``, ``vocab``,
    ``config``, ``generator`` (vocoder), ``encoder``/``decoder`` or ``model_state_dict`` (VAE).
    Anything that would need unpickling arbitrary objects is refused with a clear error.
    """
    p = Path(path)
    if p.is_dir():
        raise CheckpointError(f"{p} is a folder, not a .pt checkpoint")
    if not p.is_file():
        raise CheckpointError(f"{p}: no such file")
    obj = load_weights_only(p, p.name)
    if not isinstance(obj, dict):
        raise CheckpointError(f"{p.name}: expected a dict of state dicts, got {type(obj).__name__}")
    return obj


def inspect_legacy_pt(path: PathLike) -> dict[str, Any]:
    """Summary of a legacy ``.pt``: its top-level keys, tensor counts and parameter totals, config, vocab."""
    obj = import_legacy_pt(path)
    info: dict[str, Any] = {"path": str(path), "sha256": sha256(Path(path)), "keys": {}}
    for key, value in obj.items():
        if isinstance(value, dict) and value and all(isinstance(v, torch.Tensor) for v in value.values()):
            info["keys"][key] = {
                "tensors": len(value),
                "parameters": int(sum(v.numel() for v in value.values())),
                "dtypes": sorted({str(v.dtype).replace("torch.", "") for v in value.values()}),
            }
        elif isinstance(value, torch.Tensor):
            info["keys"][key] = {"tensor": list(value.shape), "dtype": str(value.dtype).replace("torch.", "")}
        elif key == "vocab":
            info["vocab"] = value if isinstance(value, (list, dict)) else str(value)
        elif key == "config":
            info["config"] = value
        else:
            info["keys"][key] = {"value": repr(value)[:200]}
    return info


def _legacy_state(obj: dict[str, Any], keys: tuple[str, ...], file: str) -> dict[str, torch.Tensor]:
    for key in keys:
        value = obj.get(key)
        if isinstance(value, dict) and all(isinstance(v, torch.Tensor) for v in value.values()):
            return value
    raise CheckpointError(f"{file}: none of the keys {', '.join(map(repr, keys))} holds a state dict (has: {', '.join(map(repr, obj))})")


def convert_legacy(diffusion_pt: PathLike, vae_pt: PathLike,
                   vocoder_pt: PathLike | None, out_dir: PathLike) -> Path:
    """Reference-design ``.pt`` checkpoints → a model folder, where their layout matches sampleforge's networks.

    The diffusion checkpoint must carry ``config`` (a sampleforge model config), ``vocab`` (a list of words or a
    word → count dict), ``ema_state_dict`` (or ``model_state_dict``) and ``text_enc_state_dict``; the VAE one
    ``model_state_dict`` (or ``vae``); the vocoder one ``generator``. Tensors are checked key by key: a layout
    that does not match raises CheckpointError naming the file and the first key that differs.
    """
    dif = import_legacy_pt(diffusion_pt)
    dname = Path(diffusion_pt).name
    if not isinstance(dif.get("config"), dict):
        raise CheckpointError(f"{dname}: no 'config' dict; cannot tell which architecture the weights belong to")
    try:
        cfg = ModelConfig.from_dict(dif["config"], f"{dname}: config")
    except ConfigError as exc:
        raise CheckpointError(f"{exc} (this checkpoint's architecture is not one sampleforge can load)") from None
    raw_vocab = dif.get("vocab")
    if isinstance(raw_vocab, dict):
        try:
            counts = {str(k): int(v) for k, v in raw_vocab.items()}
        except (TypeError, ValueError):
            raise CheckpointError(f"{dname}: vocab counts must be integers (a word -> count dict)") from None
        vocab = Vocabulary(counts)
    elif isinstance(raw_vocab, (list, tuple)):
        vocab = Vocabulary({str(w): 1 for w in raw_vocab if str(w) not in ("<pad>", "<unk>", "")})
    else:
        raise CheckpointError(f"{dname}: no 'vocab' list or dict")
    if vocoder_pt is None:
        cfg.vocoder = None  # Griffin-Lim
    elif cfg.vocoder is None:
        raise CheckpointError(f"{dname}: its config has no vocoder; drop --vocoder (the model uses Griffin-Lim)")
    check_config(cfg, vocab)
    mods: dict[str, Any] = {"vocoder": None, **build_modules(cfg)}
    tmp = Path(tempfile.mkdtemp(prefix="sampleforge-legacy-"))
    try:
        parts: list[tuple[str, dict[str, torch.Tensor], str]] = [
            ("unet", _legacy_state(dif, ("ema_state_dict", "model_state_dict"), dname), dname),
            ("text", _legacy_state(dif, ("text_enc_state_dict",), dname), dname),
        ]
        vae = import_legacy_pt(vae_pt)
        parts.append(("vae", _legacy_state(vae, ("model_state_dict", "vae", "ema_state_dict"), Path(vae_pt).name),
                      Path(vae_pt).name))
        if vocoder_pt is not None:
            voc = import_legacy_pt(vocoder_pt)
            parts.append(("vocoder", _legacy_state(voc, ("generator", "model_state_dict"), Path(vocoder_pt).name),
                          Path(vocoder_pt).name))
        for name, state, source in parts:
            file = tmp / f"{source}.{name}.safetensors"
            save_file({k: v.contiguous() for k, v in state.items()}, str(file))
            try:
                load_state(mods[name], file)
            except CheckpointError as exc:
                raise CheckpointError(str(exc).replace(file.name, f"{source} ({name})")) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    bundle = Bundle(config=cfg, vocab=vocab, card=f"# imported from {dname}\n", **mods)  # type: ignore[arg-type]
    return save_bundle(bundle, out_dir)
