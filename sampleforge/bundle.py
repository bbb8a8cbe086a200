"""A model folder: ``config.json`` + ``vae/unet/text/vocoder.safetensors`` + ``vocab.json`` + ``README.md``.

Loading never unpickles: weights come from safetensors, configs from strict JSON. A missing or mismatched tensor
raises one ``CheckpointError`` naming the file and the key. Legacy ``.pt`` checkpoints of the reference design
are read with ``torch.load(weights_only=True)`` (tensors and plain containers only) by ``import_legacy_pt``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from sampleforge.audio.griffinlim import GriffinLimConfig
from sampleforge.audio.mel import MelConfig
from sampleforge.errors import CheckpointError
from sampleforge.models.text import KeywordEncoder, TextConfig
from sampleforge.models.unet import LatentUNet, UNetConfig
from sampleforge.models.vae import MelVAE, VAEConfig
from sampleforge.models.vocoder import Vocoder, VocoderConfig
from sampleforge.strict import ConfigError, from_dict, to_dict
from sampleforge.text.keywords import Vocabulary

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = "drums-v1"
FORMAT_VERSION = 1


def weights_dirs() -> list[Path]:
    """Where named models are looked up: $SAMPLEFORGE_WEIGHTS, then the repository's weights/ folder."""
    dirs = [Path(p) for p in os.environ.get("SAMPLEFORGE_WEIGHTS", "").split(os.pathsep) if p]
    return dirs + [REPO_ROOT / "weights"]


@dataclass
class DiffusionConfig:
    timesteps: int = 1000
    schedule: str = "scaled_linear"  # "linear" | "scaled_linear" | "cosine" (diffusion/schedules.py)
    beta_start: float = 0.00085
    beta_end: float = 0.012
    prediction: str = "v"  # what the U-Net predicts: "eps" | "v" | "x0"
    sampling_schedule: str = "trailing"  # timestep spacing at inference: "uniform" (leading), "trailing", "karras"

    def alphas_cumprod(self) -> torch.Tensor:
        """(timesteps,) float64 cumulative alphas of this schedule."""
        from sampleforge.diffusion.schedules import alphas_cumprod

        if self.schedule == "cosine":
            return alphas_cumprod("cosine", self.timesteps)
        return alphas_cumprod(self.schedule, self.timesteps, self.beta_start, self.beta_end)


@dataclass
class ModelConfig:
    name: str = "model"
    sample_rate: int = 44100
    duration: float = 2.0  # the clip length the model was trained on, in seconds
    mel: MelConfig = field(default_factory=MelConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    text: TextConfig = field(default_factory=TextConfig)
    vocoder: VocoderConfig | None = field(default_factory=VocoderConfig)
    griffin_lim: GriffinLimConfig = field(default_factory=GriffinLimConfig)  # without a vocoder, or --no-vocoder
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    format_version: int = FORMAT_VERSION

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config.json") -> ModelConfig:
        return from_dict(cls, data, where)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


COMPONENTS = ("vae", "unet", "text", "vocoder")


@dataclass
class Bundle:
    """The four networks of a model, its config, vocabulary and card (inference only, eval mode)."""

    config: ModelConfig
    vae: MelVAE
    unet: LatentUNet
    text: KeywordEncoder
    vocoder: Vocoder | None
    vocab: Vocabulary
    card: str = ""
    path: Path | None = None

    def modules(self) -> dict[str, nn.Module]:
        mods: dict[str, nn.Module] = {"vae": self.vae, "unet": self.unet, "text": self.text}
        if self.vocoder is not None:
            mods["vocoder"] = self.vocoder
        return mods

    def to(self, device: torch.device | str) -> Bundle:
        for m in self.modules().values():
            m.to(device)
        return self


def build_modules(cfg: ModelConfig) -> dict[str, nn.Module]:
    """Fresh (randomly initialised) networks for ``cfg``."""
    mods: dict[str, nn.Module] = {
        "vae": MelVAE(cfg.vae),
        "unet": LatentUNet(cfg.unet),
        "text": KeywordEncoder(cfg.text),
    }
    if cfg.vocoder is not None:
        mods["vocoder"] = Vocoder(cfg.vocoder, cfg.mel)
    return mods


def check_config(cfg: ModelConfig, vocab: Vocabulary | None = None) -> None:
    """Cross-section consistency: one error naming the two keys that disagree."""
    if cfg.unet.in_channels != cfg.vae.latent_channels:
        raise ConfigError(
            f"config.json: unet.in_channels ({cfg.unet.in_channels}) != vae.latent_channels ({cfg.vae.latent_channels})"
        )
    if cfg.unet.cond_dim != cfg.text.cond_dim:
        raise ConfigError(f"config.json: unet.cond_dim ({cfg.unet.cond_dim}) != text.cond_dim ({cfg.text.cond_dim})")
    if cfg.vae.n_mels != cfg.mel.n_mels:
        raise ConfigError(f"config.json: vae.n_mels ({cfg.vae.n_mels}) != mel.n_mels ({cfg.mel.n_mels})")
    if vocab is not None and len(vocab) + 1 > cfg.text.vocab_size:
        raise ConfigError(
            f"vocab.json holds {len(vocab)} keywords but text.vocab_size is {cfg.text.vocab_size} (needs >= {len(vocab) + 1})"
        )


def read_config(path: Path) -> ModelConfig:
    file = path / "config.json"
    if not file.is_file():
        raise CheckpointError(f"{path}: not a model folder (no config.json)")
    try:
        data = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{file}: invalid JSON ({exc})") from None
    return ModelConfig.from_dict(data, str(file))


def load_state(module: nn.Module, file: Path) -> None:
    """Load ``file`` (safetensors) into ``module`` strictly; errors name the file and the key."""
    if not file.is_file():
        raise CheckpointError(f"{file}: missing")
    try:
        state = load_file(str(file))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{file.name}: not a readable safetensors file ({exc})") from None
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    if missing:
        raise CheckpointError(f"{file.name}: missing key {missing[0]!r}; was it trained with another config?")
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        raise CheckpointError(f"{file.name}: unexpected key {unexpected[0]!r}; was it trained with another config?")
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"{file.name}: key {k!r} has shape {tuple(state[k].shape)}, the config expects {tuple(v.shape)}"
            )
    module.load_state_dict(state, strict=True)


def resolve_model(name_or_path: str | os.PathLike[str]) -> Path:
    """A model folder path, or a shipped model's name ("drums-v1") → its folder."""
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        return p
    if p.suffix or os.sep in str(name_or_path):
        if p.is_file() and p.name == "config.json":
            return p.parent
        raise CheckpointError(f"{p}: no such model folder")
    for d in weights_dirs():
        if (d / str(name_or_path)).is_dir():
            return d / str(name_or_path)
    known = sorted({q.name for d in weights_dirs() if d.is_dir() for q in d.iterdir() if (q / "config.json").is_file()})
    raise CheckpointError(f"unknown model {str(name_or_path)!r} (known: {', '.join(known) or 'none'})")


def load_bundle(name_or_path: str | os.PathLike[str] = DEFAULT_MODEL, device: str | torch.device = "cpu",
                components: dict[str, Path | None] | None = None) -> Bundle:
    """Load a model folder. ``components`` overrides single weight files (e.g. ``{"vocoder": None}`` drops it)."""
    path = resolve_model(name_or_path)
    cfg = read_config(path)
    vocab_file = path / "vocab.json"
    if not vocab_file.is_file():
        raise CheckpointError(f"{path}: missing vocab.json")
    try:
        vocab = Vocabulary.load(vocab_file)
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{vocab_file}: invalid ({exc})") from None
    check_config(cfg, vocab)
    overrides = components or {}
    if "vocoder" in overrides and overrides["vocoder"] is None:
        cfg.vocoder = None
    mods = build_modules(cfg)
    for name, module in mods.items():
        file = overrides.get(name) or path / f"{name}.safetensors"
        load_state(module, Path(file))
        module.eval().requires_grad_(False)
    card = (path / "README.md").read_text() if (path / "README.md").is_file() else ""
    bundle = Bundle(config=cfg, vocab=vocab, card=card, path=path, vae=mods["vae"], unet=mods["unet"],  # type: ignore[arg-type]
                    text=mods["text"], vocoder=mods.get("vocoder"))  # type: ignore[arg-type]
    return bundle.to(device)


def save_bundle(bundle: Bundle, out_dir: str | os.PathLike[str]) -> Path:
    """Write a model folder atomically (a temp folder renamed into place)."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "config.json").write_text(json.dumps(bundle.config.to_dict(), indent=2) + "\n")
        bundle.vocab.save(tmp / "vocab.json")
        for name, module in bundle.modules().items():
            state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
            save_file(state, str(tmp / f"{name}.safetensors"), metadata={"format": "pt", "component": name})
        if bundle.card:
            (tmp / "README.md").write_text(bundle.card)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    bundle.path = out
    return out


def sha256(file: Path) -> str:
    h = hashlib.sha256()
    with open(file, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_id(path: Path) -> str:
    """A short content id for a model folder (hash of its config and weight hashes)."""
    h = hashlib.sha256()
    for f in sorted(path.glob("*.safetensors")) + [path / "config.json"]:
        if f.is_file():
            h.update(f.name.encode())
            h.update(sha256(f).encode())
    return f"{path.name}@{h.hexdigest()[:12]}"


def inspect_bundle(name_or_path: str | os.PathLike[str]) -> dict[str, Any]:
    """Everything about a model folder without building it: config, tensors per component, vocab, hashes."""
    path = resolve_model(name_or_path)
    cfg = read_config(path)
    info: dict[str, Any] = {"path": str(path), "id": model_id(path), "config": cfg.to_dict(), "components": {}}
    for name in COMPONENTS:
        file = path / f"{name}.safetensors"
        if not file.is_file():
            continue
        try:
            state = load_file(str(file))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{file.name}: not a readable safetensors file ({exc})") from None
        dtypes = sorted({str(v.dtype).replace("torch.", "") for v in state.values()})
        info["components"][name] = {
            "file": file.name,
            "parameters": int(sum(v.numel() for v in state.values())),
            "tensors": len(state),
            "dtypes": dtypes,
            "bytes": file.stat().st_size,
            "sha256": sha256(file),
        }
    vocab_file = path / "vocab.json"
    if vocab_file.is_file():
        vocab = Vocabulary.load(vocab_file)
        info["vocab"] = dict(vocab.counts)
    info["card"] = (path / "README.md").is_file()
    return info


def make_debug_bundle(out_dir: str | os.PathLike[str], seed: int = 0, vocab_words: list[str] | None = None) -> Path:
    """A random-weight model with configs/debug.json sizes: runs end to end in well under a second (tests)."""
    cfg = debug_config()
    words = vocab_words or ["kick", "snare", "closed", "open", "hat", "clap", "tom", "crash", "808", "punchy", "deep"]
    vocab = Vocabulary({w: 10 for w in words})
    cfg.text.vocab_size = max(cfg.text.vocab_size, len(vocab) + 1)
    torch.manual_seed(seed)
    mods = build_modules(cfg)
    bundle = Bundle(config=cfg, vocab=vocab, card="# debug model\n\nRandom weights, for tests.\n", **mods)  # type: ignore[arg-type]
    return save_bundle(bundle, out_dir)


def debug_config() -> ModelConfig:
    """The tiny configuration of configs/debug.json."""
    file = REPO_ROOT / "configs" / "debug.json"
    data = json.loads(file.read_text())
    return ModelConfig.from_dict(data["model"], str(file))


def import_legacy_pt(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a reference-design ``.pt`` checkpoint safely (``weights_only=True``) → its parts.

    Recognised keys: ``ema_state_dict``/``model_state_dict`` (U-Net), ``text_enc_state_dict``, ``vocab``,
    ``config``, ``generator`` (vocoder), ``encoder``/``decoder`` or ``model_state_dict`` (VAE).
    Anything that would need unpickling arbitrary objects is refused with a clear error.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such file")
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError / RuntimeError with long texts
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{p.name}: cannot be read safely with weights_only=True ({first[:200]}); "
            "it holds pickled objects sampleforge will not execute"
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{p.name}: expected a dict of state dicts, got {type(obj).__name__}")
    return obj


def inspect_legacy_pt(path: str | os.PathLike[str]) -> dict[str, Any]:
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


def convert_legacy(diffusion_pt: str | os.PathLike[str], vae_pt: str | os.PathLike[str],
                   vocoder_pt: str | os.PathLike[str] | None, out_dir: str | os.PathLike[str]) -> Path:
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
        vocab = Vocabulary({str(k): int(v) for k, v in raw_vocab.items()})
    elif isinstance(raw_vocab, (list, tuple)):
        vocab = Vocabulary({str(w): 1 for w in raw_vocab if str(w) not in ("<pad>", "<unk>", "")})
    else:
        raise CheckpointError(f"{dname}: no 'vocab' list or dict")
    if vocoder_pt is None:
        cfg.vocoder = None
    check_config(cfg, vocab)
    mods = build_modules(cfg)
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
