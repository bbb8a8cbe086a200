"""A model folder: ``config.json`` + ``vae/unet/text/vocoder.safetensors`` + ``vocab.json`` + ``README.md``.

Loading never unpickles: weights come from safetensors, the config from strict JSON (``model_config.py``). A
missing or mismatched tensor raises one ``CheckpointError`` naming the file and the key.

Shipped models are found by name in ``weights_dirs()``: the folders of ``$SAMPLEFORGE_WEIGHTS``, then the
package's own ``weights/`` (an installed package carries its shipped models), then a source checkout's
``weights/``.
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

from sampleforge.errors import CheckpointError
from sampleforge.locations import DEFAULT_MODEL, PACKAGE_DIR, REPO_ROOT
from sampleforge.model_config import ModelConfig, check_config, read_config
from sampleforge.models.text import KeywordEncoder
from sampleforge.models.unet import LatentUNet
from sampleforge.models.vae import MelVAE
from sampleforge.models.vocoder import Vocoder, VocoderConfig
from sampleforge.strict import ConfigError
from sampleforge.text.keywords import Vocabulary
from sampleforge.timbre import table_problem


def weights_dirs() -> list[Path]:
    """Where named models are looked up: $SAMPLEFORGE_WEIGHTS (os.pathsep-separated), the installed package's
    weights/, the source checkout's weights/."""
    dirs = [Path(p) for p in os.environ.get("SAMPLEFORGE_WEIGHTS", "").split(os.pathsep) if p]
    return [*dirs, PACKAGE_DIR / "weights", REPO_ROOT / "weights"]


COMPONENTS = ("vae", "unet", "text", "vocoder")
MODEL_ONLY_SECTIONS = ("vae", "unet", "text", "griffin_lim", "diffusion")  # what a vocoder folder does not use


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
    timbre: dict[str, Any] = field(default_factory=dict)  # timbre.json: what the knobs and knob words mean
    # what makes the waveform when it is not the folder's own: another folder's or file's vocoder (its id), or
    # "griffin-lim" in place of the folder's vocoder; None: the folder's own (its id says it)
    vocoder_id: str | None = None
    # the vocoder asked for in place of the folder's own, by name: its folder's (component_name) or "griffin-lim"
    # (also on a model whose own is Griffin-Lim); None: none asked for
    vocoder_name: str | None = None

    @property
    def class_words(self) -> dict[str, dict[str, dict[str, float]]]:
        """class -> word -> {knob: quantile}: what each word means for each class, measured on the training clips."""
        return dict(self.timbre.get("words", {}))

    @property
    def knob_limits(self) -> dict[str, dict[str, list[float]]]:
        """class -> knob -> [low, high]: how far a prompt word may move the knob before the clips stop being the
        class (measured by ``sampleforge eval knob-limits``; absent: no limit)."""
        return dict(self.timbre.get("knob_limits", {}))

    @property
    def word_reach(self) -> dict[str, dict[str, float | None]]:
        """class -> word -> how far (of their distance from the middle) the word may move its knobs together
        before the clips stop being the class (measured by ``sampleforge eval word-reach``; absent: all the way;
        None: the word leaves the class whatever its knobs, and generation warns of it)."""
        return dict(self.timbre.get("word_reach", {}))

    @property
    def pair_reach(self) -> dict[str, dict[str, float | None]]:
        """class -> corner of two knobs ("decay:low+weight:low") -> how far two words that set them that way may move
        them together (measured by ``sampleforge eval pair-reach``; absent: as far as each word goes; None: such two
        words leave the class even at the middle, and generation warns of them)."""
        return dict(self.timbre.get("pair_reach", {}))

    @property
    def keyword_reach(self) -> dict[str, dict[str, float | None]]:
        """class -> keyword -> how much of the keyword's conditioning the class keeps (measured by ``sampleforge eval
        keyword-reach``; absent: all of it; ``timbre.keyword_weight``): "808" at full strength makes a snare a kick."""
        return dict(self.timbre.get("keyword_reach", {}))

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


def read_state(file: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors ``file``; CheckpointError naming the file if it is missing or unreadable."""
    if not file.is_file():
        raise CheckpointError(f"{file}: missing")
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{file.name}: not a readable safetensors file ({exc})") from None


def load_state(module: nn.Module, file: Path) -> None:
    """Load ``file`` (safetensors) into ``module`` strictly; errors name the file and the key."""
    load_checked(module, read_state(file), file.name)


def load_checked(module: nn.Module, state: dict[str, torch.Tensor], name: str) -> None:
    """Load ``state`` into ``module`` strictly; errors name ``name`` (the file) and the key."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    if missing:
        raise CheckpointError(f"{name}: missing key {missing[0]!r}; was it trained with another config?")
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        raise CheckpointError(f"{name}: unexpected key {unexpected[0]!r}; was it trained with another config?")
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"{name}: key {k!r} has shape {tuple(state[k].shape)}, the config expects {tuple(v.shape)}"
            )
    module.load_state_dict(state, strict=True)


def resolve_model(name_or_path: str | os.PathLike[str]) -> Path:
    """A model folder path, or a shipped model's name ("drums-v1") → its folder. A bare name that is also a
    folder in the working directory means that folder only if it is a model folder (has config.json): a run
    folder or a download that happens to carry a shipped model's name does not hide the shipped model."""
    check_named(name_or_path)
    p = Path(name_or_path).expanduser()
    if p.name in ("", ".", ".."):  # "." or "..": a folder (named, as every model, by its own name), never a shipped name
        p = p.resolve()
        name_or_path = str(p)
    bare = not (p.suffix or os.sep in str(name_or_path))
    shipped = [d / str(name_or_path) for d in weights_dirs() if bare and (d / str(name_or_path)).is_dir()]
    if p.is_dir() and not (shipped and not (p / "config.json").is_file()):
        return p
    if not bare:
        if p.is_file() and p.name == "config.json":
            return p.parent
        raise CheckpointError(f"{p}: no such model folder")
    if shipped:
        return shipped[0]
    raise CheckpointError(f"unknown model {str(name_or_path)!r} ({_known_models()})")


def check_named(name_or_path: str | os.PathLike[str]) -> None:
    """Refuse an empty model name ('' would be the working directory, or the weights folder itself)."""
    if not str(name_or_path).strip():
        raise CheckpointError(f"no model named: give a model folder or a shipped model's name ({_known_models()})")


def _known_models() -> str:
    """The shipped models by name, and the vocoders that go after a model's '+'."""
    folders = {q.name: q for d in weights_dirs() if d.is_dir() for q in d.iterdir() if (q / "config.json").is_file()}
    known = sorted(n for n, q in folders.items() if not_a_model(q) is None)
    vocoders = sorted(n for n, q in folders.items() if is_vocoder_folder(q))
    also = f"; vocoders, after a model's '+': {', '.join(vocoders)}" if vocoders else ""
    return f"known: {', '.join(known) or 'none'}{also}"


def not_a_model(path: Path) -> str | None:
    """What a shipped folder that is not a generation model is, as the error that says so, or None: a vocoder
    alone, or a drum classifier."""
    if is_vocoder_folder(path):
        return (f"{path}: a vocoder alone, not a model; give it as the vocoder of one (--vocoder-ckpt, "
                "vocoder_checkpoint=, or MODEL+VOCODER)")
    if (path / "model.safetensors").is_file() and not any((path / f"{c}.safetensors").is_file() for c in COMPONENTS):
        return f"{path}: a drum classifier (the judge of `sampleforge eval --classifier`), not a generation model"
    return None


def load_bundle(name_or_path: str | os.PathLike[str] = DEFAULT_MODEL, device: str | torch.device = "cpu",
                components: dict[str, Path | None] | None = None) -> Bundle:
    """Load a model folder. ``components`` overrides single weight files (e.g. ``{"vocoder": None}`` drops it)."""
    path = resolve_model(name_or_path)
    if (other := not_a_model(path)) is not None:
        raise CheckpointError(other)
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
    vocoder_id = vocoder_name = None
    if "vocoder" in overrides:
        voc_file = overrides["vocoder"]
        if voc_file is None:
            vocoder_id = "griffin-lim" if cfg.vocoder is not None else None
            vocoder_name = "griffin-lim"
        elif Path(voc_file).parent.resolve() != path.resolve():
            vocoder_id, vocoder_name = component_id(Path(voc_file)), component_name(Path(voc_file))
        cfg.vocoder = None if voc_file is None else vocoder_config(cfg, path, Path(voc_file))
    mods = build_modules(cfg)
    for name, module in mods.items():
        file = overrides.get(name) or path / f"{name}.safetensors"
        load_state(module, Path(file))
        module.eval().requires_grad_(False)
    card = (path / "README.md").read_text() if (path / "README.md").is_file() else ""
    bundle = Bundle(config=cfg, vocab=vocab, card=card, path=path, vae=mods["vae"], unet=mods["unet"],  # type: ignore[arg-type]
                    text=mods["text"], vocoder=mods.get("vocoder"), timbre=read_timbre(path),  # type: ignore[arg-type]
                    vocoder_id=vocoder_id, vocoder_name=vocoder_name)
    return bundle.to(device)


def is_vocoder_folder(path: Path) -> bool:
    """A vocoder shipped alone (weights/drums-vocoder-v1): vocoder weights and no other component's."""
    return (path / "vocoder.safetensors").is_file() and not any(
        (path / f"{name}.safetensors").is_file() for name in COMPONENTS if name != "vocoder")


def vocoder_weights(source: str | os.PathLike[str]) -> Path:
    """Where a vocoder given as a model folder (a vocoder training run's ``model/``) or as a weight file lives:
    the folder's ``vocoder.safetensors``, or the file."""
    p = Path(source)
    return p / "vocoder.safetensors" if p.is_dir() else p


def vocoder_config(cfg: ModelConfig, path: Path, file: Path) -> VocoderConfig:
    """The architecture of the vocoder weights ``file`` put on the model at ``path``: the ``vocoder`` section of
    the config.json beside the file when there is one (a vocoder training run's model folder, another model),
    else the model's own. A vocoder runs on the mel front end it was trained on: a different one is refused."""
    if file.parent.resolve() != path.resolve() and (file.parent / "config.json").is_file():
        other = read_config(file.parent)
        if other.vocoder is not None:
            if other.mel != cfg.mel:
                diff = ", ".join(f"{k} {getattr(other.mel, k)} vs {getattr(cfg.mel, k)}"
                                 for k in vars(cfg.mel) if getattr(other.mel, k) != getattr(cfg.mel, k))
                raise CheckpointError(f"{file}: this vocoder's mel front end differs from {path.name}'s ({diff})")
            return other.vocoder
    if cfg.vocoder is None:
        raise CheckpointError(f"{file}: {path.name} has no vocoder section, and there is no config.json beside the "
                              "file that names one (give the vocoder's model folder, e.g. a training run's model/)")
    return cfg.vocoder


def read_timbre(path: Path) -> dict[str, Any]:
    """A model folder's timbre.json ({} when absent: a model without timbre knobs)."""
    file = path / "timbre.json"
    if not file.is_file():
        return {}
    try:
        table = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{file}: invalid JSON ({exc})") from None
    if not isinstance(table, dict) or not isinstance(table.get("words", {}), dict):
        raise CheckpointError(f"{file}: expected an object with a 'words' object")
    problem = table_problem(table)
    if problem:
        raise CheckpointError(f"{file}: {problem}")
    return table


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
        if bundle.timbre:
            (tmp / "timbre.json").write_text(json.dumps(bundle.timbre, indent=1) + "\n")
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
    """A short content id for a model folder: a hash of its weights, its config and the tables that decide what a
    prompt asks of it (vocab.json, timbre.json), so that it changes when the same prompt and seed would not give
    the same sound."""
    h = hashlib.sha256()
    for f in sorted(path.glob("*.safetensors")) + [path / "config.json", path / "vocab.json", path / "timbre.json"]:
        if f.is_file():
            h.update(f.name.encode())
            h.update(sha256(f).encode())
    return f"{path.name}@{h.hexdigest()[:12]}"


def component_id(file: Path) -> str:
    """The id of one weight file put on a model: its folder's ``model_id`` when that folder has a config.json (a
    vocoder folder, a training run's model/), else the file's own name and hash."""
    folder = _component_folder(file)
    return model_id(folder) if folder is not None else f"{file.stem}@{sha256(file)[:12]}"


def component_name(file: Path) -> str:
    """The name of one weight file put on a model, as ``component_id`` names it without the hash: its folder's
    name when that folder has a config.json (drums-vocoder-v1), else the file's."""
    folder = _component_folder(file)
    return folder.name if folder is not None else file.stem


def _component_folder(file: Path) -> Path | None:
    """The folder that a weight file stands for (one with a config.json: a vocoder folder, a run's model/)."""
    return file.parent if (file.parent / "config.json").is_file() else None


def inspect_bundle(name_or_path: str | os.PathLike[str]) -> dict[str, Any]:
    """Everything about a model folder without building it: config, tensors per component, vocab, hashes.
    ``MODEL+VOCODER`` is a CheckpointError saying what it is made of (each part is inspected alone)."""
    try:
        path = resolve_model(name_or_path)
    except CheckpointError as exc:
        from sampleforge.backends.resolve import resolve

        ref = resolve(name_or_path)  # the error of a string that is no model at all, or a model with a vocoder
        if not ref.names_vocoder:
            raise exc
        alone = "the model and the vocoder one at a time" if ref.vocoder is not None else "the model alone"
        raise CheckpointError(f"{ref.spec}: {ref.parts()}; inspect {alone}") from None
    if (other := not_a_model(path)) is not None and not is_vocoder_folder(path):
        raise CheckpointError(other)
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
    if is_vocoder_folder(path):  # the other sections of its config are only defaults
        info["vocoder_only"] = True
        info["config"] = {k: v for k, v in info["config"].items() if k not in MODEL_ONLY_SECTIONS}
    else:  # what loading needs and the folder lacks: the model cannot load
        needed = ["vae", "unet", "text", *(["vocoder"] if cfg.vocoder is not None else [])]
        missing = [f"{n}.safetensors" for n in needed if n not in info["components"]]
        info["missing"] = missing + ([] if vocab_file.is_file() else ["vocab.json"])
        info["problems"] = load_problems(path, cfg, Vocabulary.load(vocab_file) if vocab_file.is_file() else None)
    return info


def load_problems(path: Path, cfg: ModelConfig, vocab: Vocabulary | None) -> list[str]:
    """What loading the model folder ``path`` refuses besides missing files: sections of its config that disagree,
    a timbre.json that cannot be read."""
    problems = []
    try:
        check_config(cfg, vocab)
    except ConfigError as exc:
        problems.append(str(exc))
    try:
        read_timbre(path)
    except CheckpointError as exc:
        problems.append(str(exc))
    return problems
