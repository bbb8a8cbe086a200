"""Procedural analog drums (numpy): a seeded, deterministic source of extra labelled one-shots.

Voices follow the classic analog circuits: a kick is a sine with exponential pitch and amplitude
envelopes plus a click (808: long and deep, 909: shorter with a bright click); a snare is two damped
tones plus band-passed noise; hats are six detuned square waves (the 808 metal bank) through a
band-pass, short (closed) or long (open); a clap is four noise bursts and a tail; toms are pitch-dropping
sines; the cowbell is two square waves (540/800 Hz); the rim is a short high tone and click; crash and
ride are larger metal banks with noise (ride: more bell, less wash); the shaker is swelling noise;
perc is a conga/bongo-like drum or a woodblock.

Keywords change parameters: 808, 909, punchy, deep, long, short, distorted, bright, dark, tight, soft,
hard. Every clip is finished by ``audio.finish`` (onset at 1.5 ms, peak 0.95).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.signal import butter, sosfilt

from sampleforge.audio.finish import finish
from sampleforge.audio.io import read_metadata, write_wav
from sampleforge.data.corpus import AUDIO_EXTS, GENERATED_LICENCE, Clip, scan
from sampleforge.errors import ParamError, SampleforgeError, UserInputError, file_in_the_way
from sampleforge.taxonomy import CATEGORIES, CATEGORY_WORDS

SAMPLE_RATE = 44100
MAX_SEED = 2**32 - 1  # seeds are 32-bit: a larger or negative one would wrap onto another's clips
MAX_PER_CATEGORY = 9999
GENERATOR = "sampleforge data synth"  # the "generator" in the metadata of every clip render_kit writes
KIT_META = {"name": "synth", "author": GENERATOR, "licence": GENERATED_LICENCE}  # render_kit's kit.json
_KIT_FILES = ("kit.json", "drumkit.xml")  # what makes a folder a kit for the corpus scan
MODIFIERS: tuple[str, ...] = (
    "punchy", "deep", "long", "short", "distorted", "bright", "dark", "tight", "soft", "hard",
)  # fmt: skip
_OPPOSITES = ({"long", "short", "tight"}, {"bright", "dark"}, {"soft", "hard"})
_STYLED = frozenset({"kick", "snare", "clap", "closed_hat", "open_hat", "tom", "cowbell", "rim"})  # 808/909
_METAL_808 = np.array([205.3, 304.4, 369.6, 522.7, 540.0, 800.0])  # the 808 hat/cymbal oscillators (Hz)


class _Voice:
    """Shared tools for one render: time axis, seeded noise, filters, keyword switches."""

    def __init__(self, keywords: Sequence[str], rng: np.random.Generator, sr: int, duration: float) -> None:
        self.kw = set(keywords)
        self.rng = rng
        self.sr = sr
        self.n = int(round(duration * sr))
        self.t = np.arange(self.n) / sr

    def has(self, word: str) -> bool:
        return word in self.kw

    def jitter(self, value: float, spread: float = 0.1) -> float:
        """``value`` times a seeded random factor in [1 - spread, 1 + spread]."""
        return value * float(1.0 + spread * self.rng.uniform(-1.0, 1.0))

    def length_scale(self) -> float:
        return 1.8 if self.has("long") else 0.5 if self.has("short") else 0.6 if self.has("tight") else 1.0

    def noise(self) -> np.ndarray:
        return self.rng.standard_normal(self.n)

    def env(self, decay_s: float, attack_s: float = 0.0) -> np.ndarray:
        e = np.exp(-self.t / max(decay_s, 1e-4))
        if attack_s > 0:
            e *= np.minimum(self.t / attack_s, 1.0)
        return e

    def band(self, x: np.ndarray, lo: float, hi: float, order: int = 2) -> np.ndarray:
        nyq = self.sr / 2
        lo, hi = max(lo, 10.0), min(hi, nyq * 0.95)
        return sosfilt(butter(order, [lo / nyq, hi / nyq], btype="band", output="sos"), x)

    def high(self, x: np.ndarray, f: float, order: int = 2) -> np.ndarray:
        return sosfilt(butter(order, min(f, self.sr * 0.45) / (self.sr / 2), btype="high", output="sos"), x)

    def low(self, x: np.ndarray, f: float, order: int = 2) -> np.ndarray:
        return sosfilt(butter(order, min(f, self.sr * 0.45) / (self.sr / 2), btype="low", output="sos"), x)

    def sweep(self, f_start: float, f_end: float, pitch_decay: float) -> np.ndarray:
        """Sine whose frequency falls exponentially from ``f_start`` to ``f_end``."""
        f = f_end + (f_start - f_end) * np.exp(-self.t / pitch_decay)
        return np.sin(2 * np.pi * np.cumsum(f) / self.sr)

    def square(self, f: float) -> np.ndarray:
        return np.sign(np.sin(2 * np.pi * f * self.t + self.rng.uniform(0, 2 * np.pi)))

    def metal(self, freqs: np.ndarray) -> np.ndarray:
        return sum((self.square(float(f)) for f in freqs), np.zeros(self.n)) / len(freqs)

    def saturate(self, x: np.ndarray, drive: float) -> np.ndarray:
        """tanh saturation of the waveform around its own envelope: adds harmonics, keeps the decay."""
        env = np.maximum(self.low(np.abs(x), 60.0, order=1) * 1.6, 1e-9)
        return env * np.tanh(drive * x / env) / np.tanh(drive)

    def shape(self, x: np.ndarray) -> np.ndarray:
        """Tone keywords applied to a voice: distorted, hard (saturation), soft (slow attack, darker),
        bright, dark."""
        x = x / (np.abs(x).max() + 1e-12)
        if self.has("distorted"):
            x = self.saturate(x, 4.0)
        if self.has("hard"):
            x = self.saturate(x, 1.5)
        if self.has("soft"):
            x = self.low(x * (1 - np.exp(-self.t / 0.002)), 6000.0)
        if self.has("bright"):
            x = x + 0.5 * self.high(x, 3000.0)
        if self.has("dark"):
            x = self.low(x, 2500.0)
        return x


def _kick(v: _Voice) -> np.ndarray:
    is808, is909 = v.has("808"), v.has("909")
    f_end = v.jitter(38.0 if v.has("deep") else 45.0 if is808 else 55.0)
    f_start = v.jitter(3.5 * f_end if is808 else 6.0 * f_end)
    pitch_decay = v.jitter(0.012 if v.has("punchy") else 0.03 if is808 else 0.02)
    decay = v.jitter(0.55 if is808 else 0.22 if is909 else 0.3) * v.length_scale()
    body = v.sweep(f_start, f_end, pitch_decay) * v.env(decay, 0.001)
    click_amp = 0.5 if (is909 or v.has("punchy")) else 0.2
    click = click_amp * v.high(v.noise(), 2000.0) * v.env(0.003)
    if is909:
        click += 0.3 * np.sin(2 * np.pi * 1800.0 * v.t) * v.env(0.004)
    return v.shape(body + click)


def _snare(v: _Voice) -> np.ndarray:
    f1 = v.jitter(238.0 if v.has("808") else 185.0)
    tones = (np.sin(2 * np.pi * f1 * v.t) + 0.6 * np.sin(2 * np.pi * 1.75 * f1 * v.t)) * v.env(v.jitter(0.05))
    snap = v.band(v.noise(), 1500.0, 9000.0) * v.env(v.jitter(0.16) * v.length_scale())
    mix = 0.8 if v.has("punchy") or v.has("deep") else 0.5
    return v.shape(mix * tones + (1.0 - 0.5 * mix) * snap / 3)


def _clap(v: _Voice) -> np.ndarray:
    noise = v.band(v.noise(), 900.0, 2600.0 if not v.has("bright") else 5000.0)
    env = np.zeros(v.n)
    for i in range(4):
        start = int(round(v.jitter(0.011, 0.3) * i * v.sr))
        seg = np.exp(-np.arange(v.n - start) / (0.004 * v.sr))
        env[start:] = np.maximum(env[start:], seg)
    tail_start = int(0.035 * v.sr)
    env[tail_start:] = np.maximum(
        env[tail_start:],
        0.6 * np.exp(-np.arange(v.n - tail_start) / (v.jitter(0.12) * v.length_scale() * v.sr)),
    )
    return v.shape(noise * env)


def _hat(v: _Voice, open_: bool) -> np.ndarray:
    metal = v.metal(_METAL_808 * v.jitter(1.0, 0.08))
    lo = 5000.0 if v.has("dark") else 7000.0
    x = v.high(v.band(metal + 0.3 * v.noise(), lo, 16000.0), 5000.0)
    decay = (v.jitter(0.35) if open_ else v.jitter(0.045)) * v.length_scale()
    return v.shape(x * v.env(decay))


def _tom(v: _Voice) -> np.ndarray:
    f0 = v.jitter(85.0 if v.has("deep") else 140.0, 0.35)
    body = v.sweep(1.6 * f0, f0, v.jitter(0.04)) * v.env(v.jitter(0.35) * v.length_scale(), 0.001)
    skin = 0.15 * v.band(v.noise(), 300.0, 3000.0) * v.env(0.01)
    return v.shape(body + skin)


def _cowbell(v: _Voice) -> np.ndarray:
    f = v.jitter(1.0, 0.06)
    x = v.band(v.square(540.0 * f) + v.square(800.0 * f), 400.0, 4000.0)
    env = 0.6 * v.env(0.015) + 0.4 * v.env(v.jitter(0.2) * v.length_scale())
    return v.shape(x * env)


def _rim(v: _Voice) -> np.ndarray:
    tone = np.sin(2 * np.pi * v.jitter(1700.0) * v.t) * v.env(v.jitter(0.012))
    click = v.band(v.noise(), 2000.0, 10000.0) * v.env(0.002)
    return v.shape(tone + 0.6 * click)


def _cymbal(v: _Voice, ride: bool) -> np.ndarray:
    ratios = np.array([1.0, 1.48, 1.83, 2.41, 2.91, 3.53, 4.12, 5.27, 6.03])
    metal = v.metal(_METAL_808[0] * 2.0 * ratios * v.jitter(1.0, 0.1))
    wash = v.band(v.noise(), 4000.0, 16000.0)
    x = v.band(metal, 3000.0 if not v.has("dark") else 2000.0, 15000.0) + (0.3 if ride else 1.0) * wash
    decay = v.jitter(0.9 if ride else 1.2) * v.length_scale()
    out = x * v.env(decay)
    if ride:
        bell = sum(np.sin(2 * np.pi * v.jitter(f, 0.03) * v.t) for f in (760.0, 1140.0, 2010.0))
        out = out + 0.4 * bell * v.env(v.jitter(0.5))
    return v.shape(out)


def _shaker(v: _Voice) -> np.ndarray:
    x = v.band(v.noise(), 4000.0 if not v.has("dark") else 2500.0, 12000.0)
    attack = v.jitter(0.02, 0.4)
    return v.shape(x * v.env(v.jitter(0.07) * v.length_scale(), attack))


def _perc(v: _Voice) -> np.ndarray:
    if v.rng.uniform() < 0.6:  # conga/bongo: high pitch drop + slap
        f0 = v.jitter(260.0, 0.4)
        body = v.sweep(1.3 * f0, f0, 0.01) * v.env(v.jitter(0.12) * v.length_scale())
        slap = 0.3 * v.band(v.noise(), 800.0, 5000.0) * v.env(0.004)
        return v.shape(body + slap)
    f0 = v.jitter(900.0, 0.3)  # woodblock / clave
    x = np.sin(2 * np.pi * f0 * v.t) + 0.4 * np.sin(2 * np.pi * 2.7 * f0 * v.t)
    return v.shape(x * v.env(v.jitter(0.03) * v.length_scale()))


def synthesize(
    category: str, keywords: Sequence[str], seed: int, sample_rate: int = SAMPLE_RATE, duration: float = 2.0
) -> np.ndarray:
    """One finished one-shot of ``category`` shaped by ``keywords``: float32 (round(duration * sample_rate),),
    onset at 1.5 ms, peak 0.95. The same arguments always give the same samples."""
    if category not in CATEGORIES:
        raise UserInputError(f"unknown category {category!r} (valid: {', '.join(CATEGORIES)})")
    _check_seed(seed)
    rng = np.random.default_rng([int(seed), CATEGORIES.index(category)])
    v = _Voice(keywords, rng, sample_rate, duration)
    voices = {
        "kick": _kick, "snare": _snare, "rim": _rim, "clap": _clap, "tom": _tom, "cowbell": _cowbell,
        "shaker": _shaker, "perc": _perc,
        "closed_hat": lambda v: _hat(v, open_=False), "open_hat": lambda v: _hat(v, open_=True),
        "crash": lambda v: _cymbal(v, ride=False), "ride": lambda v: _cymbal(v, ride=True),
    }  # fmt: skip
    x = voices[category](v)
    return finish(x.astype(np.float32), sample_rate, normalize="peak", peak=0.95, length=v.n)


def random_keywords(category: str, rng: np.random.Generator) -> list[str]:
    """The class words then 0-3 modifiers (plus 808 or 909 for the classes those machines had), never
    two opposites: ``["kick", "808", "punchy"]``."""
    if category not in CATEGORIES:
        raise UserInputError(f"unknown category {category!r} (valid: {', '.join(CATEGORIES)})")
    words = list(CATEGORY_WORDS[category])
    if category in _STYLED:
        style = rng.choice(["808", "909", ""])
        if style:
            words.append(str(style))
    mods: list[str] = []
    for m in rng.permutation(MODIFIERS)[: int(rng.integers(0, 4))]:
        if not any(m in group and set(mods) & group for group in _OPPOSITES):
            mods.append(str(m))
    return words + mods


def _check_seed(seed: int) -> None:
    if not 0 <= int(seed) <= MAX_SEED:
        raise ParamError("seed", f"must be an integer from 0 to {MAX_SEED}, got {seed}")


def synth_clip(path: Path) -> bool:
    """Whether the file ``path`` is a clip ``render_kit`` wrote (its metadata names the synth as its generator)."""
    try:
        return read_metadata(path).get("generator") == GENERATOR
    except SampleforgeError:
        return False


def _synth_kit_json(path: Path) -> bool:
    try:
        return bool(json.loads(path.read_text(encoding="utf-8")) == KIT_META)
    except (OSError, UnicodeDecodeError, ValueError):
        return False


def foreign_file(out: Path, names: Sequence[str]) -> str | None:
    """Why ``render_kit`` may not write the clips ``names`` into the folder ``out``, or None when ``out`` is new,
    empty, or holds only what ``render_kit`` wrote (a re-run there replaces its own files). Its kit.json would
    relabel every recording below it as a generated clip, so anything else is in the way: another kit's kit.json
    or drumkit.xml, an audio file the synth did not write, any other file, a symbolic link, or a folder where a
    clip goes. Hidden files other than audio (a file manager's) do not count."""
    if not out.is_dir():
        return None
    for name in names:
        if (out / name).is_dir():
            return f"{out / name} is a folder, not a clip"
    for dirpath, dirnames, filenames in os.walk(out):
        d = Path(dirpath)
        dirnames.sort()
        links = sorted(x for x in dirnames + filenames if (d / x).is_symlink())
        if links:
            return f"{out} holds {d / links[0]}, a link data synth did not make"
        for fn in sorted(filenames, key=lambda f: (f not in _KIT_FILES, f)):  # another kit is the first news
            path = d / fn
            if fn == "kit.json" and d == out and _synth_kit_json(path):
                continue
            if fn in _KIT_FILES:
                return f"{out} holds another kit ({path})"
            if fn.startswith(".") and path.suffix.lower() not in AUDIO_EXTS:
                continue
            if not synth_clip(path):
                return f"{out} holds {path}, a file data synth did not write"
    return None


def plan_clips(n_per_category: int, seed: int = 0) -> list[tuple[str, str, list[str], int]]:
    """(file name, class, keywords, clip seed) of every clip ``render_kit`` writes for these arguments."""
    if not 1 <= n_per_category <= MAX_PER_CATEGORY:
        raise ParamError("n_per_category", f"must be an integer from 1 to {MAX_PER_CATEGORY}, got {n_per_category}")
    _check_seed(seed)
    plan: list[tuple[str, str, list[str], int]] = []
    for ci, cat in enumerate(CATEGORIES):
        for i in range(n_per_category):
            ss = np.random.SeedSequence([int(seed), ci, i])
            rng = np.random.default_rng(ss)
            words = random_keywords(cat, rng)
            clip_seed = int(ss.generate_state(1)[0])
            mods = [w for w in words if w not in CATEGORY_WORDS[cat]]
            # "synth" in every name: the corpus labels these clips apart from recordings, so a model trained on
            # both can be asked for either ("synth clap") and a plain "clap" leans to the real ones
            plan.append(("_".join([cat, *mods, "synth", f"{i:04d}"]) + ".wav", cat, words, clip_seed))
    return plan


def render_kit(
    out_dir: str | Path,
    n_per_category: int,
    seed: int = 0,
    sample_rate: int = SAMPLE_RATE,
    duration: float = 2.0,
    *,
    setting: str | None = None,
) -> list[Clip]:
    """Write ``n_per_category`` clips of every class as WAVs into ``out_dir`` (a kit "synth", licence
    "generated", described by ``kit.json``) and return them as the corpus scan labels them.

    ``out_dir`` must be new, empty, or a folder render_kit wrote before (``foreign_file``); otherwise nothing is
    written and the error names ``setting`` (the caller's name for the folder: ``out`` for ``--out``), or the
    folder when it is None. ``seed``: 0 to ``MAX_SEED``."""
    plan = plan_clips(n_per_category, seed)
    out = Path(out_dir)
    problem = file_in_the_way(out)
    if problem is None:
        foreign = foreign_file(out, [name for name, *_ in plan])
        if foreign is not None:
            problem = f"{foreign}; nothing written (choose a new or empty folder, or one data synth wrote)"
    if problem is not None:
        raise ParamError(setting, f": {problem}") if setting else UserInputError(problem)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "kit.json").write_text(json.dumps(KIT_META, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise UserInputError(file_in_the_way(out) or f"{out}: cannot write there ({exc.strerror or exc})") from None
    intended: dict[str, str] = {}
    for name, cat, words, clip_seed in plan:
        wav = synthesize(cat, words, clip_seed, sample_rate, duration)
        info = {"generator": GENERATOR, "category": cat, "keywords": " ".join(words), "seed": str(clip_seed)}
        write_wav(out / name, wav, sample_rate, info)
        intended[name] = cat
    clips = [c for c in scan([out], check_audio=False).clips if c.path.name in intended]
    wrong = [c.path.name for c in clips if c.category != intended[c.path.name]]
    if wrong or len(clips) != len(intended):
        raise RuntimeError(
            f"synth: the corpus scan mislabels {wrong or 'some files'}"
        )  # a bug, not user error
    return clips
