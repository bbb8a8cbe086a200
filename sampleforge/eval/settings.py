"""What an evaluation runs with unless told otherwise; light to import (no torch), so ``sampleforge eval``'s
parser can state its defaults without loading the evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sampleforge.params import GenerationParams
from sampleforge.taxonomy import MAIN_CLASSES

CLASSIFIER_NAME = "classifier-v2"  # the drum judge: a shipped classifier folder under weights/
# a bare run never overwrites the shipped judge: `make train-classifier` writes weights/classifier-v2 explicitly
CLASSIFIER_OUT = Path("runs") / "classifier"
LISTEN_VOCODER = 12  # clips of ``eval vocoder``'s listening test
EVAL_GENERATION = GenerationParams(seed=0)  # an evaluation is repeatable unless told otherwise


@dataclass
class EvalSettings:
    per_class: int = 16
    classes: Sequence[str] = MAIN_CLASSES
    vocoder_clips: int = 16
    held_out_kits: Sequence[str] | None = None  # None: the corpus default
    held_out_flag: str = "--held-out-kits"  # the flag that gave held_out_kits, for the error naming a kit not found
    generation: GenerationParams = EVAL_GENERATION  # class k's clips: seeds seed + 1000 k + i

    @property
    def seed(self) -> int:
        return self.generation.seed or 0


@dataclass
class ClassifierTraining:
    """``eval train-classifier``'s settings."""

    epochs: int = 30
    samples_per_epoch: int = 1024
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-2
    seed: int = 0
