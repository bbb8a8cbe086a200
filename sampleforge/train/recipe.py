"""A training recipe file (configs/*.json): the model config, one TrainConfig per stage, data and loss settings.

    {"model": {...ModelConfig...},
     "train": {"vae": {...TrainConfig...}, "diffusion": {...}, "vocoder": {...}},
     "data": {...DataConfig...},
     "recipe": {...RecipeConfig...}}

A recipe may start from another one: ``"extends": "drums-v2.json"`` (a path relative to the file) takes that
recipe and lays this file's keys over it, section by section and key by key (a list or a value replaces the
parent's), so that a second run of a model (a fine-tune) names only what it changes.

Also turns ``--data DIR...`` into training clips: scan (Hydrogen kits and plain folders), hold out whole kits,
widen with the procedural synthesizer.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sampleforge.data.corpus import Clip, scan, split_by_kit
from sampleforge.errors import UserInputError
from sampleforge.model_config import ModelConfig, check_config
from sampleforge.strict import ConfigError, from_dict, require_at_least, require_finite
from sampleforge.train.adversarial import DISCRIMINATOR_FFTS
from sampleforge.train.loop import TrainConfig

log = logging.getLogger(__name__)
STAGES = ("vae", "diffusion", "vae-decoder", "vocoder")
EXPORT_DTYPES = ("float32", "float16")
COMPONENTS = ("vae", "unet", "text", "vocoder")
INIT_STAGES = ("diffusion", "vocoder")  # the stages recipe.init can start from existing weights
SYNTH_MAX_PER_CLASS = 9999  # the synthesizer numbers a class's clips with four digits


@dataclass
class DataConfig:
    duration: float = 2.0  # seconds per training clip (onset-aligned, padded)
    held_out_kits: list[str] = field(default_factory=list)  # whole kits kept out of training (evaluation)
    synth_per_class: int = 0  # procedural synth clips added per class (0 = none)
    synth_seed: int = 1234
    synth_stages: list[str] = field(default_factory=lambda: ["diffusion"])  # the stages that see synth clips
    augment: bool = True  # gain / pitch / EQ-tilt augmentation (deterministic per epoch and clip)
    min_count: int = 1  # keywords seen fewer times are left out of the vocabulary

    def __post_init__(self) -> None:
        if not 0.1 <= self.duration <= 600:
            raise ConfigError(f"data.duration must be between 0.1 and 600 seconds, got {self.duration}")
        require_at_least("data", self, ("synth_per_class", "min_count"), minimum=0)
        if self.synth_per_class > SYNTH_MAX_PER_CLASS:
            raise ConfigError(f"data.synth_per_class must be between 0 and {SYNTH_MAX_PER_CLASS}, "
                              f"got {self.synth_per_class}")
        bad = [s for s in self.synth_stages if s not in STAGES]
        if bad:
            raise ConfigError(f"data.synth_stages: unknown stage {bad[0]!r} (valid: {', '.join(STAGES)})")


@dataclass
class RecipeConfig:
    kl_weight: float = 1e-4  # VAE: KL term weight (per element)
    delta_weight: float = 0.0  # VAE: weight of the L1 of frame-to-frame differences (sharp onsets, bursts)
    low_band_weight: float = 0.0  # VAE: extra L1 weight on the mel bands below LOW_BAND_HZ (kick and tom bodies)
    latent_variants: int = 8  # diffusion: augmented versions of each clip encoded to cached latents
    class_balance: float = 0.0  # diffusion: repeat clips of rare classes (median count / class count) ** this, ≤ 4x
    keyword_dropout: float = 0.1  # diffusion: drop each keyword / the whole prompt (for CFG)
    knob_dropout: float = 0.5  # diffusion: leave each timbre knob unset (so an unset knob is sampled freely)
    knob_jitter: float = 0.0  # diffusion: std of the Gaussian noise added to each set knob (quantiles, clamped
    # to 0-1), so that nearby knob values are trained to give nearby sounds
    class_prompt_dropout: float = 0.0  # diffusion: replace a clip's prompt by its class's words alone, every knob
    # unset, with this probability: a plain prompt ("crash") is then trained as the class's whole range, not only
    # as the rare clip whose other keywords and all four knobs happened to be dropped (recordings only: a
    # synthesised clip keeps its own words)
    timbre_features: int = 1  # diffusion: the version of the brightness and weight knobs' features
    # (sampleforge.timbre.FEATURE_VERSIONS; recorded in the model's timbre.json)
    vocoder_segment_frames: int = 64  # vocoder: train on random crops of this many frames (0 = whole clip)
    vocoder_variants: int = 0  # vocoder: augmented copies of each clip (pitch, EQ tilt, gain) besides the clip itself
    vocoder_mr_mel_weight: float = 0.0  # vocoder ("istft" head): weight of the multi-resolution log-mel L1 of the
    # waveform against the clip (the measure `eval vocoder` reports as mr_logmel_l1; windows 256-2048, so it sees
    # the band envelopes within a hop: attacks and hop-rate flutter) added to the multi-resolution STFT loss
    vocoder_adversarial_weight: float = 0.0  # vocoder ("istft" head): weight of a multi-resolution spectrogram
    # discriminator's hinge term in the loss (0 = no discriminator; see train.adversarial)
    vocoder_feature_matching_weight: float = 0.0  # vocoder: weight of the discriminator feature-matching L1
    vocoder_discriminator_lr: float = 2e-4  # vocoder: the discriminator's AdamW learning rate (constant)
    vocoder_discriminator_ffts: list[int] = field(default_factory=lambda: list(DISCRIMINATOR_FFTS))  # vocoder: the
    # discriminator's STFT sizes (one sub-discriminator each, hop a quarter of the size)
    init: dict[str, str] = field(default_factory=dict)  # stage -> weights a fresh run of it starts from:
    # "diffusion": a model folder (its unet, text and vocab.json; fine-tune a finished model, e.g. with a
    # decaying lr), "vocoder": a model folder or vocoder.safetensors (see train.vocoder.warm_start)
    export_dtypes: dict[str, str] = field(default_factory=dict)  # component (vae, unet, text, vocoder) -> "float16"
    # halves its exported file (loaded back as float32); unnamed components are exported in float32
    stages: list[str] = field(default_factory=lambda: ["vae", "diffusion", "vae-decoder"])  # `train all`, in order
    # (+ "vocoder" when the model config has one)

    def __post_init__(self) -> None:
        require_finite("recipe", self)
        for name, dtype in self.export_dtypes.items():
            if name not in COMPONENTS:
                raise ConfigError(f"recipe.export_dtypes: unknown component {name!r} (valid: {', '.join(COMPONENTS)})")
            if dtype not in EXPORT_DTYPES:
                raise ConfigError(f"recipe.export_dtypes.{name} must be one of {', '.join(EXPORT_DTYPES)}, got {dtype!r}")
        bad_init = sorted(set(self.init) - set(INIT_STAGES))
        if bad_init:
            raise ConfigError(f"recipe.init: stage {bad_init[0]!r} cannot start from weights (valid: {', '.join(INIT_STAGES)})")
        from sampleforge.timbre import FEATURE_VERSIONS

        if self.timbre_features not in FEATURE_VERSIONS:
            raise ConfigError(f"recipe.timbre_features must be one of {', '.join(map(str, FEATURE_VERSIONS))}, "
                              f"got {self.timbre_features!r}")
        if not 0 <= self.class_prompt_dropout <= 1:
            raise ConfigError(f"recipe.class_prompt_dropout must be in [0, 1], got {self.class_prompt_dropout}")
        for key in ("vocoder_mr_mel_weight", "vocoder_adversarial_weight", "vocoder_feature_matching_weight"):
            if not getattr(self, key) >= 0:
                raise ConfigError(f"recipe.{key} must be >= 0, got {getattr(self, key)}")
        if not self.vocoder_discriminator_ffts or any(n < 16 or n & (n - 1) for n in self.vocoder_discriminator_ffts):
            raise ConfigError("recipe.vocoder_discriminator_ffts must be powers of two >= 16, got "
                              f"{self.vocoder_discriminator_ffts}")
        if not self.vocoder_discriminator_lr > 0:
            raise ConfigError(f"recipe.vocoder_discriminator_lr must be > 0, got {self.vocoder_discriminator_lr}")
        require_at_least("recipe", self, ("latent_variants",))
        require_at_least("recipe", self, ("vocoder_segment_frames", "vocoder_variants", "class_balance"), minimum=0)
        for key in ("kl_weight", "delta_weight", "low_band_weight"):
            if not getattr(self, key) >= 0:
                raise ConfigError(f"recipe.{key} must be >= 0, got {getattr(self, key)}")
        for key in ("keyword_dropout", "knob_dropout"):
            if not 0 <= getattr(self, key) <= 1:
                raise ConfigError(f"recipe.{key} must be in [0, 1], got {getattr(self, key)}")
        if not 0 <= self.knob_jitter <= 0.5:
            raise ConfigError(f"recipe.knob_jitter must be in [0, 0.5], got {self.knob_jitter}")
        bad = [s for s in self.stages if s not in ("vae", "diffusion", "vae-decoder", "vocoder")]
        if bad:
            raise ConfigError(f"recipe.stages: unknown stage {bad[0]!r} (valid: vae, diffusion, vae-decoder, vocoder)")


@dataclass
class Recipe:
    model: ModelConfig
    train: dict[str, TrainConfig]
    data: DataConfig
    recipe: RecipeConfig


def overlay(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` laid over ``base``: dicts merge key by key (recursively); any other value replaces."""
    out = dict(base)
    for key, value in over.items():
        out[key] = overlay(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def read_recipe(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A recipe file as a dict, with its ``extends`` chain resolved. Raises ConfigError naming the file for
    invalid JSON, unknown sections, a missing parent or a cycle."""
    file = Path(path)
    if not file.is_file():
        what = "is a folder, not a recipe file" if file.is_dir() else "does not exist"
        if _seen:
            raise ConfigError(f"{_seen[-1]}: extends {file}, which {what}")
        raise UserInputError(f"--config: {file} {what}")
    if file.resolve() in _seen:
        raise ConfigError(f"{file}: extends itself (through {', '.join(str(f) for f in _seen)})")
    try:
        raw: dict[str, Any] = json.loads(file.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{file}: invalid JSON ({exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: not UTF-8 text (a recipe is a JSON file)") from None
    except OSError as exc:
        raise ConfigError(f"{file}: cannot be read ({exc.strerror or exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: a recipe is a JSON object")
    unknown = sorted(set(raw) - {"extends", "model", "train", "data", "recipe"})
    if unknown:
        raise ConfigError(f"{file}: unknown key {unknown[0]!r} (valid keys: data, extends, model, recipe, train)")
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    if not isinstance(parent, str) or not parent:
        raise ConfigError(f"{file}: extends must be a file name, got {parent!r}")
    return overlay(read_recipe(file.parent / parent, (*_seen, file.resolve())), raw)


def load_recipe(path: str | Path) -> Recipe:
    file = Path(path)
    raw = read_recipe(file)
    section = raw.get("train", {})
    if not isinstance(section, dict):
        raise ConfigError(f"{file}: train must be an object of stage sections ({', '.join(STAGES)}), "
                          f"got {json.dumps(section)}")
    train_raw: dict[str, Any] = section
    bad = sorted(set(train_raw) - set(STAGES))
    if bad:
        raise ConfigError(f"{file}: train: unknown stage {bad[0]!r} (valid: {', '.join(STAGES)})")
    model = ModelConfig.from_dict(raw.get("model", {}), f"{file}: model")
    check_config(model, where=f"{file}: model")
    return Recipe(
        model=model,
        # the decoder fine-tune takes the VAE's settings unless it has its own
        train={s: from_dict(TrainConfig, train_raw.get(s, train_raw.get("vae", {}) if s == "vae-decoder" else {}),
                            f"{file}: train.{s}") for s in STAGES},
        data=from_dict(DataConfig, raw.get("data", {}), f"{file}: data"),
        recipe=from_dict(RecipeConfig, raw.get("recipe", {}), f"{file}: recipe"),
    )


def training_clips(dirs: Sequence[str | Path], data: DataConfig, cache_dir: Path, stage: str = "diffusion",
                   exclude: Sequence[str | Path] = ()) -> tuple[list[Clip], list[Clip]]:
    """(train, held_out) clips from ``dirs`` (+ synthesized clips in ``cache_dir/synth`` when ``stage`` is one of
    ``data.synth_stages``). Nothing under ``cache_dir`` or the folders ``exclude`` (the run folder: its previews)
    is taken from ``dirs``, so that a run or cache kept inside a data folder never trains on its own output."""
    missing = [str(d) for d in dirs if not Path(d).is_dir()]
    if missing:
        raise UserInputError(f"--data: {missing[0]} is not a folder")
    result = scan(list(dirs))
    tops = [Path(d).expanduser().resolve() for d in dirs]
    skip = [p for p in (Path(d).expanduser().resolve() for d in (cache_dir, *exclude))
            if not any(top != p and top.is_relative_to(p) for top in tops)]  # a data folder inside them is data

    def kept(path: Path) -> bool:
        return not any(p.is_relative_to(d) for p in {Path(os.path.abspath(path)), path.resolve()} for d in skip)

    for path, why in result.errors:
        if kept(path):
            log.warning("skipping %s: %s", path, why)
    clips = [c for c in result.clips if kept(c.path)]
    if len(clips) < len(result.clips):
        log.info("left out %d clips of the run and cache folders (%s)", len(result.clips) - len(clips),
                 ", ".join(map(str, skip)))
    held_out = [k for k in data.held_out_kits if k in result.kits]
    train, held = split_by_kit(clips, held_out, strict=False)
    if data.synth_per_class > 0 and stage in data.synth_stages:
        from sampleforge.data.synth import render_kit

        train = train + list(render_kit(cache_dir / "synth", data.synth_per_class, data.synth_seed))
    if not train:
        where = ", ".join(map(str, dirs))
        if result.clips and not clips:
            raise UserInputError(f"--data: every clip found in {where} is inside the run or cache folder "
                                 f"({', '.join(map(str, skip))}), which are never trained on")
        if held:
            raise UserInputError(f"--data: all {len(held)} clips found in {where} belong to kits held out by "
                                 f"data.held_out_kits ({', '.join(held_out)}); none is left to train on")
        raise UserInputError(f"--data: no usable drum clips found in {where}")
    return train, held
