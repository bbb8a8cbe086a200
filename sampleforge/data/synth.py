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
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.signal import butter, sosfilt

from sampleforge.audio.finish import finish
from sampleforge.audio.io import write_wav
from sampleforge.data.corpus import GENERATED_LICENCE, Clip, scan
from sampleforge.errors import UserInputError, file_in_the_way
from sampleforge.taxonomy import CATEGORIES, CATEGORY_WORDS

SAMPLE_RATE = 44100
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
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, CATEGORIES.index(category)])
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


def render_kit(
    out_dir: str | Path,
    n_per_category: int,
    seed: int = 0,
    sample_rate: int = SAMPLE_RATE,
    duration: float = 2.0,
) -> list[Clip]:
    """Write ``n_per_category`` clips of every class as WAVs into ``out_dir`` (a kit "synth", licence
    "generated", described by ``kit.json``) and return them as the corpus scan labels them."""
    if not 1 <= n_per_category <= 9999:
        raise UserInputError(f"n_per_category must be in 1..9999, got {n_per_category}")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        meta = {"name": "synth", "author": "sampleforge data synth", "licence": GENERATED_LICENCE}
        (out / "kit.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise UserInputError(file_in_the_way(out) or f"{out}: cannot write there ({exc.strerror or exc})") from None
    intended: dict[str, str] = {}
    for ci, cat in enumerate(CATEGORIES):
        for i in range(n_per_category):
            ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, ci, i])
            rng = np.random.default_rng(ss)
            words = random_keywords(cat, rng)
            clip_seed = int(ss.generate_state(1)[0])
            wav = synthesize(cat, words, clip_seed, sample_rate, duration)
            mods = [w for w in words if w not in CATEGORY_WORDS[cat]]
            # "synth" in every name: the corpus labels these clips apart from recordings, so a model trained on
            # both can be asked for either ("synth clap") and a plain "clap" leans to the real ones
            name = "_".join([cat, *mods, "synth", f"{i:04d}"]) + ".wav"
            info = {"generator": "sampleforge data synth", "category": cat, "keywords": " ".join(words),
                    "seed": str(clip_seed)}  # fmt: skip
            write_wav(out / name, wav, sample_rate, info)
            intended[name] = cat
    clips = [c for c in scan([out], check_audio=False).clips if c.path.name in intended]
    wrong = [c.path.name for c in clips if c.category != intended[c.path.name]]
    if wrong or len(clips) != len(intended):
        raise RuntimeError(
            f"synth: the corpus scan mislabels {wrong or 'some files'}"
        )  # a bug, not user error
    return clips
