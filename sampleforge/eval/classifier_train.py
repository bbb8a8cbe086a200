"""Train the drum classifier on real recordings, with a kit-level split, and write its folder (weights + card).

    python -m sampleforge.eval.classifier_train [--data DIR ...] [--config RECIPE | --held-out KIT ...]
                                                [--compare OTHER_CLASSIFIER ...] [--out FOLDER]
    sampleforge eval train-classifier ...                                  (the same)
    sampleforge eval score-classifier --classifier A [B ...] [--data ...] [--config RECIPE]   (no training)

Data: every clip ``data.corpus.scan`` finds in ``--data`` (the Hydrogen kits by default), loaded
onset-aligned at 2 s (``data.dataset.load_fixed``). The held-out kits (``--held-out``, or a training recipe's
``data.held_out_kits`` with ``--config``, else ``corpus.DEFAULT_HELD_OUT_KITS``) are never seen in training:
the card reports accuracy on them per class with 95 % Wilson intervals, next to every ``--compare``
classifier measured on the same clips, and ``--cv-folds K`` adds a kit-grouped cross-validation estimate
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
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from sampleforge.audio.mel import MelConfig, MelSpectrogram
from sampleforge.errors import UserInputError
from sampleforge.eval.classifier import (
    ClassifierConfig,
    DrumClassifier,
    clip_logmels,
    load_classifier,
    save_classifier,
)
from sampleforge.eval.metrics import wilson_interval
from sampleforge.eval.settings import CLASSIFIER_OUT, ClassifierTraining
from sampleforge.taxonomy import CATEGORIES

if TYPE_CHECKING:
    from sampleforge.data.corpus import Clip, KitInfo

MERGED = {"crash": "cymbal", "ride": "cymbal"}


def eval_classes() -> tuple[list[str], dict[str, str]]:
    """The classifier's classes (taxonomy order, merged ones in place of the first) and the category map."""
    classes: list[str] = []
    for c in CATEGORIES:
        name = MERGED.get(c, c)
        if name not in classes:
            classes.append(name)
    return classes, dict(MERGED)


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
    settings: ClassifierTraining,
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


PerClass = dict[str, dict[str, float]]  # class -> {"n", "correct", "accuracy"}


@dataclass
class HeldOut:
    """The held-out kits' clips, ready to judge: log-mels (N, M, F), labels (N,), "kit/instrument" names."""

    logmels: Tensor
    labels: Tensor
    names: list[str]


def held_out_kits_from(held_out: Sequence[str] | None, recipe: Path | str | None,
                       flag: str = "--held-out") -> list[str]:
    """The kits to hold out: ``held_out`` (given by ``flag``), else a training recipe's ``data.held_out_kits``, else
    the corpus default."""
    if held_out is not None and recipe is not None:
        raise UserInputError(f"give the held-out kits by {flag} or by --config, not both")
    if recipe is not None:
        from sampleforge.train.recipe import load_recipe

        kits = load_recipe(recipe).data.held_out_kits
        if not kits:
            raise UserInputError(f"--config: {recipe} holds out no kit (its data.held_out_kits is empty)")
        return list(kits)
    from sampleforge.data import corpus

    return list(held_out if held_out is not None else corpus.DEFAULT_HELD_OUT_KITS)


def judged_clips(data_dirs: Sequence[Path | str] | None, cfg: ClassifierConfig) -> tuple[list[Clip], dict[str, KitInfo]]:
    """Every clip of ``data_dirs`` (default: the Hydrogen kits) whose category ``cfg`` judges, and the kits."""
    from sampleforge.data import corpus

    missing = [str(d) for d in data_dirs or () if not Path(d).is_dir()]
    if missing:
        raise UserInputError(f"--data: {missing[0]} is not a folder")
    scan = corpus.scan(data_dirs) if data_dirs else corpus.scan()
    clips = [c for c in scan.clips if cfg.judged_class(c.category)]
    if not clips:
        raise UserInputError(f"--data: no drum clips found in {', '.join(map(str, data_dirs or corpus.HYDROGEN_DIRS))}")
    return clips, scan.kits


def held_out_set(clips: Sequence[Clip], wav: np.ndarray, cfg: ClassifierConfig) -> HeldOut:
    """Clips (N) with their audio (N, T) → the log-mels, labels and names a classifier is scored on."""
    return HeldOut(clip_logmels(torch.from_numpy(wav), cfg), torch.from_numpy(_labels([c.category for c in clips], cfg)),
                   [f"{c.kit}/{c.name}" for c in clips])


def score_others(folders: Sequence[Path], cfg: ClassifierConfig, clips: Sequence[Clip],
                 wav: np.ndarray) -> dict[str, PerClass]:
    """Per-class held-out accuracy of other classifier folders on the same clips (N) / audio (N, T)."""

    out: dict[str, PerClass] = {}
    for folder in folders:
        other = load_classifier(folder)
        if other.cfg.classes != cfg.classes or other.cfg.class_map != cfg.class_map:
            raise UserInputError(f"{folder}: judges the classes {other.cfg.classes} (map {other.cfg.class_map}), not "
                                 f"{cfg.classes} (map {cfg.class_map}): they cannot be scored on the same labels")
        held = held_out_set(clips, wav, other.cfg)
        name = folder.name if folder.name not in out else str(folder)
        out[name] = accuracy_by_class(other, held.logmels, held.labels)[0]
    return out


def _accuracy_cell(correct: int, n: int) -> str:
    lo, hi = wilson_interval(correct, n)
    return f"{correct}/{n} = {correct / n:.0%} ({lo:.0%}-{hi:.0%})"


def accuracy_table(results: dict[str, PerClass], classes: Sequence[str]) -> list[str]:
    """Markdown rows: per class and overall, each classifier's correct/clips = accuracy (95 % Wilson interval).

    Every classifier in ``results`` is scored on the same clips, so a class has one clip count."""
    names = list(results)
    lines = ["| class | clips | " + " | ".join(names) + " |", "|---|---:|" + "---:|" * len(names)]
    total = 0
    for c in classes:
        n = next((int(r[c]["n"]) for r in results.values() if c in r), 0)
        total += n
        cells = [_accuracy_cell(int(r[c]["correct"]), n) if n else "-" for r in results.values()]
        lines.append(f"| {c} | {n} | " + " | ".join(cells) + " |")
    overall = [_accuracy_cell(int(sum(v["correct"] for v in r.values())), total) if total else "-"
               for r in results.values()]
    lines.append(f"| **all** | {total} | " + " | ".join(overall) + " |")
    return lines


@dataclass
class CardFacts:
    """What the card of a trained classifier reports (``_card``)."""

    name: str
    cfg: ClassifierConfig
    data_dirs: list[str]
    kits: dict[str, KitInfo]
    held_kits: list[str]
    train_counts: Counter[str]
    results: dict[str, PerClass]  # this classifier first, then the --compare ones, on the same held-out clips
    errors: list[str]
    settings: ClassifierTraining
    seconds: float
    n_params: int
    cv: PerClass | None = None
    cv_folds: int = 0


def _card(f: CardFacts) -> str:
    held = f.results[f.name]
    total_n = int(sum(v["n"] for v in held.values()))
    total_ok = int(sum(v["correct"] for v in held.values()))
    lo, hi = wilson_interval(total_ok, total_n)
    kits = [k for k in f.kits.values() if k.n_clips]  # a kit of non-drum files only is not data
    lines = [
        f"# {f.name}: drum one-shot classifier for `sampleforge eval`", "",
        f"A log-mel CNN ({f.n_params:,} parameters) over our 128-band log-mel of a peak-normalised, onset-aligned",
        "2-s clip. `forward` gives class logits; `embed` (the 128-d penultimate layer) is the embedding for",
        "Fréchet distance. Rebuild with `sampleforge eval train-classifier` (or",
        "`python -m sampleforge.eval.classifier_train`).", "",
        "## Data",
        f"Real recordings only: the {len(kits)} kits that `sampleforge.data.corpus` scans and labels in",
        f"{', '.join(f'`{d}`' for d in f.data_dirs)}. Licences as the scanner reads them: the Debian packages'",
        "`copyright` files, else the kit's `drumkit.xml` or `kit.json` (written by `sampleforge data debian`).",
        f"Held-out kits (never trained on): {', '.join(f.held_kits)}.",
        f"Training clips per class: {', '.join(f'{c} {n}' for c, n in sorted(f.train_counts.items()))}.", "",
        "| kit | clips | licence | use |", "|---|---:|---|---|",
    ]
    lines += [f"| {k.name} | {k.n_clips} | {k.licence or 'unknown'} | {'held out' if k.name in f.held_kits else 'training'} |"
              for k in kits]
    lines += [
        "", "## Classes",
        f"{', '.join(f.cfg.classes)}.",
        "Merged for evaluation: crash + ride -> cymbal. The kits' cymbal labels are the least reliable (a bare",
        "\"cymbal\" defaults to crash in the corpus), the held-out kits hold only a few of each, and the prompts",
        "\"crash\" and \"ride\" are judged together as \"cymbal\".", "",
        "## Training",
        f"{f.settings.epochs} epochs x {f.settings.samples_per_epoch} class-balanced samples, batch {f.settings.batch_size},",
        f"AdamW lr {f.settings.lr} one-cycle, label smoothing 0.05, seed {f.settings.seed}; augmentation: speed 0.92-1.08,",
        "onset delay 0-20 ms, random decay, noise -60..-30 dB, spectral tilt, SpecAugment masks.",
        f"{f.seconds / 60:.1f} min wall time on {torch.get_num_threads()} CPU thread(s) (loading the clips included).", "",
        "## Held-out accuracy (per class)",
        f"On the held-out kits: {total_ok}/{total_n} = {total_ok / max(total_n, 1):.1%} overall (95 % Wilson interval",
        f"{lo:.0%}-{hi:.0%}). Per-class counts are small: read them as rough."
        + (" Other classifiers are scored on the same clips." if len(f.results) > 1 else ""), "",
    ]
    lines += accuracy_table(f.results, f.cfg.classes)
    if f.errors:
        lines += ["", f"Misclassified held-out clips of {f.name} (kit/instrument: true -> predicted):", ""]
        lines += [f"- {e}" for e in f.errors]
    if f.cv:
        lines += ["", f"## Kit-grouped {f.cv_folds}-fold cross-validation",
                  "Every kit is held out once (models trained on the other folds' kits, same settings); pooled",
                  "over all clips:", ""]
        lines += accuracy_table({f"{f.cv_folds}-fold CV": f.cv}, f.cfg.classes)
    lines += ["", "## Limits",
              f"Trained on {len(kits) - len(f.held_kits)} acoustic and electronic kits: it judges whether a clip sounds",
              "like a class of these kits, not audio quality. Classes with few clips (clap, rim, shaker) are the",
              "least reliable.", ""]
    return "\n".join(lines)


def _cross_validate(all_wav: np.ndarray, labels: np.ndarray, kits: Sequence[str], classes: list[str],
                    class_map: dict[str, str], settings: ClassifierTraining, folds: int) -> PerClass:
    """Pooled per-class accuracy of ``folds`` kit-grouped trainings, each scored on its held-out fold."""
    conf_sum = np.zeros((len(classes), len(classes)), dtype=int)
    for f, fold in enumerate(kit_folds(kits, folds)):
        test_mask = np.array([k in fold for k in kits])
        print(f"cv fold {f + 1}/{folds}: holding out {fold}", flush=True)
        m = fit(all_wav[~test_mask], labels[~test_mask], ClassifierConfig(classes=classes, class_map=class_map),
                settings, log=False)
        _, conf = accuracy_by_class(m, clip_logmels(torch.from_numpy(all_wav[test_mask]), m.cfg),
                                    torch.from_numpy(labels[test_mask]))
        conf_sum += conf
    return {c: {"n": int(conf_sum[j].sum()), "correct": int(conf_sum[j, j]),
                "accuracy": conf_sum[j, j] / conf_sum[j].sum()}
            for j, c in enumerate(classes) if conf_sum[j].sum()}


def train_classifier(
    data_dirs: Sequence[Path | str] | None = None,
    out_dir: Path | str = CLASSIFIER_OUT,
    settings: ClassifierTraining | None = None,
    held_out_kits: Sequence[str] | None = None,
    cv_folds: int = 0,
    compare: Sequence[Path] = (),
) -> tuple[DrumClassifier, PerClass]:
    """Scan, split by kit, train, evaluate on the held-out kits (and ``compare`` classifiers on the same clips)
    and save. Returns (model, held-out per-class)."""
    from sampleforge.data import corpus

    settings = settings or ClassifierTraining()
    check_out_folder(out_dir)  # before anything trains: the folder may hold only an earlier classifier
    if cv_folds < 0:
        raise UserInputError(f"--cv-folds must be at least 0, got {cv_folds}")
    for other in compare:  # a --compare that does not load says so now, not after the training
        load_classifier(other)
    held_kits = list(held_out_kits if held_out_kits is not None else corpus.DEFAULT_HELD_OUT_KITS)
    classes, class_map = eval_classes()
    cfg = ClassifierConfig(classes=classes, class_map=class_map)
    clips, kits = judged_clips(data_dirs, cfg)
    train, test = corpus.split_by_kit(clips, held_kits)
    n_kits = len({c.kit for c in clips})
    if cv_folds > n_kits:
        raise UserInputError(f"--cv-folds {cv_folds}: the data has only {n_kits} kits (each fold holds out at least one)")
    print(f"{len(train)} training clips, {len(test)} held-out clips from {held_kits}", flush=True)
    t0 = time.time()
    all_wav = load_clip_audio([c.path for c in clips], cfg.duration, cfg.sample_rate)
    index = {id(c): i for i, c in enumerate(clips)}
    tr_idx = np.array([index[id(c)] for c in train])
    te_idx = np.array([index[id(c)] for c in test])
    labels = _labels([c.category for c in clips], cfg)
    cv_result = (_cross_validate(all_wav, labels, [c.kit for c in clips], classes, class_map, settings, cv_folds)
                 if cv_folds > 1 else None)
    model = fit(all_wav[tr_idx], labels[tr_idx], cfg, settings)
    seconds = time.time() - t0
    held_set = held_out_set(test, all_wav[te_idx], cfg)
    held, _ = accuracy_by_class(model, held_set.logmels, held_set.labels)
    name = Path(out_dir).name
    results = {name: held, **score_others(compare, cfg, test, all_wav[te_idx])}
    facts = CardFacts(name=name, cfg=cfg, data_dirs=[str(d) for d in data_dirs or corpus.HYDROGEN_DIRS], kits=kits,
                      held_kits=held_kits, train_counts=Counter(cfg.judged_class(c.category) or "" for c in train),
                      results=results, errors=mistakes(model, held_set.logmels, held_set.labels, held_set.names),
                      settings=settings, seconds=seconds, n_params=sum(p.numel() for p in model.parameters()),
                      cv=cv_result, cv_folds=cv_folds)
    card = _card(facts)
    save_classifier(model, out_dir, card)
    print(card)
    return model, held


CLASSIFIER_FILES = ("config.json", "model.safetensors", "README.md")  # what save_classifier writes


def check_out_folder(out_dir: Path | str) -> None:
    """Refuse (UserInputError naming --out) a folder that cannot take the classifier: a file, or a folder holding
    anything but an earlier classifier (its config.json a classifier's, no file train-classifier does not write)."""
    from sampleforge.errors import file_in_the_way
    from sampleforge.strict import ConfigError, from_dict

    out = Path(out_dir)
    problem = file_in_the_way(out)
    if problem:
        raise UserInputError(f"--out: {problem}")
    if not out.is_dir() or not any(out.iterdir()):
        return
    others = sorted(p.name for p in out.iterdir() if p.name not in CLASSIFIER_FILES)
    cfg_path = out / "config.json"
    try:
        from_dict(ClassifierConfig, json.loads(cfg_path.read_text()), where=str(cfg_path))
        ours = cfg_path.is_file() and not others
    except (OSError, ValueError, ConfigError):  # missing, unreadable, not JSON, not a classifier's
        ours = False
    if not ours:
        names = sorted(p.name for p in out.iterdir())
        what = (others[0] if others else "a config.json that is no classifier's" if cfg_path.is_file()
                else f"{names[0]} without a classifier's config.json")
        raise UserInputError(f"--out {out}: holds files train-classifier did not write ({what}); not replaced (name "
                             "another folder)")


def score_classifiers(folders: Sequence[Path], data_dirs: Sequence[Path | str] | None,
                      held_out_kits: Sequence[str]) -> dict[str, PerClass]:
    """Per-class accuracy of classifier folders on the held-out kits' clips of ``data_dirs``; prints the table."""
    from sampleforge.data import corpus

    if not folders:
        raise UserInputError("--classifier: give at least one classifier folder")
    cfg = load_classifier(folders[0]).cfg
    clips, _ = judged_clips(data_dirs, cfg)
    _, test = corpus.split_by_kit(clips, held_out_kits)
    wav = load_clip_audio([c.path for c in test], cfg.duration, cfg.sample_rate)
    results = score_others(folders, cfg, test, wav)
    print(f"{len(test)} held-out clips from {list(held_out_kits)}; correct/clips = accuracy (95 % Wilson interval)")
    print("\n".join(accuracy_table(results, cfg.classes)))
    return results


def run(args: argparse.Namespace) -> int:
    if args.epochs < 1 or args.samples_per_epoch < 1:
        raise UserInputError(f"--epochs and --samples-per-epoch must be at least 1, got {args.epochs} and "
                             f"{args.samples_per_epoch}")
    settings = ClassifierTraining(epochs=args.epochs, samples_per_epoch=args.samples_per_epoch, seed=args.seed)
    held = held_out_kits_from(args.held_out, args.config)
    train_classifier(args.data, args.out, settings, held, args.cv_folds, args.compare)
    return 0


def run_score(args: argparse.Namespace) -> int:
    score_classifiers(args.classifier, args.data, held_out_kits_from(args.held_out, args.config))
    return 0


def main(argv: list[str] | None = None) -> int:
    from sampleforge.eval.commands import add_train_classifier_arguments

    parser = argparse.ArgumentParser(prog="python -m sampleforge.eval.classifier_train", description=__doc__.split("\n")[0])
    add_train_classifier_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
