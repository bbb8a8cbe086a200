"""What the three training stages share: the run folder, the model folder being built, data, previews.

A run folder ``RUN`` holds one sub-folder per stage (``RUN/vae``, ``RUN/diffusion``, ``RUN/vocoder``: checkpoints,
loss.csv/png, previews, and ``export/``: the ``<component>.safetensors`` a task's ``export`` writes) and the model
folder they build together, ``RUN/model`` (config.json, vocab.json and each stage's exported components, installed
by ``install_export`` once the stage is done): ``sampleforge generate --model RUN/model``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from sampleforge.audio.io import write_wav
from sampleforge.data.corpus import Clip
from sampleforge.data.dataset import AugmentConfig, DrumDataset, collate
from sampleforge.errors import CheckpointError
from sampleforge.model_config import ModelConfig, read_config
from sampleforge.strict import to_dict
from sampleforge.train.recipe import DataConfig, RecipeConfig

N_PREVIEW = 4
# the config sections each exported component owns in RUN/model/config.json
COMPONENT_SECTIONS: dict[str, tuple[str, ...]] = {
    "vae": ("vae",), "unet": ("unet", "diffusion"), "text": ("text",), "vocoder": ("vocoder",),
}
# the recipe settings each stage trains by, besides the data section (a resume that changes them says so)
STAGE_RECIPE: dict[str, tuple[str, ...]] = {
    "vae": ("kl_weight", "delta_weight", "low_band_weight"),
    "vae-decoder": ("kl_weight", "delta_weight", "low_band_weight"),
    "diffusion": ("latent_variants", "class_balance", "keyword_dropout", "knob_dropout", "knob_jitter",
                  "class_prompt_dropout", "timbre_features"),
}
# the files that go with an exported component (the keyword encoder's rows are the vocabulary's words)
COMPONENT_FILES: dict[str, tuple[str, ...]] = {"text": ("vocab.json", "timbre.json")}


class TensorItems(torch.utils.data.Dataset):
    """Rows of one pre-computed tensor (N, ...) as dataset items (in-memory mels, waveforms)."""

    def __init__(self, data: Tensor) -> None:
        self.data = data

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, i: int) -> Tensor:
        return self.data[i]


@dataclass
class StageContext:
    run_dir: Path
    model_config: ModelConfig
    data: DataConfig
    recipe: RecipeConfig
    clips: list[Clip]
    held_out: list[Clip] = field(default_factory=list)
    cache_dir: Path | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        """A model folder whose config.json cannot be read is an error before training, not after it."""
        file = self.model_dir / "config.json"
        if file.is_file():
            try:
                json.loads(file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise CheckpointError(f"{file}: unreadable ({exc}); mend or remove it (the stages write it "
                                      "again as they finish)") from None

    @property
    def model_dir(self) -> Path:
        return self.run_dir / "model"

    def settings(self, stage: str) -> dict[str, dict[str, Any]]:
        """The data section and the recipe settings ``stage`` trains by (``STAGE_RECIPE``; the vocoder's are the
        ``vocoder_*`` ones), as a checkpoint records them."""
        recipe = to_dict(self.recipe)
        keys = STAGE_RECIPE.get(stage) or tuple(k for k in recipe if k.startswith(f"{stage}_"))
        return {"data": to_dict(self.data), "recipe": {k: recipe[k] for k in keys}}

    def dataset(self, augment: bool) -> DrumDataset:
        return DrumDataset(self.clips, duration=self.data.duration, sample_rate=self.model_config.sample_rate,
                           cache_dir=self.cache_dir, augment=AugmentConfig() if augment else None, seed=self.seed)

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return collate(items)

    def batches(self, dataset: DrumDataset, batch_size: int = 32, limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Unshuffled batches of ``dataset`` (at most ``limit`` items)."""
        n = len(dataset) if limit is None else min(limit, len(dataset))
        for i in range(0, n, batch_size):
            yield collate([dataset[j] for j in range(i, min(i + batch_size, n))])

    def preview_clips(self) -> list[Clip]:
        """Up to N_PREVIEW clips of distinct classes (held-out ones first), always the same."""
        chosen: list[Clip] = []
        seen: set[str] = set()
        for clip in list(self.held_out) + list(self.clips):
            if clip.category not in seen:
                chosen.append(clip)
                seen.add(clip.category)
            if len(chosen) == N_PREVIEW:
                break
        return chosen

    def preview_mels(self) -> Tensor:
        """(N, 128, F) log-mels of the preview clips, unaugmented."""
        ds = DrumDataset(self.preview_clips(), duration=self.data.duration, sample_rate=self.model_config.sample_rate,
                         cache_dir=self.cache_dir, augment=None)
        return torch.stack([ds[i]["mel"] for i in range(len(ds))])

    def write_preview(self, out_dir: Path, mels: dict[str, Tensor], audio: dict[str, Tensor] | None = None) -> None:
        """Render each mel set with Griffin-Lim (and any given audio) to WAVs, plus one PNG of all the mels."""
        from sampleforge.audio.griffinlim import GriffinLim

        out_dir.mkdir(parents=True, exist_ok=True)
        gl = GriffinLim(self.model_config.mel, n_iter=32)
        sr = self.model_config.sample_rate
        for name, mel in mels.items():
            for i, wav in enumerate(gl(mel)):
                write_wav(out_dir / f"{name}_{i}.wav", _peak(wav), sr)
        for name, wavs in (audio or {}).items():
            for i, wav in enumerate(wavs):
                write_wav(out_dir / f"{name}_{i}.wav", _peak(wav), sr)
        _plot_mels(out_dir / "mels.png", mels)

    def save_component(self, name: str, module: nn.Module, out_dir: Path) -> Path:
        """Write ``module``'s weights as ``out_dir/<name>.safetensors`` (a task's export); floating-point tensors
        in the recipe's ``export_dtypes[name]`` if set (loading casts them back to the module's own)."""
        out_dir.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
        dtype = self.recipe.export_dtypes.get(name)
        if dtype is not None:
            cast = getattr(torch, dtype)
            state = {k: v.to(cast) if v.is_floating_point() else v for k, v in state.items()}
        file = out_dir / f"{name}.safetensors"
        tmp = file.with_suffix(".tmp")
        save_file(state, str(tmp), metadata={"format": "pt", "component": name})
        os.replace(tmp, file)
        return file

    def install_export(self, export_dir: Path) -> list[Path]:
        """Copy a stage's exported components and the files that go with them (``COMPONENT_FILES``) into RUN/model
        (each file replaced atomically) and write the config sections they own; returns the installed files."""
        installed = []
        for file in sorted(export_dir.glob("*.safetensors")):
            if file.stem not in COMPONENT_SECTIONS:
                continue
            self.model_dir.mkdir(parents=True, exist_ok=True)
            for name in (file.name, *COMPONENT_FILES.get(file.stem, ())):
                if (export_dir / name).is_file():
                    target = self.model_dir / name
                    tmp = target.with_name(target.name + ".tmp")
                    shutil.copyfile(export_dir / name, tmp)
                    os.replace(tmp, target)
                    installed.append(target)
            self.write_config(COMPONENT_SECTIONS[file.stem])
        return installed

    def write_config(self, sections: Sequence[str] = ()) -> None:
        """Write RUN/model/config.json: this stage's ``sections`` (and the shared top-level keys) from its
        config, every other section as an earlier stage left it (stages may run in any order, or at once)."""
        self.model_dir.mkdir(parents=True, exist_ok=True)
        file = self.model_dir / "config.json"
        mine = self.model_config.to_dict()
        merged = json.loads(file.read_text()) if file.is_file() else dict(mine)
        for key, value in mine.items():
            if key in sections or not isinstance(value, dict) or key == "mel" or key not in merged:
                merged[key] = value
        tmp = self.model_dir / "config.json.tmp"
        tmp.write_text(json.dumps(merged, indent=2) + "\n")
        os.replace(tmp, file)

    def load_model_config(self) -> None:
        """Take over what earlier stages measured (e.g. the VAE's scale factor) from RUN/model/config.json."""
        if (self.model_dir / "config.json").is_file():
            done = read_config(self.model_dir)
            self.model_config.vae.scale_factor = done.vae.scale_factor
            self.model_config.text.vocab_size = done.text.vocab_size


def _peak(wav: Tensor, peak: float = 0.95) -> Tensor:
    wav = torch.nan_to_num(wav.float())
    return wav * (peak / wav.abs().max().clamp(min=1e-8))


def _plot_mels(file: Path, mels: dict[str, Tensor]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = len(mels)
    cols = max(m.shape[0] for m in mels.values())
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 1.8 * rows), squeeze=False)
    for r, (name, mel) in enumerate(mels.items()):
        for c in range(cols):
            ax = axes[r][c]
            ax.axis("off")
            if c < mel.shape[0]:
                ax.imshow(mel[c].numpy(), origin="lower", aspect="auto", vmin=-11.5, vmax=2.0, cmap="magma")
                ax.set_title(f"{name} {c}", fontsize=7)
    fig.tight_layout()
    fig.savefig(file, dpi=80)
    plt.close(fig)
