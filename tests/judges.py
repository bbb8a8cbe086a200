"""Small drum judges for tests of what the drum judges decide (``candidates``)."""

from __future__ import annotations

import torch

from sampleforge.eval.classifier import ClassifierConfig, DrumClassifier
from sampleforge.eval.classifier_train import eval_classes


def judge(hears: str | None = None, seed: int = 0) -> DrumClassifier:
    """A small drum judge: one that hears every clip as ``hears``, or random weights (``hears`` None)."""
    classes, class_map = eval_classes()
    torch.manual_seed(seed)
    clf = DrumClassifier(ClassifierConfig(classes=classes, class_map=class_map, channels=[4, 8, 8, 16, 16],
                                          embed_dim=16)).eval()
    if hears is not None:
        with torch.no_grad():
            clf.head.weight.zero_()
            clf.head.bias.copy_(torch.tensor([50.0 if c == hears else 0.0 for c in classes]))
    return clf
