"""Where a ``--model`` value points and which format it is, checked before anything heavy is imported.

- ``hf:OWNER/NAME`` -> the snapshot in the local Hugging Face cache (never downloaded at run time: a missing
  one is a one-line error with the command that downloads it);
- a folder with ``model_index.json`` -> a diffusers pipeline;
- a folder with ``model_config.json`` -> a stable-audio-tools model;
- a ``.ckpt`` file (or a folder holding one) -> an audio-diffusion-pytorch Lightning checkpoint;
- anything else -> a sampleforge model folder or shipped name (``bundle.resolve_model``);
- ``MODEL+VOCODER`` -> the sampleforge model MODEL with another vocoder in place of its own: VOCODER is a
  vocoder folder (``bundle.is_vocoder_folder``) or a shipped vocoder's name (``drums-vocoder-v1``), or
  ``griffin-lim`` for the model's Griffin-Lim. A string that resolves as it is stays whole (a folder's name may
  hold '+'); otherwise it is split at its last '+'.

A folder that is missing a file its format needs is a ``CheckpointError`` naming that file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from sampleforge.errors import CheckpointError, UserInputError

HF_PREFIX = "hf:"
FORMATS = ("sampleforge", "diffusers", "stable-audio-tools", "audio-diffusion-pytorch")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
# component folders of a diffusers pipeline that hold no weights
NO_WEIGHTS = ("scheduler", "tokenizer", "feature_extractor", "processor")
CONFIG_NAMES = ("config.json", "scheduler_config.json", "tokenizer_config.json", "preprocessor_config.json")
GRIFFIN_LIM = "griffin-lim"  # MODEL+griffin-lim: the model's Griffin-Lim in place of its vocoder


@dataclass(frozen=True)
class ModelRef:
    """A resolved ``--model``: the local path, its format, what the user wrote and, for ``MODEL+VOCODER``, the
    vocoder it names in place of the model's own."""

    path: Path
    format: str
    spec: str
    vocoder: Path | None = None  # MODEL+VOCODER: the vocoder folder
    griffin_lim: bool = False  # MODEL+griffin-lim

    @property
    def names_vocoder(self) -> bool:
        """Whether the spec chooses the vocoder (MODEL+VOCODER)."""
        return self.griffin_lim or self.vocoder is not None

    @property
    def components(self) -> dict[str, Path | None] | None:
        """``bundle.load_bundle``'s ``components`` for the vocoder the spec names (None: the model's own)."""
        if self.griffin_lim:
            return {"vocoder": None}
        return None if self.vocoder is None else {"vocoder": self.vocoder / "vocoder.safetensors"}

    def parts(self) -> str:
        """What the spec is made of: "the model PATH with the vocoder PATH" (or "with Griffin-Lim")."""
        vocoder = "Griffin-Lim" if self.griffin_lim else f"the vocoder {self.vocoder}"
        return f"the {self.format} model {self.path}" + (f" with {vocoder}" if self.names_vocoder else "")

    def with_components(self, components: dict[str, Path | None] | None) -> dict[str, Path | None] | None:
        """``components`` (``load_bundle``'s) plus the vocoder the spec names; a vocoder in both is a
        UserInputError naming both."""
        if not self.names_vocoder:
            return components
        if components is not None and "vocoder" in components:
            raise self.conflict("components={'vocoder': ...}")
        return {**(components or {}), **(self.components or {})}

    def conflict(self, given_as: str, model_as: str = "model") -> UserInputError:
        """The error for a vocoder chosen by the spec and by ``given_as`` (a flag or an argument) at once."""
        return UserInputError(f"{model_as} {self.spec} and {given_as} contradict each other: the spec names the "
                              f"vocoder (MODEL+VOCODER); choose it one way")


def hf_snapshot(repo_id: str) -> Path:
    """The cached snapshot folder of Hugging Face repo ``repo_id``; CheckpointError saying how to get it."""
    if not repo_id or repo_id.count("/") != 1 or any(not part for part in repo_id.split("/")):
        raise CheckpointError(f"hf:{repo_id}: expected hf:OWNER/NAME, e.g. hf:stabilityai/stable-audio-open-1.0")
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:
        raise CheckpointError("hf: models need huggingface_hub: pip install 'sampleforge[backends]'") from None
    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:  # LocalEntryNotFoundError, or a cache entry without a snapshot
        raise CheckpointError(
            f"hf:{repo_id} is not in the Hugging Face cache ({HF_HUB_CACHE}); download it once with "
            f"`hf download {repo_id}` (gated models: `hf auth login` first), then run again"
        ) from None


def resolve(spec: str | os.PathLike[str]) -> ModelRef:
    """``--model`` value -> ModelRef (path, format and, for ``MODEL+VOCODER``, the vocoder). Raises
    CheckpointError naming what is missing. A string that does not resolve as it is and holds a '+' is
    ``MODEL+VOCODER`` split at its last '+'; when that fails too, an existing path's own error wins."""
    from sampleforge.bundle import check_named

    check_named(spec)
    text = str(spec)
    try:
        return _resolve_whole(text)
    except CheckpointError as whole:
        if "+" not in text:
            raise
        try:
            return _with_vocoder(text)
        except CheckpointError:
            if Path(text).expanduser().exists():
                raise whole from None
            raise


def refuse_second_vocoder(model: str | os.PathLike[str] | None, given_as: str, model_as: str = "model") -> None:
    """A vocoder chosen by ``given_as`` (a flag or an argument) as well: UserInputError when ``model`` is
    ``MODEL+VOCODER``, which names one already."""
    if model is not None and "+" in str(model):
        ref = resolve(model)
        if ref.names_vocoder:
            raise ref.conflict(given_as, model_as)


def _with_vocoder(text: str) -> ModelRef:
    """``MODEL+VOCODER`` (split at the last '+') -> the sampleforge model MODEL's ModelRef with the vocoder."""
    model, _, vocoder = text.rpartition("+")
    if not model or not vocoder:
        raise CheckpointError(f"{text}: expected MODEL+VOCODER, VOCODER being {_accepted()}")
    if model.startswith(HF_PREFIX):
        raise CheckpointError(f"{text}: only sampleforge models take a vocoder (MODEL+VOCODER); {model} is a "
                              "Hugging Face model")
    try:
        ref = _resolve_whole(model)
    except CheckpointError as exc:
        raise CheckpointError(f"{text}: {exc}") from None
    if ref.format != "sampleforge":
        raise CheckpointError(f"{text}: only sampleforge models take a vocoder (MODEL+VOCODER); {model} is a "
                              f"{ref.format} model")
    from sampleforge.bundle import is_vocoder_folder, resolve_model

    if is_vocoder_folder(ref.path):
        raise CheckpointError(f"{text}: {model} is a vocoder folder, not a model; a vocoder goes after the '+'")
    if vocoder == GRIFFIN_LIM:
        return ModelRef(ref.path, ref.format, text, griffin_lim=True)
    try:
        folder = resolve_model(vocoder)
    except CheckpointError:
        raise CheckpointError(f"{text}: no vocoder {vocoder!r}; after the '+' give {_accepted()}") from None
    if not is_vocoder_folder(folder):
        what = "a model folder" if (folder / "config.json").is_file() else "a folder without vocoder.safetensors"
        raise CheckpointError(f"{text}: {folder} is {what}, not a vocoder folder (config.json and "
                              f"vocoder.safetensors alone); after the '+' give {_accepted()}")
    return ModelRef(ref.path, ref.format, text, vocoder=folder)


def _accepted() -> str:
    return f"a vocoder folder or name ({', '.join(shipped_vocoders()) or 'none shipped'}) or {GRIFFIN_LIM}"


def shipped_vocoders() -> list[str]:
    """The names of the vocoder folders in ``bundle.weights_dirs()`` (drums-vocoder-v1)."""
    from sampleforge.bundle import is_vocoder_folder, weights_dirs

    return sorted({q.name for d in weights_dirs() if d.is_dir() for q in d.iterdir() if is_vocoder_folder(q)})


def _resolve_whole(text: str) -> ModelRef:
    """One model string as it is (no '+' split)."""
    path = hf_snapshot(text[len(HF_PREFIX):]) if text.startswith(HF_PREFIX) else Path(text).expanduser()
    if path.is_file() and path.suffix == ".ckpt":
        return ModelRef(path, "audio-diffusion-pytorch", text)
    if path.is_dir():
        if (path / "model_index.json").is_file():
            check_diffusers_folder(path)
            return ModelRef(path, "diffusers", text)
        if (path / "model_config.json").is_file():
            check_stable_audio_tools_folder(path)
            return ModelRef(path, "stable-audio-tools", text)
        ckpts = sorted(path.glob("*.ckpt"))
        if ckpts and not (path / "config.json").is_file():
            return ModelRef(ckpts[0], "audio-diffusion-pytorch", text)
        if not (path / "config.json").is_file():
            raise CheckpointError(
                f"{path}: not a model folder: missing model_index.json (diffusers), model_config.json "
                "(stable-audio-tools), config.json (sampleforge) or a .ckpt file (audio-diffusion-pytorch)")
    from sampleforge.bundle import resolve_model

    return ModelRef(resolve_model(text), "sampleforge", text)


def _weights(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES] if folder.is_dir() else []


def check_diffusers_folder(path: Path) -> dict[str, list[str | None]]:
    """Check every component that ``model_index.json`` lists; returns the index. One missing file -> error."""
    index_file = path / "model_index.json"
    try:
        index = json.loads(index_file.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{index_file}: unreadable ({exc})") from None
    if not isinstance(index, dict) or "_class_name" not in index:
        raise CheckpointError(f"{index_file}: not a diffusers pipeline index (no _class_name)")
    components = {k: v for k, v in index.items() if not k.startswith("_") and isinstance(v, list)}
    for name, (library, cls) in ((k, v[:2]) for k, v in components.items()):
        if library is None or cls is None:
            continue  # an optional component left out
        folder = path / name
        if not folder.is_dir():
            raise CheckpointError(f"{path}: missing {name}/ (the {cls} that model_index.json lists)")
        configs = [c for c in CONFIG_NAMES if (folder / c).is_file()]
        if not configs and not any(folder.iterdir()):
            raise CheckpointError(f"{path}: {name}/ is empty (the {cls} that model_index.json lists)")
        if any(name.startswith(n) for n in NO_WEIGHTS):
            continue
        if not (folder / "config.json").is_file():
            raise CheckpointError(f"{path}: missing {name}/config.json ({cls})")
        if not _weights(folder):
            raise CheckpointError(f"{path}: missing {name}/diffusion_pytorch_model.safetensors or "
                                  f"{name}/model.safetensors (the weights of {cls})")
    return components


def check_stable_audio_tools_folder(path: Path) -> None:
    """model_config.json + a weight file (model.safetensors or model.ckpt)."""
    if not any(p.suffix in (".safetensors", ".ckpt") for p in path.iterdir()):
        raise CheckpointError(f"{path}: missing model.safetensors (the weights that model_config.json describes)")
