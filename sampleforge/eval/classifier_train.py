"""Train the drum classifier on real recordings, with a kit-level split, and write ``weights/classifier-v1``.

    python -m sampleforge.eval.classifier_train [--data DIR ...] [--out weights/classifier-v1]
    sampleforge eval train-classifier ...                                  (the same)

Data: every clip ``data.corpus.scan`` finds (the Hydrogen kits by default), loaded onset-aligned at 2 s
(``data.dataset.load_fixed``). The kits in ``DEFAULT_HELD_OUT_KITS`` are never seen in training: the card
reports accuracy on them per class, and ``--cv-folds K`` adds a kit-grouped cross-validation estimate
(K extra trainings) because the held-out kits have only a few clips of some classes.

Classes: taxonomy categories, with crash + ride merged into "cymbal" (the kits record few rides apart
from crashes, and a generated "crash" judged as a ride is not a failure of the prompt).

Augmentation (each clip, each epoch): speed change 0.92-1.08 (pitch and length), onset delay 0-20 ms,
random exponential decay (p 0.3), white noise at -60..-30 dB of the peak (p 0.5), and on the log-mel a
spectral tilt of up to ±1.5 nats across the bands (p 0.5) and SpecAugment masks (p 0.5 each).
Classes are balanced by sampling with weights 1 / class count.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from sampleforge.audio.mel import MelConfig, MelSpectrogram
from sampleforge.eval.classifier import (
    DEFAULT_CLASSIFIER,
    ClassifierConfig,
    DrumClassifier,
    clip_logmels,
    save_classifier,
)
from sampleforge.taxonomy import CATEGORIES

MERGED = {"crash": "cymbal", "ride": "cymbal"}


def eval_classes() -> tuple[list[str], dict[str, str]]:
    """The classifier's classes (taxonomy order, merged ones in place of the first) and the category map."""
    classes: list[str] = []
    for c in CATEGORIES:
        name = MERGED.get(c, c)
        if name not in classes:
            classes.append(name)
    return classes, dict(MERGED)


@dataclass
class TrainSettings:
    epochs: int = 30
    samples_per_epoch: int = 1024
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-2
    seed: int = 0


# ------------------------------------------------------------------------------------------- augmentation


def augment_wav(x: Tensor, sr: int, g: torch.Generator) -> Tensor:
    """Waveforms (B, T) → augmented (B, T): speed, delay, decay, noise (see the module docstring)."""
    b, t = x.shape
    out = torch.zeros_like(x)
    for i in range(b):
        speed = 0.92 + 0.16 * float(torch.rand((), generator=g))
        n = max(16, int(t / speed))
        y = F.interpolate(x[i].view(1, 1, t), size=n, mode="linear", align_corners=False).view(-1)
        delay = int(float(torch.rand((), generator=g)) * 0.02 * sr)
        m = min(t - delay, n)
        out[i, delay : delay + m] = y[:m]
    time_s = torch.arange(t, dtype=x.dtype) / sr
    decay = torch.rand(b, generator=g) < 0.3
    tau = 0.05 + 0.75 * torch.rand(b, generator=g)
    env = torch.where(decay[:, None], torch.exp(-time_s[None, :] / tau[:, None]), torch.ones(1, t))
    out = out * env
    noisy = (torch.rand(b, generator=g) < 0.5).float()
    level = 10 ** ((-60 + 30 * torch.rand(b, generator=g)) / 20)
    peak = out.abs().amax(dim=1).clamp_min(1e-6)
    return out + (noisy * level * peak)[:, None] * torch.randn(b, t, generator=g)


def augment_mel(lm: Tensor, g: torch.Generator) -> Tensor:
    """Log-mel (B, M, F) → spectral tilt and SpecAugment masks (in place of a copy)."""
    lm = lm.clone()
    b, m, f = lm.shape
    tilt = (torch.rand(b, generator=g) < 0.5).float() * (3.0 * torch.rand(b, generator=g) - 1.5)
    lm = lm + tilt[:, None, None] * torch.linspace(-0.5, 0.5, m)[None, :, None]
    floor = float(lm.min())
    for i in range(b):
        if float(torch.rand((), generator=g)) < 0.5:
            w = int(torch.randint(1, 13, (), generator=g))
            s = int(torch.randint(0, m - w, (), generator=g))
            lm[i, s : s + w] = floor
        if float(torch.rand((), generator=g)) < 0.5:
            w = int(torch.randint(1, 9, (), generator=g))
            s = int(torch.randint(4, f - w, (), generator=g))  # keep the attack frames
            lm[i, :, s : s + w] = floor
    return lm


# ------------------------------------------------------------------------------------------- training


def load_clip_audio(paths: Sequence[Path], duration: float, sample_rate: int) -> np.ndarray:
    """Onset-aligned fixed-length clips (N, T): ``data.dataset.load_fixed`` through its disk cache."""
    from sampleforge.data.dataset import WaveCache

    cache = WaveCache()
    return np.stack([cache.get(p, duration=duration, sample_rate=sample_rate) for p in paths]).astype(np.float32)


def accuracy_by_class(model: DrumClassifier, logmels: Tensor, labels: Tensor) -> tuple[dict[str, dict[str, float]], np.ndarray]:
    """Per-class accuracy ``{class: {"n", "correct", "accuracy"}}`` and the confusion matrix (K, K)."""
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(logmels[i : i + 64]).argmax(1) for i in range(0, len(logmels), 64)])
    k = len(model.cfg.classes)
    conf = np.zeros((k, k), dtype=int)
    for t_, p_ in zip(labels.tolist(), pred.tolist(), strict=True):
        conf[t_, p_] += 1
    out: dict[str, dict[str, float]] = {}
    for j, c in enumerate(model.cfg.classes):
        n = int(conf[j].sum())
        if n:
            out[c] = {"n": n, "correct": int(conf[j, j]), "accuracy": conf[j, j] / n}
    return out, conf


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion ``correct / n``."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def mistakes(model: DrumClassifier, logmels: Tensor, labels: Tensor, names: Sequence[str]) -> list[str]:
    """"name: true -> predicted" for every misclassified clip."""
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(logmels[i : i + 64]).argmax(1) for i in range(0, len(logmels), 64)])
    cls = model.cfg.classes
    return [f"{n}: {cls[int(t_)]} -> {cls[int(p_)]}" for n, t_, p_ in zip(names, labels.tolist(), pred.tolist(), strict=True)
            if t_ != p_]


def fit(
    train_wav: np.ndarray,
    train_labels: np.ndarray,
    cfg: ClassifierConfig,
    settings: TrainSettings,
    log: bool = True,
) -> DrumClassifier:
    """Train a classifier on clips (N, T) with integer labels (N,) and return it in eval mode."""
    g = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)
    mel = MelSpectrogram(MelConfig(sample_rate=cfg.sample_rate, n_mels=cfg.n_mels))
    plain = clip_logmels(torch.from_numpy(train_wav), cfg, mel)
    cfg.input_mean = float(plain.mean())
    cfg.input_std = float(plain.std())
    model = DrumClassifier(cfg)
    counts = np.bincount(train_labels, minlength=len(cfg.classes)).astype(np.float64)
    weights = torch.from_numpy(1.0 / np.maximum(counts, 1.0)[train_labels])
    steps_per_epoch = math.ceil(settings.samples_per_epoch / settings.batch_size)
    total = settings.epochs * steps_per_epoch
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=settings.lr, total_steps=total, pct_start=0.15)
    wav_t, lab_t = torch.from_numpy(train_wav), torch.from_numpy(train_labels).long()
    t0 = time.time()
    for epoch in range(settings.epochs):
        model.train()
        loss_sum = 0.0
        for _ in range(steps_per_epoch):
            idx = torch.multinomial(weights, settings.batch_size, replacement=True, generator=g)
            lm = augment_mel(clip_logmels(augment_wav(wav_t[idx], cfg.sample_rate, g), cfg, mel), g)
            loss = F.cross_entropy(model(lm), lab_t[idx], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item()
        if log:
            print(f"epoch {epoch + 1}/{settings.epochs} loss {loss_sum / steps_per_epoch:.3f} "
                  f"({time.time() - t0:.0f} s)", flush=True)
    return model.eval()


def _labels(categories: Sequence[str], cfg: ClassifierConfig) -> np.ndarray:
    return np.array([cfg.classes.index(cfg.judged_class(c) or "") for c in categories], dtype=np.int64)


def kit_folds(kits: Sequence[str], k: int) -> list[list[str]]:
    """Kits dealt into ``k`` folds, largest first, round-robin (deterministic)."""
    order = [kit for kit, _ in Counter(kits).most_common()]
    return [order[i::k] for i in range(k)]


def _card(cfg: ClassifierConfig, held: dict[str, dict[str, float]], held_kits: Sequence[str],
          train_counts: Counter[str], cv: dict[str, dict[str, float]] | None, cv_folds: int,
          settings: TrainSettings, seconds: float, n_params: int, errors: Sequence[str] = ()) -> str:
    total_n = int(sum(v["n"] for v in held.values()))
    total_ok = int(sum(v["correct"] for v in held.values()))
    lo, hi = wilson_interval(total_ok, total_n)
    lines = [
        "# classifier-v1: drum one-shot classifier for `sampleforge eval`", "",
        f"A log-mel CNN ({n_params:,} parameters) over our 128-band log-mel of a peak-normalised, onset-aligned",
        "2-s clip. `forward` gives class logits; `embed` (the 128-d penultimate layer) is the embedding for",
        "Fréchet distance. Rebuild with `sampleforge eval train-classifier` (or",
        "`python -m sampleforge.eval.classifier_train`).", "",
        "## Data",
        "Real recordings only: the Debian `hydrogen-drumkits` / `hydrogen-drumkits-effects` kits, scanned and",
        "labelled by `sampleforge.data.corpus` (kit licences are listed in the drums-v1 model card).",
        f"Held-out kits (never trained on): {', '.join(held_kits)}.",
        f"Training clips per class: {', '.join(f'{c} {n}' for c, n in sorted(train_counts.items()))}.",
        "", "## Classes",
        f"{', '.join(cfg.classes)}.",
        "Merged for evaluation: crash + ride -> cymbal. The kits' cymbal labels are the least reliable (a bare",
        "\"cymbal\" defaults to crash in the corpus), the held-out kits hold only 3 of each, and the prompts",
        "\"crash\" and \"ride\" are judged together as \"cymbal\".", "",
        "## Training",
        f"{settings.epochs} epochs x {settings.samples_per_epoch} class-balanced samples, batch {settings.batch_size},",
        f"AdamW lr {settings.lr} one-cycle, label smoothing 0.05; augmentation: speed 0.92-1.08, onset delay",
        "0-20 ms, random decay, noise -60..-30 dB, spectral tilt, SpecAugment masks.",
        f"{seconds / 60:.1f} min wall time on one CPU thread (a shared 2-core machine; about half that when idle).", "",
        "## Held-out accuracy (per class)",
        f"On the held-out kits: {total_ok}/{total_n} = {total_ok / max(total_n, 1):.1%} overall (95 % Wilson interval",
        f"{lo:.0%}-{hi:.0%}). Per-class counts are small: read them as rough.", "",
        "| class | clips | correct | accuracy |", "|---|---:|---:|---:|",
    ]
    for c in cfg.classes:
        if c in held:
            v = held[c]
            lines.append(f"| {c} | {v['n']} | {v['correct']} | {v['accuracy']:.0%} |")
        else:
            lines.append(f"| {c} | 0 | - | no held-out clips |")
    if errors:
        lines += ["", "Misclassified held-out clips (kit/instrument: true -> predicted):", ""]
        lines += [f"- {e}" for e in errors]
    if cv:
        cn = sum(v["n"] for v in cv.values())
        ck = sum(v["correct"] for v in cv.values())
        lines += ["", f"## Kit-grouped {cv_folds}-fold cross-validation",
                  "Every kit is held out once (models trained on the other folds' kits, same settings); pooled",
                  f"over all clips: {ck}/{cn} = {ck / max(cn, 1):.1%}.", "",
                  "| class | clips | correct | accuracy |", "|---|---:|---:|---:|"]
        for c in cfg.classes:
            if c in cv:
                v = cv[c]
                lines.append(f"| {c} | {v['n']} | {v['correct']} | {v['accuracy']:.0%} |")
    lines += ["", "## Limits",
              "Trained on a dozen acoustic and electronic kits: it judges whether a clip sounds like a class of",
              "these kits, not audio quality. Classes with few clips (clap, rim, shaker) are the least reliable.", ""]
    return "\n".join(lines)


def train_classifier(
    data_dirs: Sequence[Path | str] | None = None,
    out_dir: Path | str = DEFAULT_CLASSIFIER,
    settings: TrainSettings | None = None,
    held_out_kits: Sequence[str] | None = None,
    cv_folds: int = 0,
) -> tuple[DrumClassifier, dict[str, dict[str, float]]]:
    """Scan, split by kit, train, evaluate on the held-out kits and save. Returns (model, held-out per-class)."""
    from sampleforge.data import corpus

    settings = settings or TrainSettings()
    held_kits = list(held_out_kits if held_out_kits is not None else corpus.DEFAULT_HELD_OUT_KITS)
    scan = corpus.scan(data_dirs) if data_dirs else corpus.scan()
    classes, class_map = eval_classes()
    cfg = ClassifierConfig(classes=classes, class_map=class_map)
    clips = [c for c in scan.clips if cfg.judged_class(c.category)]
    train, test = corpus.split_by_kit(clips, held_kits)
    print(f"{len(train)} training clips, {len(test)} held-out clips from {held_kits}", flush=True)
    t0 = time.time()
    all_wav = load_clip_audio([c.path for c in clips], cfg.duration, cfg.sample_rate)
    index = {id(c): i for i, c in enumerate(clips)}
    tr_idx = np.array([index[id(c)] for c in train])
    te_idx = np.array([index[id(c)] for c in test])
    labels = _labels([c.category for c in clips], cfg)
    cv_result: dict[str, dict[str, float]] | None = None
    if cv_folds > 1:
        kits = [c.kit for c in clips]
        conf_sum = np.zeros((len(classes), len(classes)), dtype=int)
        for f, fold in enumerate(kit_folds(kits, cv_folds)):
            test_mask = np.array([k in fold for k in kits])
            print(f"cv fold {f + 1}/{cv_folds}: holding out {fold}", flush=True)
            m = fit(all_wav[~test_mask], labels[~test_mask], ClassifierConfig(classes=classes, class_map=class_map),
                    settings, log=False)
            _, conf = accuracy_by_class(m, clip_logmels(torch.from_numpy(all_wav[test_mask]), m.cfg),
                                        torch.from_numpy(labels[test_mask]))
            conf_sum += conf
        cv_result = {c: {"n": int(conf_sum[j].sum()), "correct": int(conf_sum[j, j]),
                         "accuracy": conf_sum[j, j] / conf_sum[j].sum()}
                     for j, c in enumerate(classes) if conf_sum[j].sum()}
    model = fit(all_wav[tr_idx], labels[tr_idx], cfg, settings)
    held_lm, held_lab = clip_logmels(torch.from_numpy(all_wav[te_idx]), cfg), torch.from_numpy(labels[te_idx])
    held, _ = accuracy_by_class(model, held_lm, held_lab)
    errors = mistakes(model, held_lm, held_lab, [f"{c.kit}/{c.name}" for c in test])
    seconds = time.time() - t0
    train_counts = Counter(cfg.judged_class(c.category) or "" for c in train)
    card = _card(cfg, held, held_kits, train_counts, cv_result, cv_folds, settings, seconds,
                 sum(p.numel() for p in model.parameters()), errors)
    save_classifier(model, out_dir, card)
    print(card)
    return model, held


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", nargs="+", type=Path, default=None, help="drum folders (default: the Hydrogen kits)")
    p.add_argument("--out", type=Path, default=DEFAULT_CLASSIFIER, help="output folder")
    p.add_argument("--epochs", type=int, default=TrainSettings.epochs)
    p.add_argument("--samples-per-epoch", type=int, default=TrainSettings.samples_per_epoch)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cv-folds", type=int, default=0, help="also estimate accuracy by kit-grouped K-fold CV")
    p.add_argument("--held-out", nargs="+", default=None, help="held-out kit names (default: the corpus default)")


def run(args: argparse.Namespace) -> int:
    settings = TrainSettings(epochs=args.epochs, samples_per_epoch=args.samples_per_epoch, seed=args.seed)
    train_classifier(args.data, args.out, settings, args.held_out, args.cv_folds)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sampleforge.eval.classifier_train", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
