"""A model's configuration (``config.json`` of a model folder): typed, flat per section, strict.

Unknown keys and wrong types are errors naming the key; ``check_config`` catches sections that disagree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sampleforge.audio.griffinlim import GriffinLimConfig
from sampleforge.audio.mel import MelConfig
from sampleforge.errors import CheckpointError
from sampleforge.models.text import TextConfig
from sampleforge.models.unet import UNetConfig
from sampleforge.models.vae import VAEConfig
from sampleforge.models.vocoder import VocoderConfig
from sampleforge.strict import ConfigError, from_dict, require_finite, to_dict
from sampleforge.text.keywords import Vocabulary

FORMAT_VERSION = 1


@dataclass
class DiffusionConfig:
    timesteps: int = 1000
    schedule: str = "scaled_linear"  # "linear" | "scaled_linear" | "cosine" (diffusion/schedules.py)
    beta_start: float = 0.00085
    beta_end: float = 0.012
    prediction: str = "v"  # what the U-Net predicts: "eps" | "v" | "x0" | "flow" (diffusion/prediction.py)
    sampling_schedule: str = "trailing"  # timestep spacing at inference: "uniform" (leading), "trailing", "karras"
    cfg_scale: float | None = None  # the guidance scale this model samples with unless asked (None: sampleforge's 3)
    cfg_scale_no_knobs: float | None = None  # the same for a prompt that sets no timbre knob, by value or by word
    # (a plain "kick"): a model with knobs may want a firmer class there than where knobs shape the sound (None:
    # cfg_scale)

    def __post_init__(self) -> None:
        from sampleforge.diffusion.prediction import PREDICTIONS

        require_finite("diffusion", self)
        if self.prediction not in PREDICTIONS:
            raise ConfigError(f"diffusion.prediction: {self.prediction!r} is not one of {', '.join(PREDICTIONS)}")
        if self.prediction == "flow" and self.sampling_schedule != "uniform":
            raise ConfigError("diffusion.sampling_schedule: a flow model samples on uniform times; set \"uniform\"")
        for name in ("cfg_scale", "cfg_scale_no_knobs"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 30:
                raise ConfigError(f"diffusion.{name} must be in [0, 30], got {value}")

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

    def __post_init__(self) -> None:
        if not 0.1 <= self.duration <= 600:  # NaN too
            raise ConfigError(f"model.duration must be between 0.1 and 600 seconds, got {self.duration}")

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config.json") -> ModelConfig:
        return from_dict(cls, data, where)

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def check_config(cfg: ModelConfig, vocab: Vocabulary | None = None, where: str = "config.json") -> None:
    """Cross-section consistency: one error naming the two keys that disagree (``where``: the file, or the file
    and its section, the keys are read from)."""
    if cfg.sample_rate != cfg.mel.sample_rate:
        raise ConfigError(f"{where}: sample_rate ({cfg.sample_rate}) != mel.sample_rate ({cfg.mel.sample_rate})")
    if cfg.unet.in_channels != cfg.vae.latent_channels:
        raise ConfigError(
            f"{where}: unet.in_channels ({cfg.unet.in_channels}) != vae.latent_channels ({cfg.vae.latent_channels})"
        )
    if cfg.unet.cond_dim != cfg.text.cond_dim:
        raise ConfigError(f"{where}: unet.cond_dim ({cfg.unet.cond_dim}) != text.cond_dim ({cfg.text.cond_dim})")
    if cfg.vae.n_mels != cfg.mel.n_mels:
        raise ConfigError(f"{where}: vae.n_mels ({cfg.vae.n_mels}) != mel.n_mels ({cfg.mel.n_mels})")
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
