"""``sampleforge eval``: generate N clips per class prompt and measure them against real recordings.

Measured per class prompt: class adherence (the drum classifier's accuracy on the generated clips), the
mean classifier probability of the prompted class, clipping % and NaN count before finishing, latent and
raw-audio std, loudness (LUFS) and onset position of the finished clips, diversity (mean pairwise
distance in the classifier embedding) and the distance to the nearest training clip (memorisation).

Measured over all classes: Fréchet distance (FD) to the real reference clips in the classifier embedding
and in a fixed MFCC-statistics embedding, next to the real-vs-real floor (FD between two class-stratified
halves of the reference; a half has fewer clips, so the floor is biased up a little). For the pooled FD
the generated clips are subsampled so that their class proportions match the reference's.

The round-trip check sends the real reference clips through the model's VAE (log-mel → latent → log-mel) and
the vocoder, and asks the classifier about the result, next to the same clips through the vocoder alone:
when generated clips of a class are judged wrong, it tells whether the autoencoder already loses that class
(then no amount of diffusion training fixes it) or the diffusion does.

The vocoder check re-synthesises real reference clips from their log-mel with the model's vocoder and with
Griffin-Lim (32 iterations) and compares both to the ORIGINAL waveform (log-mel L1, MR-STFT distance), with
the spectral character of all three (tail flatness, hop-rate flutter, high-band peakiness: ``eval.spectral``).
``sampleforge eval vocoder`` runs this check alone.

Reference and training sets: the clips ``data.corpus.scan`` finds in ``--reference`` folders. When some of
the held-out kits (default ``corpus.DEFAULT_HELD_OUT_KITS``) are among them, the reference is those kits and
the memorisation check uses the other kits (the training kits); otherwise both use all clips.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from sampleforge.eval import metrics, report, spectral
from sampleforge.eval.classifier import (
    DrumClassifier,
    clip_logmels,
    embed_and_classify,
    load_classifier,
    shipped_classifier,
)
from sampleforge.eval.settings import LISTEN_VOCODER, EvalSettings
from sampleforge.taxonomy import CATEGORIES, CATEGORY_PROMPTS

SHOW_PER_CLASS = 8  # generated clips per class shown with players in the HTML
SHOW_REFERENCE = 2  # real clips per class shown
SHOW_VOCODER = 2  # vocoder-check clips shown (original, vocoder, Griffin-Lim each)

# the keys that tell an earlier report (which --out may replace) from any other file
EVAL_KEYS = ("model_id", "reference", "per_class", "overall")
VOCODER_KEYS = ("model_id", "split", "griffin_lim")


@dataclass
class RealSet:
    wav: np.ndarray  # (N, T)
    categories: list[str]
    kits: list[str]
    names: list[str]


ReferenceSplit = tuple[list[Any], list[Any], str]  # (reference clips, training clips, how they were split)


def sampleforge_model(model: str | Path, command: str) -> None:
    """Refuse a model of another format before anything loads (UserInputError naming --model): ``command``
    measures a sampleforge model's mel VAE and vocoder, which other people's models do not have."""
    from sampleforge.backends.resolve import resolve
    from sampleforge.errors import UserInputError

    ref = resolve(model)
    if ref.format != "sampleforge":
        raise UserInputError(f"--model {model}: {command} measures sampleforge models (mel VAE, vocoder); a "
                             f"{ref.format} model has neither")


def split_reference(dirs: Sequence[Path | str], held_out_kits: Sequence[str] | None = None,
                    flag: str = "--held-out-kits") -> ReferenceSplit:
    """Scan ``dirs`` and split its clips (see the module docstring for the rule). Kits given (``held_out_kits``
    not None, by ``flag``) must all be there: a mistyped kit would measure the model on its training clips."""
    from sampleforge.data import corpus
    from sampleforge.errors import UserInputError

    missing = [str(d) for d in dirs if not Path(d).is_dir()]
    if missing:  # the scan would skip it: the measure would silently run on the other folders
        raise UserInputError(f"--reference: {missing[0]} is not a folder")
    scan = corpus.scan(list(dirs))
    if not scan.clips:
        raise UserInputError(f"no drum clips found in {', '.join(map(str, dirs))}")
    present = {c.kit for c in scan.clips}
    missing = sorted(set(held_out_kits or ()) - present)
    if missing:
        raise UserInputError(f"{flag}: held-out kit(s) {missing} not in the reference; kits present: {sorted(present)}")
    held = set(held_out_kits if held_out_kits is not None else corpus.DEFAULT_HELD_OUT_KITS)
    if held & present:
        ref_clips = [c for c in scan.clips if c.kit in held]
        train_clips = [c for c in scan.clips if c.kit not in held] or ref_clips
        how = f"reference = held-out kits {sorted(held & present)}; memorisation vs the other {len(present - held)} kits"
    else:
        ref_clips = train_clips = scan.clips
        how = "reference = all clips found; memorisation vs the same clips (no held-out kit present)"
    return ref_clips, train_clips, how


def load_real_sets(split: ReferenceSplit, duration: float, sample_rate: int) -> tuple[RealSet, RealSet, str]:
    """The clips of a ``split_reference``, loaded → (reference, training, how)."""
    from sampleforge.data.dataset import WaveCache

    ref_clips, train_clips, how = split
    cache = WaveCache()  # the onset-aligned clips training uses, cached on disk ($SAMPLEFORGE_CACHE)

    def load(clips: Sequence[Any]) -> RealSet:
        wav = np.stack([cache.get(c.path, duration=duration, sample_rate=sample_rate) for c in clips])
        return RealSet(wav.astype(np.float32), [c.category for c in clips], [c.kit for c in clips],
                       [c.name for c in clips])

    ref = load(ref_clips)
    train = ref if train_clips is ref_clips else load(train_clips)
    return ref, train, how


def stratified_halves(labels: Sequence[str], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of two halves with each label split as evenly as possible (deterministic)."""
    rng = np.random.default_rng(seed)
    a: list[int] = []
    b: list[int] = []
    for lab in sorted(set(labels)):
        idx = rng.permutation([i for i, x in enumerate(labels) if x == lab])
        # alternate which half gets the odd one out so the halves stay balanced in size
        first, second = (a, b) if len(a) <= len(b) else (b, a)
        first.extend(idx[: (len(idx) + 1) // 2].tolist())
        second.extend(idx[(len(idx) + 1) // 2 :].tolist())
    return np.array(sorted(a), dtype=int), np.array(sorted(b), dtype=int)


def class_matched_indices(gen_classes: Sequence[str], ref_counts: Counter[str]) -> np.ndarray:
    """Subsample generated clips so class proportions match ``ref_counts`` (classes absent there are dropped)."""
    by_class: dict[str, list[int]] = {}
    for i, c in enumerate(gen_classes):
        by_class.setdefault(c, []).append(i)
    present = {c: n for c, n in ref_counts.items() if c in by_class and n > 0}
    if not present:
        return np.array([], dtype=int)
    # the largest scale that no class runs out at
    scale = min(len(by_class[c]) / n for c, n in present.items())
    out: list[int] = []
    for c, n in present.items():
        out.extend(by_class[c][: max(1, int(round(n * scale)))])
    return np.array(sorted(out), dtype=int)


def _fd_or_none(a: np.ndarray, b: np.ndarray) -> float | None:
    return metrics.frechet_distance(a, b) if len(a) >= 2 and len(b) >= 2 else None


def _mfcc_emb(wav: np.ndarray, clf: DrumClassifier) -> np.ndarray:
    return metrics.mfcc_embedding(clip_logmels(wav, clf.cfg))


def vocoder_check(generator: Any, real: RealSet, n: int, seed: int = 0, show: int = SHOW_VOCODER,
                  ) -> tuple[dict[str, Any], list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]]:
    """Re-synthesise up to ``n`` real clips from their log-mel: model vocoder vs Griffin-Lim, both against the
    original waveform. Returns (metrics, ``show`` examples [(name, original, vocoder, griffin_lim)] taken from
    the classes in turn, each cut after the last of the three to fall silent; without a vocoder its place
    holds Griffin-Lim's)."""
    from sampleforge.audio.mel import MelSpectrogram

    if n <= 0 or len(real.wav) == 0:
        return {"clips": 0}, []
    order = np.random.default_rng(seed).permutation(len(real.wav))[:n]
    wav = torch.from_numpy(real.wav[order])
    samples = wav.shape[1]
    mel = MelSpectrogram(generator.bundle.config.mel).to(generator.device)
    with torch.inference_mode():
        lm = mel(wav.to(generator.device))
        gl = generator.vocode(lm, samples, vocoder=False).float().cpu()
        has_vocoder = generator.bundle.vocoder is not None
        voc = generator.vocode(lm, samples, vocoder=True).float().cpu() if has_vocoder else None
    sr = generator.sample_rate
    synths = {name: y for name, y in (("griffin_lim", gl), ("vocoder", voc)) if y is not None}
    per_clip = {name: {"mrstft": metrics.mrstft_per_clip(wav, y),
                       "mr_logmel_l1": metrics.mr_logmel_l1_per_clip(wav, y, sample_rate=sr)}
                for name, y in synths.items()}
    out: dict[str, Any] = {"clips": len(order), "griffin_lim_iters": getattr(generator.griffin_lim, "n_iter", None),
                           "griffin_lim_mel_iters": getattr(generator.griffin_lim, "mel_iters", None),
                           "griffin_lim_init": getattr(generator.griffin_lim, "init", None),
                           "vocoder_description": generator.bundle.vocoder.describe() if has_vocoder else None,
                           "real": spectral.spectral_character(wav.numpy(), sr),
                           "griffin_lim": None, "vocoder": None,
                           **{name: _resynthesis_metrics(wav, y, sr, per_clip[name]) for name, y in synths.items()},
                           "per_class": _per_class_distances(per_clip, [real.categories[j] for j in order])}
    examples = []
    for i in _over_classes([real.categories[j] for j in order], show):
        j = order[i]
        o, v, g = trim_together(wav[i].numpy(), (voc[i] if voc is not None else gl[i]).numpy(), gl[i].numpy(),
                                sample_rate=sr)
        examples.append((f"{real.categories[j]}: {real.kits[j]} / {real.names[j]}", o, v, g))
    return out, examples


def _over_classes(categories: Sequence[str], n: int) -> list[int]:
    """``n`` indices into ``categories`` taken from each class in turn (classes in order of first appearance,
    each class's items in their order)."""
    by_class: dict[str, list[int]] = {}
    for i, c in enumerate(categories):
        by_class.setdefault(c, []).append(i)
    queues = list(by_class.values())
    picked: list[int] = []
    while len(picked) < n and any(queues):
        for q in queues:
            if q and len(picked) < n:
                picked.append(q.pop(0))
    return picked


def trim_together(*wavs: np.ndarray, sample_rate: int, floor_db: float = -60.0, tail: float = 0.05,
                  shortest: float = 0.25) -> tuple[np.ndarray, ...]:
    """Clips of one length cut alike: ``tail`` seconds after the last sample of any of them within ``floor_db``
    of its own peak, and no shorter than ``shortest`` seconds, so they stay comparable and their pages small."""
    end = 0
    for w in wavs:
        a = np.abs(np.nan_to_num(w))
        if a.size and a.max() > 0:
            end = max(end, int(np.flatnonzero(a >= a.max() * 10 ** (floor_db / 20))[-1]) + 1)
    n = min(len(wavs[0]), max(end + int(tail * sample_rate), int(shortest * sample_rate)))
    return tuple(w[:n] for w in wavs)


def _per_class_distances(per_clip: dict[str, dict[str, np.ndarray]], categories: Sequence[str]) -> dict[str, Any]:
    """Per class of the re-synthesised clips: their number and the mean of each synthesis' per-clip distances
    (``per_clip``: synthesis -> distance -> (B,); a model without a vocoder gets None for it). Where a vocoder
    wins or loses is rarely the same for a kick as for a hat."""
    out: dict[str, Any] = {}
    for c in sorted(set(categories)):
        rows = [i for i, x in enumerate(categories) if x == c]
        out[c] = {"clips": len(rows), "griffin_lim": None, "vocoder": None, **{
            name: {k: float(v[rows].mean()) for k, v in d.items()} for name, d in per_clip.items()}}
    return out


def _resynthesis_metrics(wav: torch.Tensor, synth: torch.Tensor, sr: int,
                         per_clip: dict[str, np.ndarray]) -> dict[str, Any]:
    """Distances of re-synthesised clips (B, T) to the originals (B, T) (the means of the ``per_clip`` ones, and
    the log-mel L1), and their spectral character."""
    return {"logmel_l1": metrics.logmel_l1(wav, synth), **{k: float(v.mean()) for k, v in per_clip.items()},
            **spectral.spectral_character(synth.numpy(), sr)}


def roundtrip_check(generator: Any, real: RealSet, clf: DrumClassifier, classes: Sequence[str],
                    batch_size: int = 16) -> dict[str, Any]:
    """Per judged class: classifier accuracy on real clips re-synthesised from their own log-mel (``vocoder``)
    and from the VAE's reconstruction of it (``vae``), with the VAE's log-mel L1 (normalised units as in training
    would hide the scale: natural-log units here)."""
    from sampleforge.audio.mel import MelSpectrogram

    targets = {c: clf.cfg.judged_class(c) for c in classes}
    idx = [i for i, c in enumerate(real.categories) if targets.get(c)]
    if not idx:
        return {"clips": 0, "per_class": {}}
    wav = torch.from_numpy(real.wav[idx])
    samples = wav.shape[1]
    mel = MelSpectrogram(generator.bundle.config.mel).to(generator.device)
    vae = generator.bundle.vae
    direct, through, l1 = [], [], []
    with torch.inference_mode():
        for i in range(0, len(idx), batch_size):
            lm = mel(wav[i : i + batch_size].to(generator.device))
            rec = vae.decode(vae.encode(lm), lm.shape[-1])
            l1.append((rec - lm).abs().mean(dim=(1, 2)).cpu())
            direct.append(generator.vocode(lm, samples).float().cpu())
            through.append(generator.vocode(rec, samples).float().cpu())
    pred_direct = embed_and_classify(clf, torch.cat(direct))[1].argmax(1)
    pred_vae = embed_and_classify(clf, torch.cat(through))[1].argmax(1)
    errors = torch.cat(l1).numpy()
    per_class: dict[str, Any] = {}
    for c in classes:
        rows = [k for k, i in enumerate(idx) if real.categories[i] == c]
        if not rows:
            continue
        target = clf.cfg.classes.index(targets[c])  # type: ignore[arg-type]
        per_class[c] = {
            "clips": len(rows),
            "vocoder": float(np.mean(pred_direct[rows] == target)),
            "vae": float(np.mean(pred_vae[rows] == target)),
            "vae_predicted": dict(Counter(clf.cfg.classes[int(pred_vae[k])] for k in rows).most_common()),
            "logmel_l1": float(errors[rows].mean()),
        }
    return {"clips": len(idx), "per_class": per_class,
            "vocoder": _mean([v["vocoder"] for v in per_class.values()]),
            "vae": _mean([v["vae"] for v in per_class.values()]),
            "logmel_l1": float(errors.mean())}


def _generate_class(generator: Any, category: str, s: EvalSettings, offset: int) -> tuple[np.ndarray, dict[str, Any]]:
    prompt = CATEGORY_PROMPTS[category]
    t0 = time.perf_counter()
    g = generator.run(dataclasses.replace(s.generation, count=s.per_class, seed=s.seed + offset), [prompt])
    seconds = time.perf_counter() - t0
    samples = g.audio.shape[1]
    raw = generator.vocode(g.mels.to(generator.device), samples).float().cpu()  # before NaN clean-up and finishing
    finished = g.audio.numpy()
    sr = generator.sample_rate
    stats = {
        "prompt": prompt,
        "cfg_scale": g.params.cfg_scale,  # as sampled: the model's own for this prompt unless set
        "warnings": list(g.warnings),
        "seeds": list(g.seeds),
        "seconds_per_clip": seconds / s.per_class,
        "latent_std": float(g.latents.float().std()),
        "nan_count": metrics.nan_count(g.latents) + metrics.nan_count(g.mels) + metrics.nan_count(raw),
        "raw_audio_std": float(torch.nan_to_num(raw).std()),
        "raw_clipping_percent": metrics.clipping_percent(raw),
        "clipping_percent": metrics.clipping_percent(finished),
        "lufs": [metrics.loudness_lufs(x, sr) for x in finished],
        "onset_ms": [metrics.onset_ms(x, sr) for x in finished],
    }
    return finished, stats


def _mean(values: Sequence[float]) -> float | None:
    v = [x for x in values if x is not None and np.isfinite(x)]
    return float(np.mean(v)) if v else None


def evaluate(model: str | Path, reference: Sequence[Path | str], settings: EvalSettings | None = None,
             classifier: str | Path | None = None, device: str | None = None) -> dict[str, Any]:
    """Run the whole evaluation; returns the JSON-able result plus ``_audio`` (class -> clips) for the report."""
    from sampleforge.errors import UserInputError
    from sampleforge.pipeline import Generator

    s = settings or EvalSettings()
    unknown = [c for c in s.classes if c not in CATEGORIES]
    if unknown:
        raise UserInputError(f"unknown class {unknown[0]!r} (valid: {', '.join(CATEGORIES)})")
    if s.per_class < 2:
        raise UserInputError(f"--per-class must be at least 2 (diversity and FD need pairs), got {s.per_class}")
    sampleforge_model(model, "eval")
    split = split_reference(reference, s.held_out_kits, s.held_out_flag)
    clf = load_classifier(classifier)
    gen = Generator.from_pretrained(model, device=device, precision=s.generation.precision)
    duration = float(gen.bundle.config.duration)
    ref, train, how = load_real_sets(split, duration, gen.sample_rate)
    judged = [c for c in s.classes if clf.cfg.judged_class(c)]
    skipped = sorted(set(s.classes) - set(judged))

    # --- real sets in both embeddings
    ref_emb, ref_prob = embed_and_classify(clf, ref.wav)
    ref_mfcc = _mfcc_emb(ref.wav, clf)
    train_emb = ref_emb if train is ref else embed_and_classify(clf, train.wav)[0]
    train_nn = metrics.nearest_distances(train_emb, train_emb, exclude_self=True) if len(train_emb) > 1 else np.array([])
    ref_classes = [clf.cfg.judged_class(c) for c in ref.categories]
    ref_judged_acc = float(np.mean([clf.cfg.classes[int(p.argmax())] == c for p, c in zip(ref_prob, ref_classes, strict=True) if c]))

    # --- generate
    per_class: dict[str, Any] = {}
    audio: dict[str, np.ndarray] = {}
    gen_emb_list, gen_mfcc_list = [], []
    gen_cls: list[str] = []
    # a bar per class (off without a terminal): a class is per_class clips at the full step count
    for k, cat in enumerate(tqdm(judged, desc="generating", unit="class", file=sys.stderr, disable=None, leave=False)):
        finished, st = _generate_class(gen, cat, s, offset=1000 * k)
        emb, prob = embed_and_classify(clf, finished)
        target = clf.cfg.judged_class(cat) or cat
        ti = clf.cfg.classes.index(target)
        pred = [clf.cfg.classes[int(i)] for i in prob.argmax(1)]
        nn = metrics.nearest_distances(emb, train_emb)
        real_idx = [i for i, c in enumerate(train.categories) if c == cat]
        real_div = metrics.diversity(train_emb[real_idx]) if len(real_idx) > 1 else None
        st.update({
            "judged_as": target,
            "adherence": float(np.mean([p == target for p in pred])),
            "target_probability": float(prob[:, ti].mean()),
            "predicted": dict(Counter(pred).most_common()),
            "diversity": metrics.diversity(emb),
            "diversity_real": real_div,  # the training clips of the class: how varied real kits are
            "diversity_ratio": metrics.diversity(emb) / real_div if real_div else None,
            "diversity_mfcc": metrics.diversity(_mfcc_emb(finished, clf)),
            "nearest_train_distance": {"mean": float(nn.mean()), "min": float(nn.min())},
            "lufs_mean": _mean(st["lufs"]),
            "onset_ms_mean": _mean(st["onset_ms"]),
        })
        per_class[cat] = st
        audio[cat] = finished
        gen_emb_list.append(emb)
        gen_mfcc_list.append(_mfcc_emb(finished, clf))
        gen_cls += [target] * len(finished)

    gen_emb = np.concatenate(gen_emb_list)
    gen_mfcc = np.concatenate(gen_mfcc_list)
    # pooled FD over the judged classes both sets share, generated subsampled to the reference proportions
    ref_mask = np.array([c in set(gen_cls) for c in ref_classes])
    ref_counts = Counter(c for c, m in zip(ref_classes, ref_mask, strict=True) if m and c)
    sel = class_matched_indices(gen_cls, ref_counts)
    half_a, half_b = stratified_halves([c or "" for c, m in zip(ref_classes, ref_mask, strict=True) if m], s.seed)
    ref_e, ref_m = ref_emb[ref_mask], ref_mfcc[ref_mask]
    result: dict[str, Any] = {
        "model": str(model),
        "model_id": gen.id,
        "classifier": str(classifier or shipped_classifier()),
        "settings": {**{k: v for k, v in dataclasses.asdict(gen.resolve(s.generation)).items()
                        if k not in ("prompt", "count", "format")},
                     "per_class": s.per_class, "seed": s.seed, "duration": duration, "device": str(gen.device)},
        "reference": {"dirs": [str(d) for d in reference], "split": how, "clips": len(ref.wav),
                      "training_clips": len(train.wav), "per_class": dict(Counter(ref.categories)),
                      "classifier_accuracy": ref_judged_acc},
        "classes": judged,
        "skipped_classes": skipped,
        "per_class": per_class,
        "overall": {
            "adherence": _mean([v["adherence"] for v in per_class.values()]),
            # 95 % Wilson interval over every generated clip: how far chance alone moves the figure
            "adherence_interval": list(metrics.wilson_interval(
                sum(round(v["adherence"] * len(v["seeds"])) for v in per_class.values()),
                sum(len(v["seeds"]) for v in per_class.values()))) if per_class else None,
            "fd_classifier": _fd_or_none(gen_emb[sel], ref_e) if len(sel) else None,
            "fd_classifier_floor": _fd_or_none(ref_e[half_a], ref_e[half_b]),
            "fd_mfcc": _fd_or_none(gen_mfcc[sel], ref_m) if len(sel) else None,
            "fd_mfcc_floor": _fd_or_none(ref_m[half_a], ref_m[half_b]),
            "fd_generated_clips": int(len(sel)),
            "fd_reference_clips": int(ref_mask.sum()),
            "diversity": metrics.diversity(gen_emb),
            "diversity_reference": metrics.diversity(ref_e),
            "nearest_train_distance_mean": _mean([v["nearest_train_distance"]["mean"] for v in per_class.values()]),
            "train_to_train_nearest_median": float(np.median(train_nn)) if len(train_nn) else None,
            "clipping_percent": _mean([v["clipping_percent"] for v in per_class.values()]),
            "raw_clipping_percent": _mean([v["raw_clipping_percent"] for v in per_class.values()]),
            "nan_count": int(sum(v["nan_count"] for v in per_class.values())),
            "lufs_mean": _mean([x for v in per_class.values() for x in v["lufs"]]),
            "onset_ms_mean": _mean([x for v in per_class.values() for x in v["onset_ms"]]),
        },
    }
    voc, voc_examples = vocoder_check(gen, ref, s.vocoder_clips, s.seed)
    result["vocoder_check"] = voc
    result["roundtrip_check"] = roundtrip_check(gen, ref, clf, judged)
    result["_audio"] = audio
    result["_reference"] = ref
    result["_vocoder_examples"] = voc_examples
    result["_sample_rate"] = gen.sample_rate
    return result


def run_vocoder_check(model: str | Path, reference: Sequence[Path | str], out_file: str | Path, clips: int = 64,
                      held_out_kits: Sequence[str] | None = None, seed: int = 0,
                      device: str | None = None, vocoder: str | Path | None = None,
                      listen: int = LISTEN_VOCODER) -> dict[str, Any]:
    """The vocoder check alone (no generation, no classifier), written to ``out_file`` as JSON, and beside it
    (``.html``) a page with a blind listening test of ``listen`` of the clips (``report.vocoder_html``).
    ``vocoder``: a model folder (a vocoder training run's ``model/``) or a ``vocoder.safetensors`` whose vocoder
    replaces the model's (``bundle.vocoder_config``)."""
    import json

    from sampleforge.bundle import vocoder_weights
    from sampleforge.pipeline import Generator

    out = report.check_report_file(out_file, "--out", "eval vocoder", VOCODER_KEYS,
                                   pages=[Path(out_file).with_suffix(".html")])
    sampleforge_model(model, "eval vocoder")
    split = split_reference(reference, held_out_kits)
    components: dict[str, Path | None] | None = None if vocoder is None else {"vocoder": vocoder_weights(vocoder)}
    gen = Generator.from_pretrained(model, device=device, components=components)
    ref, _, how = load_real_sets(split, gen.bundle.config.duration, gen.sample_rate)
    result, examples = vocoder_check(gen, ref, clips, seed, show=listen)
    result = {"model": str(model), "model_id": gen.id, "vocoder_weights": None if vocoder is None else str(vocoder),
              "split": how, **result}
    report.write_text(out, json.dumps(result, indent=2) + "\n")
    report.write_text(out.with_suffix(".html"), report.vocoder_html(result, examples, gen.sample_rate, seed))
    return result


def run_eval(model: str | Path, reference: Sequence[Path | str], out_dir: str | Path,
             settings: EvalSettings | None = None, classifier: str | Path | None = None,
             device: str | None = None) -> tuple[dict[str, Any], Path, Path]:
    """Evaluate and write ``eval.json`` + ``eval.html`` into ``out_dir`` (checked first: it may hold only an earlier
    evaluation's). Returns (result, json path, html path)."""
    report.check_report_folder(out_dir, "--out", "eval", EVAL_KEYS, ["eval.json", "eval.html"])
    result = evaluate(model, reference, settings, classifier, device)
    html_text = report.eval_html(result, SHOW_PER_CLASS, SHOW_REFERENCE)
    js, page = report.write_report(result, out_dir, "eval", html_text)
    return result, js, page
