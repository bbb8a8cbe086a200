"""``sampleforge eval descriptors``: do the words of a prompt and the timbre knobs move the sound?

**Contrasts.** Each contrast is two prompts of the same class (or of two classes, for open vs closed hat) and
one measured feature (``sampleforge.timbre``). Both sides are generated with the same seeds; the check computes
Cohen's d of the feature between the two sides (on the logarithm for decay and brightness, whose spread is
multiplicative; with an approximate 95 % interval, about ±0.6 at 24 clips a side), and the same d on real
recordings: the clips carrying the two words (``keyword``) or, for a word that acts through a knob, the real
clips of the class in the top and bottom 30 % of that feature (``knob``). A contrast passes when the generated
d has the real d's sign, |d| >= 0.8, and the drum classifier judges each side its class at least 85 % of the time.

**Knob sweeps.** A knob set to 0.1, 0.3, 0.5, 0.7 and 0.9 (other knobs free) for one class prompt. Each sweep
reports how strongly and how surely the knob moves its feature over all its clips (``trend``): Spearman's rank
correlation of knob value and feature; the one-sided Mann-Whitney p-value that the clips at 0.9 lie above those
at 0.1 (``rise_p``); and for each step where the median falls, the one-sided p-value of that fall (a small p: a
real fall; a large one: a dip within the noise of n clips). A sweep passes (``rises``) when it ends surely above
where it started and no step falls surely (both at p < ``ALPHA``). ``monotonic`` is the stricter reading of
the medians alone: they never fall (two equal medians are allowed, as where a crash's decay reaches the end of
the 2-s clip) and end higher; a fall of a median by a thousandth, within the noise, breaks it.

**Knob limits** (``knob_limits``). For each class and knob, the class prompt with the knob set to each of
``LIMIT_VALUES`` (the others free), judged by the drum classifier: how far from the middle can the knob go before
the clips stop being that class? Where the judge recognises the class at the knob's middle (0.5: at least
``LIMIT_ADHERENCE`` of the clips), the range kept is the one around 0.5 where the share stays at least that, less
``LIMIT_SLACK`` below the middle's own share, up to the first value whose share is below that bar *and* surely
below the middle's (one-sided Fisher exact test, p < ``ALPHA``: with 48 clips, 42 against 46 is noise, 40 against
48 is not), reaching into the step to it as far as a straight line between the two shares stays above the bar.
Where the judge is unsure of the class even at the middle (percussion, at about half), a share says little of the
knob, and the knob is left unlimited. A model stores the ranges in its timbre.json; a word that asks for more
(``bright`` for a snare) is held at the edge (``timbre.knobs_from_words``).

**Word and pair reach** (``word_reach``, ``pair_reach``). The limits hold one knob at a time. A word that sets
several knobs, or two words that set two ("short thin tom"), can take the class out of itself with each knob in
its range. Each such prompt is generated as a user gets it and judged against the class prompt alone on the same
seeds; one that surely leaves the class, on two blocks of seeds, is tried with its knobs moved back toward the
middle, and the first step that holds is stored as its reach (``_reaches``). No prompt of a class fails unless the
judge knows the class prompt itself (``LIMIT_ADHERENCE`` of its clips, on both blocks when the first leaves it short
by no more than its noise: 43 of 48 clips, 89.6 %, is not surely under 90 %).

**Keyword reach** (``keyword_reach``). A keyword that sets no knob can take the class away by itself: on few
clips of the class, it carries another class's sound ("808 snare" judged a kick, "909 clap" a cymbal). Such a
keyword is tried with part of its conditioning (``timbre.keyword_weight``), by the same rule, and the first weight
that holds is stored.
"""

from __future__ import annotations

import contextlib
import itertools
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from sampleforge.taxonomy import CATEGORY_PROMPTS
from sampleforge.timbre import (
    FEATURES,
    KNOBS,
    WORD_KNOBS,
    corner,
    is_word_end,
    measure,
    toward_middle,
    word_end,
)

LOG_FEATURES = frozenset({"decay", "brightness"})
MIN_D = 0.8
MIN_ADHERENCE = 0.85
SWEEP_VALUES = (0.1, 0.3, 0.5, 0.7, 0.9)
ALPHA = 0.05  # a sweep's rise, or a fall of one of its steps, counts when its one-sided p is below this
LIMIT_VALUES = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95)  # knob values the limits are measured at
LIMIT_ADHERENCE = 0.9  # share of clips judged the class that a knob value must keep (and the middle must have)
LIMIT_SLACK = 0.05  # a value may fall this far below the middle's share, within the noise of n clips
# clips per knob value: an edge sits where a share crosses the bar, and with 48 clips one clip moves a share by 2
# points; two blocks of 48 seeds gave the same range for 22 of 48 class-knobs (docs/runs/drums-v2)
LIMIT_CLIPS = 96
REACH_STEPS = (0.75, 0.5, 0.25, 0.0)  # a word that leaves its class is tried with its knobs this far out
REACH_SEEDS = 100_000  # the second block of seeds that confirms a word fails starts this far from the first
# the words of each knob's two ends that ``pair_reach`` combines ("short thin tom"): general words that set that
# knob alone, as far out as such words go (``timbre.WORD_KNOBS``)
PAIR_WORDS: dict[str, tuple[str, str]] = {"decay": ("short", "long"), "brightness": ("dark", "bright"),
                                          "weight": ("thin", "deep"), "punch": ("smooth", "punchy")}


@dataclass(frozen=True)
class Contrast:
    a: str  # prompt of side a
    b: str  # prompt of side b
    class_a: str
    class_b: str
    feature: str  # one of timbre.KNOBS
    real: str  # "keyword": real clips carrying word_a vs word_b; "knob": top vs bottom 30 % of the feature
    word_a: str = ""
    word_b: str = ""

    @property
    def name(self) -> str:
        return f"{self.a} vs {self.b}"


CONTRASTS: tuple[Contrast, ...] = (
    Contrast("808 kick", "acoustic kick", "kick", "kick", "weight", "keyword", "808", "acoustic"),
    Contrast("long kick", "short kick", "kick", "kick", "decay", "knob"),
    Contrast("bright snare", "dark snare", "snare", "snare", "brightness", "knob"),
    Contrast("low tom", "high tom", "tom", "tom", "weight", "keyword", "low", "high"),
    Contrast("open hat", "closed hat", "open_hat", "closed_hat", "decay", "class"),
    Contrast("punchy kick", "smooth kick", "kick", "kick", "punch", "knob"),
    Contrast("electro kick", "acoustic kick", "kick", "kick", "punch", "keyword", "electro", "acoustic"),
    Contrast("deep kick", "thin kick", "kick", "kick", "weight", "knob"),
    Contrast("long crash", "short crash", "crash", "crash", "decay", "knob"),
    Contrast("bright closed hat", "dark closed hat", "closed_hat", "closed_hat", "brightness", "knob"),
)

SWEEPS: tuple[tuple[str, str], ...] = (
    ("kick", "decay"), ("kick", "brightness"), ("kick", "weight"), ("kick", "punch"),
    ("snare", "decay"), ("snare", "brightness"), ("tom", "weight"), ("crash", "decay"),
)  # fmt: skip



def monotonic(medians: Sequence[float]) -> bool:
    """True if ``medians`` never fall and end above their start (ties allowed: a feature may sit at its limit)."""
    return bool(all(b >= a for a, b in zip(medians, medians[1:], strict=False)) and medians[-1] > medians[0])


def trend(values: Sequence[float], features: Sequence[np.ndarray]) -> dict[str, Any]:
    """How a sweep's feature follows its knob: Spearman's rho over every clip (knob value, feature), the one-sided
    Mann-Whitney p-value that the last value's features lie above the first's (``rise_p``; None without clips)
    and, for each step whose median falls, the one-sided p-value that the higher knob gives lower features."""
    from scipy.stats import mannwhitneyu, spearmanr

    x = np.concatenate([np.full(len(f), v, dtype=float) for v, f in zip(values, features, strict=True)])
    y = np.concatenate([np.asarray(f, dtype=float) for f in features])
    rho = float(spearmanr(x, y).statistic) if len(y) > 2 and np.ptp(y) > 0 else None
    first, last = np.asarray(features[0]), np.asarray(features[-1])
    rise_p = float(mannwhitneyu(last, first, alternative="greater").pvalue) if len(first) and len(last) else None
    falls = []
    for i in range(1, len(features)):
        lo, hi = np.asarray(features[i - 1]), np.asarray(features[i])
        if len(lo) and len(hi) and np.median(hi) < np.median(lo):
            p = float(mannwhitneyu(hi, lo, alternative="less").pvalue)
            falls.append({"from": float(values[i - 1]), "to": float(values[i]), "p": p})
    return {"spearman": rho, "rise_p": rise_p, "falls": falls}


def rises(sweep_trend: dict[str, Any], alpha: float = ALPHA) -> bool:
    """A sweep passes: it ends surely above its start and no step falls surely (``trend``'s p-values < alpha)."""
    rise_p = sweep_trend["rise_p"]
    return bool(rise_p is not None and rise_p < alpha and all(f["p"] >= alpha for f in sweep_trend["falls"]))


def feature_values(wavs: np.ndarray, feature: str, sample_rate: int, features: int = FEATURES) -> np.ndarray:
    """(N, T) clips -> (N,) feature values (log for decay and brightness), by the definitions of ``features``."""
    vals = np.array([measure(w, sample_rate, features)[feature] for w in wavs], dtype=np.float64)
    return np.log(np.maximum(vals, 1e-4)) if feature in LOG_FEATURES else vals


def cohens_d(a: np.ndarray, b: np.ndarray) -> float | None:
    """(mean a - mean b) / pooled standard deviation; None with fewer than 2 values a side."""
    if len(a) < 2 or len(b) < 2:
        return None
    pooled = np.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2))
    return float((a.mean() - b.mean()) / max(pooled, 1e-9))


def d_interval(d: float | None, n_a: int, n_b: int, z: float = 1.96) -> list[float] | None:
    """Approximate 95 % interval of Cohen's d from its large-sample standard error
    (sqrt((n_a + n_b) / (n_a n_b) + d^2 / (2 (n_a + n_b)))): how far ``d`` would move on other seeds."""
    if d is None or n_a < 2 or n_b < 2:
        return None
    se = float(np.sqrt((n_a + n_b) / (n_a * n_b) + d * d / (2 * (n_a + n_b))))
    return [d - z * se, d + z * se]


def real_groups(c: Contrast, wavs: np.ndarray, categories: Sequence[str], keywords: Sequence[Sequence[str]],
                sample_rate: int, features: int = FEATURES) -> tuple[np.ndarray, np.ndarray]:
    """The real clips standing for side a and side b of a contrast (feature values of each, by ``features``)."""
    cats = np.asarray(categories)
    if c.real == "class":
        return (feature_values(wavs[cats == c.class_a], c.feature, sample_rate, features),
                feature_values(wavs[cats == c.class_b], c.feature, sample_rate, features))
    idx = [int(i) for i in np.nonzero(cats == c.class_a)[0]]
    if c.real == "keyword":
        ia = [i for i in idx if c.word_a in keywords[i]]
        ib = [i for i in idx if c.word_b in keywords[i]]
        return feature_values(wavs[ia], c.feature, sample_rate, features), feature_values(wavs[ib], c.feature, sample_rate, features)
    vals = feature_values(wavs[idx], c.feature, sample_rate, features)
    lo, hi = np.quantile(vals, [0.3, 0.7]) if len(vals) else (0.0, 0.0)
    return vals[vals >= hi], vals[vals <= lo]


def model_features(generator: Any) -> int:
    """The timbre features version a model's knobs were trained on (its timbre.json; 1 when it does not say)."""
    return int(generator.bundle.timbre.get("features", 1))


def _scale(run: Any) -> float:
    """The guidance scale a one-prompt ``Generation`` was sampled with (filled in by the generator)."""
    assert run.params.cfg_scale is not None
    return float(run.params.cfg_scale)


def _judged(clf: Any, wavs: np.ndarray, category: str) -> float:
    """Share of ``wavs`` the classifier judges as ``category`` (through its class map: crash -> cymbal)."""
    from sampleforge.eval.classifier import embed_and_classify

    _, probs = embed_and_classify(clf, wavs)
    classes = list(clf.cfg.classes)
    target = clf.cfg.judged_class(category) or category
    return float(np.mean([classes[i] == target for i in probs.argmax(axis=1)]))


def check_descriptors(generator: Any, clf: Any, real_wavs: np.ndarray, real_categories: Sequence[str],
                      real_keywords: Sequence[Sequence[str]], n: int = 24, steps: int = 8,
                      sampler: str = "dpmpp_2m", cfg_scale: float | None = None, seed: int = 0,
                      contrasts: Sequence[Contrast] = CONTRASTS,
                      sweeps: Sequence[tuple[str, str]] = SWEEPS) -> dict[str, Any]:
    """Run every contrast and knob sweep; returns a JSON-able dict with per-item numbers and verdicts.
    ``cfg_scale`` None: each prompt with the model's own guidance (recorded per contrast and sweep)."""
    sr = generator.sample_rate
    version = model_features(generator)
    kw = dict(n=n, steps=steps, sampler=sampler, cfg_scale=cfg_scale, seed=seed)
    knob_names = set(generator.bundle.config.text.knobs)
    sweeps = [(category, knob) for category, knob in sweeps if knob in knob_names]
    bar = tqdm(total=2 * len(contrasts) + len(SWEEP_VALUES) * len(sweeps), desc="descriptor check", unit="prompt",
               file=sys.stderr, disable=None, leave=False)  # off without a terminal
    rows: list[dict[str, Any]] = []
    used_scales: set[float] = set()
    for c in contrasts:
        run_a, run_b = generator.generate_full(c.a, **kw), generator.generate_full(c.b, **kw)
        ga, gb = run_a.audio.numpy(), run_b.audio.numpy()
        used_scales |= {_scale(run_a), _scale(run_b)}
        bar.update(2)
        fa, fb = feature_values(ga, c.feature, sr, version), feature_values(gb, c.feature, sr, version)
        ra, rb = real_groups(c, real_wavs, real_categories, real_keywords, sr, version)
        d_gen, d_real = cohens_d(fa, fb), cohens_d(ra, rb)
        adh_a, adh_b = _judged(clf, ga, c.class_a), _judged(clf, gb, c.class_b)
        ok = (d_gen is not None and d_real is not None and np.sign(d_gen) == np.sign(d_real)
              and abs(d_gen) >= MIN_D and min(adh_a, adh_b) >= MIN_ADHERENCE)
        rows.append({"contrast": c.name, "feature": c.feature, "real_basis": c.real, "d": d_gen,
                     "d_interval": d_interval(d_gen, len(fa), len(fb)), "real_d": d_real,
                     "real_n": [len(ra), len(rb)], "adherence": [adh_a, adh_b],
                     "cfg_scale": [_scale(run_a), _scale(run_b)], "passed": bool(ok)})
    sweep_rows = []
    for category, knob in sweeps:
        feats, scales = [], set()
        for v in SWEEP_VALUES:
            run = generator.generate_full(CATEGORY_PROMPTS[category], **{knob: v}, **kw)
            feats.append(feature_values(run.audio.numpy(), knob, sr, version))
            scales.add(_scale(run))
            bar.update(1)
        medians = [float(np.median(f)) for f in feats]
        how = trend(SWEEP_VALUES, feats)
        sweep_rows.append({"class": category, "knob": knob, "values": list(SWEEP_VALUES), "medians": medians,
                           "rises": rises(how), "monotonic": monotonic(medians), **how,
                           "cfg_scale": next(iter(scales)) if len(scales) == 1 else sorted(scales)})
        used_scales |= scales
    bar.close()
    used = sorted(used_scales)
    settings = {**kw, "cfg_scale": used[0] if len(used) == 1 else used}  # as sampled (per item above)
    return {"contrasts": rows, "passed": sum(r["passed"] for r in rows), "total": len(rows),
            "sweeps": sweep_rows, "sweeps_rising": sum(w["rises"] for w in sweep_rows), "alpha": ALPHA,
            "settings": settings, "knobs": list(KNOBS), "features": version}


def surely_below(share: float, middle: float, n: int, n_middle: int | None = None) -> bool:
    """Whether a share of ``n`` clips is surely below the ``middle``'s share (of ``n_middle`` clips, default ``n``):
    one-sided Fisher exact test, p < ALPHA."""
    from scipy.stats import fisher_exact

    m = n if n_middle is None else n_middle
    got, mid = round(share * n), round(middle * m)
    return bool(fisher_exact([[got, n - got], [mid, m - mid]], alternative="less").pvalue < ALPHA)


def surely_under(share: float, bar: float, n: int) -> bool:
    """Whether a share of ``n`` clips is surely under ``bar``: one-sided binomial test, p < ALPHA (43 of 48 is not
    surely under 90 %, 36 of 48 is)."""
    from scipy.stats import binomtest

    return bool(binomtest(round(share * n), n, bar, alternative="less").pvalue < ALPHA)


def holding_range(values: Sequence[float], judged: Sequence[float], bar: float,
                  n: int | None = None) -> tuple[float, float]:
    """The range of knob ``values`` (ascending) around the one nearest 0.5 whose ``judged`` shares hold: on each
    side up to the value before the first that fails, plus the part of the step to it over which the straight
    line between their shares stays >= ``bar``; a side that holds to the last value measured is open to the end
    of the knob (0 or 1). A value fails when its share is below ``bar`` and, with ``n`` (clips per share), surely
    below the middle's (one-sided Fisher exact test, p < ALPHA): 42 of 48 against 46 is noise, 40 against 48 is
    not. The value nearest 0.5 is always in."""
    v, r = np.asarray(values, dtype=float), np.asarray(judged, dtype=float)
    mid = int(np.argmin(np.abs(v - 0.5)))

    def fails(k: int) -> bool:
        return r[k] < bar and (n is None or surely_below(float(r[k]), float(r[mid]), n))

    def edge(step: int) -> float:
        i = mid
        while 0 <= i + step < len(v) and not fails(i + step):
            i += step
        j = i + step
        if not 0 <= j < len(v):  # held to the last value measured: nothing says where it would fail
            return 0.0 if step < 0 else 1.0
        if r[i] < bar:  # the last value that holds is below the bar itself (within the noise, or the middle)
            return float(v[i])
        return float(v[i] + (v[j] - v[i]) * (r[i] - bar) / (r[i] - r[j]))

    return round(edge(-1), 2), round(edge(1), 2)


def limits_from_judged(values: Sequence[float], judged: Mapping[str, Mapping[str, Sequence[float]]], n: int
                       ) -> tuple[dict[str, dict[str, list[float]]], dict[str, dict[str, float]], list[str]]:
    """``judged`` (class -> knob -> the share of ``n`` clips judged the class at each of ``values``) -> (the ranges: class -> knob
    -> [low, high], the bar each was cut at, and the "class.knob" left unlimited because the judge is unsure of the
    class at the knob's middle); the rules are the module docstring's."""
    mid = int(np.argmin(np.abs(np.asarray(values, dtype=float) - 0.5)))
    limits: dict[str, dict[str, list[float]]] = {}
    bars: dict[str, dict[str, float]] = {}
    unlimited: list[str] = []
    for category, knobs in judged.items():
        for knob, shares in knobs.items():
            if shares[mid] < LIMIT_ADHERENCE:
                unlimited.append(f"{category}.{knob}")
                continue
            need = round(min(LIMIT_ADHERENCE, shares[mid] - LIMIT_SLACK), 4)
            limits.setdefault(category, {})[knob] = list(holding_range(values, shares, need, n))
            bars.setdefault(category, {})[knob] = need
    return limits, bars, unlimited


def knob_limits(generator: Any, clf: Any, n: int = LIMIT_CLIPS, steps: int = 8, sampler: str = "dpmpp_2m",
                cfg_scale: float | None = None, seed: int = 0, classes: Sequence[str] | None = None,
                values: Sequence[float] = LIMIT_VALUES) -> dict[str, Any]:
    """For each class and timbre knob of the model, the share of ``n`` clips judged the class at each knob value,
    and the ranges ``limits_from_judged`` draws from them (module docstring). Returns a JSON-able dict:
    ``knob_limits`` (class -> knob -> [low, high], what a model's timbre.json holds), ``judged``, ``bars``,
    ``unlimited`` and the settings."""
    knobs = list(generator.bundle.config.text.knobs)
    if not knobs:
        raise ValueError("this model has no timbre knobs")
    classes = list(classes or CATEGORY_PROMPTS)
    kw = dict(n=n, steps=steps, sampler=sampler, cfg_scale=cfg_scale, seed=seed)
    bar = tqdm(total=len(classes) * len(knobs) * len(values), desc="knob limits", unit="prompt", file=sys.stderr,
               disable=None, leave=False)
    judged: dict[str, dict[str, list[float]]] = {}
    scales: set[float] = set()
    for category in classes:
        for knob in knobs:
            shares = []
            for v in values:
                run = generator.generate_full(CATEGORY_PROMPTS[category], **{knob: v}, **kw)
                shares.append(round(_judged(clf, run.audio.numpy(), category), 4))
                scales.add(_scale(run))
                bar.update(1)
            judged.setdefault(category, {})[knob] = shares
    bar.close()
    limits, bars, unlimited = limits_from_judged(values, judged, n)
    used = sorted(scales)
    return {"knob_limits": limits, "judged": judged, "bars": bars, "unlimited": unlimited, "values": list(values),
            "adherence": LIMIT_ADHERENCE, "slack": LIMIT_SLACK,
            "settings": {**kw, "cfg_scale": used[0] if len(used) == 1 else used}}


def word_reach(generator: Any, clf: Any, n: int = 48, steps: int = 8, sampler: str = "dpmpp_2m",
               cfg_scale: float | None = None, seed: int = 0, classes: Sequence[str] | None = None,
               reaches: Sequence[float] = REACH_STEPS) -> dict[str, Any]:
    """Does each word that sets a timbre knob of a class keep the class? The knob limits hold one knob at a time;
    a word that sets several ("low" for a cowbell: short, heavy and punchy) can leave the class with each within
    its range, and a word that also reaches the model as a keyword can leave it by itself.

    For each class and each word that sets one of its knobs (``timbre.WORD_KNOBS`` and the model's own words of
    the class), the prompt "WORD CLASS" is generated as a user would get it (but for a word reach the model has
already) and judged against the class prompt
    alone (``_reaches``: the rule that says a prompt fails, and how far its knobs may go instead). Its reach is
    how far the word may move all its knobs together (0: the word leaves its knobs at the middle for the class;
    None: the word itself, as a keyword, leaves the class). Returns a JSON-able dict: ``word_reach`` (class ->
    word -> reach or None, for the failing words, what a model's timbre.json holds), ``judged`` (per class: the
    class prompt's share and each word's) and the settings."""
    from sampleforge.text.keywords import classes_named, keywords

    if not generator.bundle.config.text.knobs:
        raise ValueError("this model has no timbre knobs")
    tasks: list[tuple[str, str, str, dict[str, float], list[str]]] = []
    for category in classes or CATEGORY_PROMPTS:
        own = generator.bundle.class_words.get(category, {})
        for word in sorted(set(WORD_KNOBS) | set(own)):
            prompt = f"{word} {CATEGORY_PROMPTS[category]}"
            knobs = generator.knob_values(prompt, word_reach=False, pair_reach=False)  # measured from the words' own
            if knobs and classes_named(keywords(prompt)) == [category]:
                tasks.append((category, word, prompt, knobs, list(knobs)))
    result = _reaches(generator, clf, tasks, "word reach", n=n, steps=steps, sampler=sampler, cfg_scale=cfg_scale,
                      seed=seed, classes=classes, reaches=reaches)
    for row in result["judged"].values():
        row["words"] = row.pop("prompts")
    return {"word_reach": result.pop("reach"), **result}


def pair_reach(generator: Any, clf: Any, n: int = 48, steps: int = 8, sampler: str = "dpmpp_2m",
               cfg_scale: float | None = None, seed: int = 0, classes: Sequence[str] | None = None,
               reaches: Sequence[float] = REACH_STEPS, class_words: bool = False, three_words: bool = False,
               words: Sequence[str] | None = None) -> dict[str, Any]:
    """Do two words that set two different knobs keep the class together? Each word alone may keep it ("short
    tom", "thin tom") while both move the sound where the class is not ("short thin tom").

    For each class, each two of the model's knobs and each corner of them (both low, low and high, ...), the
    prompt of the two ``PAIR_WORDS`` of that corner ("short thin tom") is generated as a user would get it (each
    word within its knob limits and word reach; but for a pair reach the model has already) and judged against the
    class prompt alone, by the rule of ``_reaches``; a pair with a word the model's ``word_reach`` says leaves the
    class by itself is left out.
    The reach of a failing corner is how far its two knobs may go together, toward the middle
    (``timbre.knobs_from_words`` applies it to any two words that set the two knobs that way). Returns a
    JSON-able dict: ``pair_reach`` (class -> corner -> reach or None, for the failing corners, what a model's
    timbre.json holds), ``judged`` (per class: the class prompt's share and each pair's) and the settings.

    With ``class_words``, the pairs are instead each word the model measured for a class (``class_words``: "808"
    for a kick, "high" for a tom), which also reaches the model as a keyword, and each keyword of the class that sets
    no knob (``class_keywords``: "soft" for a snare), with each ``PAIR_WORDS`` word of a knob it does not set
    ("bright high tom", "long soft snare"); a pair's name is the word and the other's knob end (``word_end``:
    "high+brightness:high"), which generation reads before the corner. A pair that keeps the class with its knobs
    where the words put them gets the reach 1, so that the corners do not move it, where their move is surely
    worse (``held_against_corners``).

    With ``three_words``, the prompts are instead those of three ``PAIR_WORDS`` for each three knobs and each
    corner of them ("long bright punchy kick"), with the knobs where the pair reaches put them; a failing corner's
    reach moves the three further."""
    from sampleforge.text.keywords import classes_named, keywords

    names = [k for k in KNOBS if k in generator.bundle.config.text.knobs]
    if not names:
        raise ValueError("this model has no timbre knobs")
    if class_words:
        return _class_word_pair_reach(generator, clf, names, n=n, steps=steps, sampler=sampler, cfg_scale=cfg_scale,
                                      seed=seed, classes=classes, reaches=reaches, words=words)
    if words is not None:
        raise ValueError("words: only the class-word measurement takes a choice of words")
    size = 3 if three_words else 2
    tasks: list[tuple[str, str, str, dict[str, float], list[str]]] = []
    for category in classes or CATEGORY_PROMPTS:
        leaving = {w for w, f in generator.bundle.word_reach.get(category, {}).items() if f is None}
        own = generator.bundle.class_words.get(category, {})  # a word measured for the class sets other knobs
        for together in itertools.combinations(names, size):
            for chosen in itertools.product(*(PAIR_WORDS[k] for k in together)):
                prompt = " ".join([*chosen, CATEGORY_PROMPTS[category]])
                # from where a user's prompt has them, but for what is measured here
                knobs = generator.knob_values(prompt, pair_reach=three_words, three_words=False)
                if set(chosen) & (leaving | set(own)) or classes_named(keywords(prompt)) != [category]:
                    continue
                where = corner({k: knobs[k] for k in together}) if set(together) <= set(knobs) else None
                if where is not None:
                    tasks.append((category, where, prompt, knobs, list(together)))
    result = _reaches(generator, clf, tasks, "pair reach", n=n, steps=steps, sampler=sampler, cfg_scale=cfg_scale,
                      seed=seed, classes=classes, reaches=reaches)
    for row in result["judged"].values():
        row["pairs"] = row.pop("prompts")
    return {"pair_reach": result.pop("reach"), "words": {k: list(v) for k, v in PAIR_WORDS.items()}, **result}


def keyword_reach(generator: Any, clf: Any, n: int = 48, steps: int = 8, sampler: str = "dpmpp_2m",
                  cfg_scale: float | None = None, seed: int = 0, classes: Sequence[str] | None = None,
                  reaches: Sequence[float] = REACH_STEPS, words: Sequence[str] | None = None) -> dict[str, Any]:
    """Does each keyword keep the class by itself? A keyword that sets no knob of a class reaches the model as it
    is, and where few clips of the class carry it, it carries another class's sound ("808 snare", "909 clap").

    For each class and each keyword of the model's vocabulary (``words``: only these) that reaches the model in the
    prompt "WORD CLASS" and sets none of its knobs, or sets them but leaves the class whatever they are (a None
    ``word_reach``), the prompt is generated as a user would get it, with the keyword at full strength, and judged
    against the class prompt alone by the rule of ``_reaches``. A failing keyword is tried with part of its
    conditioning (``timbre.keyword_weight``: 3/4, 1/2, 1/4, none), and the first weight that holds is its reach
    (None: not even without the keyword). Returns a JSON-able dict: ``keyword_reach`` (class -> word -> weight or
    None, for the failing keywords, what a model's timbre.json holds), ``judged`` (per class: the class prompt's
    share and each keyword's) and the settings."""
    from sampleforge.text.keywords import classes_named, keywords

    b = generator.bundle
    tasks: list[tuple[str, str, str, dict[str, float], list[str]]] = []
    for category in classes or CATEGORY_PROMPTS:
        leaving = {w for w, f in b.word_reach.get(category, {}).items() if f is None}
        for word in sorted(b.vocab.counts):
            prompt = f"{word} {CATEGORY_PROMPTS[category]}"
            if (words is not None and word not in words) or word in CATEGORY_PROMPTS[category].split() \
                    or classes_named(keywords(prompt)) != [category] \
                    or word not in generator.model_words(prompt).split():
                continue
            knobs = generator.knob_values(prompt)
            if not knobs or word in leaving:
                tasks.append((category, word, prompt, knobs, []))
    with generator.with_timbre(keyword_reach={}):  # each keyword at full strength, but for the weight tried
        result = _reaches(generator, clf, tasks, "keyword reach", n=n, steps=steps, sampler=sampler,
                          cfg_scale=cfg_scale, seed=seed, classes=classes, reaches=reaches, weigh=True)
    for row in result["judged"].values():
        row["words"] = row.pop("prompts")
    return {"keyword_reach": result.pop("reach"), **result}


def _class_word_pair_reach(generator: Any, clf: Any, names: Sequence[str], classes: Sequence[str] | None,
                           words: Sequence[str] | None, **kw: Any) -> dict[str, Any]:
    """``pair_reach(class_words=True)`` on the model's knobs ``names``; ``words``: only those of each class."""
    from sampleforge.text.keywords import classes_named, keywords

    tasks: list[tuple[str, str, str, dict[str, float], list[str]]] = []
    for category in classes or CATEGORY_PROMPTS:
        leaving = {w for w, f in generator.bundle.word_reach.get(category, {}).items() if f is None}
        measured = generator.bundle.class_words.get(category, {})
        for word, own in sorted({**class_keywords(generator, category), **measured}.items()):
            if word in leaving or (words is not None and word not in words):
                continue
            for knob in (k for k in names if k not in own):
                for general in PAIR_WORDS[knob]:
                    prompt = f"{general} {word} {CATEGORY_PROMPTS[category]}"
                    knobs = generator.knob_values(prompt, pair_reach=False)
                    mine = [k for k in own if k in knobs and knobs[k] != 0.5]
                    # left out: a general word that leaves the class, or that the class measured for itself (it
                    # sets other knobs); a prompt naming two classes; knobs the limits and reaches put at the middle
                    if general in leaving or general in measured or classes_named(keywords(prompt)) != [category] \
                            or (own and not mine) or knobs.get(knob, 0.5) == 0.5:
                        continue
                    tasks.append((category, word_end(word, knob, knobs[knob]), prompt, knobs, list(knobs)))
    result = _reaches(generator, clf, tasks, "class-word pair reach", classes=classes, **kw)
    reach = result.pop("reach")
    for row in result["judged"].values():
        row["pairs"] = row.pop("prompts")
    for category, held in held_against_corners(generator, clf, result["judged"], **kw).items():
        reach.setdefault(category, {}).update(held)
    return {"pair_reach": reach, "words": {k: list(v) for k, v in PAIR_WORDS.items()}, "class_words": True, **result}


def class_keywords(generator: Any, category: str) -> dict[str, dict[str, float]]:
    """The words that reach the model as keywords of ``category`` and set no knob: carried by at least
    ``KEYWORD_MIN_CLIPS`` of its training clips, neither a knob word nor one the model measured for the class, nor a
    word of the class prompt ("soft" for a snare) -> {} (no knobs), for the class-word measurement."""
    from sampleforge.timbre import KEYWORD_MIN_CLIPS

    b = generator.bundle
    skip = set(WORD_KNOBS) | set(b.class_words.get(category, {})) | set(CATEGORY_PROMPTS[category].split())
    return {w: {} for w, counts in sorted(b.vocab.classes.items())
            if counts.get(category, 0) >= KEYWORD_MIN_CLIPS and w not in skip}


def _block_share(generator: Any, clf: Any, prompt: str, category: str, knobs: Mapping[str, float], seed: int,
                 settings: Mapping[str, Any]) -> tuple[float, float]:
    """One block of a reach measurement: ``prompt`` with ``knobs`` from ``seed`` -> (the share of its clips judged
    ``category``, the guidance scale it was sampled with)."""
    run = generator.generate_full(prompt, **knobs, **settings, seed=seed)
    return _judged(clf, run.audio.numpy(), category), _scale(run)


def held_against_corners(generator: Any, clf: Any, judged: Mapping[str, Any], n: int, steps: int, sampler: str,
                         cfg_scale: float | None, seed: int, **_: Any) -> dict[str, dict[str, float]]:
    """The class-word pairs of a ``pair_reach(class_words=True)`` measurement (its ``judged`` rows, updated here)
    that keep their class with their knobs where the words put them, and that the model's corners of their knobs
    (``bundle.pair_reach`` without the class-word pairs) would move surely lower: judged with the corners' move on
    the same seeds, surely under the words' own knobs (``surely_below``) on ``n`` clips and again on ``2n``. Each gets
    the reach 1, so that the corners do not move it: class -> name -> 1.0. A pair the corners move without such
    evidence keeps their move (a pair that merely holds on one block is not shown to hold better)."""
    corners = {c: {k: v for k, v in e.items() if not is_word_end(k)} for c, e in generator.bundle.pair_reach.items()}
    kw = dict(n=n, steps=steps, sampler=sampler, cfg_scale=cfg_scale)

    def share(prompt: str, category: str, knobs: Mapping[str, float], block: int) -> float:
        return _block_share(generator, clf, prompt, category, knobs, seed + block * REACH_SEEDS, kw)[0]

    out: dict[str, dict[str, float]] = {}
    for category, row in judged.items():
        for name, pair in row["pairs"].items():
            prompt = pair["prompt"]
            knobs, moved = (generator.knob_values(prompt, pair_reach=table) for table in (False, corners))
            if "tried" in pair or moved == knobs:
                continue
            first = share(prompt, category, moved, 0)
            pair["with_corners"] = {"knobs": {k: round(v, 3) for k, v in moved.items()}, "judged": round(first, 4)}
            if not surely_below(first, pair["judged"], n):
                continue
            words_2n = pair.setdefault("judged_2n", round((pair["judged"] + share(prompt, category, knobs, 1)) / 2, 4))
            both = (first + share(prompt, category, moved, 1)) / 2
            pair["with_corners"]["judged_2n"] = round(both, 4)
            if surely_below(both, words_2n, 2 * n):
                out.setdefault(category, {})[name] = pair["reach"] = 1.0
    return out


def _reaches(generator: Any, clf: Any, tasks: Sequence[tuple[str, str, str, dict[str, float], list[str]]], desc: str,
             n: int, steps: int, sampler: str, cfg_scale: float | None, seed: int, classes: Sequence[str] | None,
             reaches: Sequence[float], weigh: bool = False) -> dict[str, Any]:
    """Judge each task (class, name, prompt, its knob values, the knobs to move back) against the class prompt
    alone, on the same seeds. Where the judge knows the class (at least ``LIMIT_ADHERENCE`` of the class prompt's
    clips; on ``2n`` clips when ``n`` leave it short by no more than their noise, ``surely_under``), a prompt fails when its share is below the bar of the knob limits and surely below the class prompt's
    (``surely_below``), on ``n`` clips and again on those and ``n`` more (seeds ``seed + REACH_SEEDS``...). A
    failing prompt is tried again with the knobs named moved toward the middle (0.5) to each of ``reaches`` of
    their distance from it (``timbre.toward_middle``, as generation moves them), or, with ``weigh``, with the
    keyword ``name`` given each of ``reaches`` of its conditioning (the model's ``keyword_reach``); its reach is
    the first that holds (None: none holds). Returns ``reach`` (class -> name -> reach, for the failing prompts),
    ``judged`` (per class: ``class_prompt``, and ``prompts``: name -> its prompt, knobs, share, and for a failing
    one its share on 2n clips, ``tried`` and ``reach``) and the settings."""
    classes = list(classes or CATEGORY_PROMPTS)
    kw = dict(n=n, steps=steps, sampler=sampler, cfg_scale=cfg_scale)
    bar = tqdm(total=len(classes) + len(tasks), desc=desc, unit="prompt", file=sys.stderr, disable=None, leave=False)
    scales: set[float] = set()

    def share(prompt: str, category: str, knobs: Mapping[str, float], block: int) -> float:
        judged, scale = _block_share(generator, clf, prompt, category, knobs, seed + block * REACH_SEEDS, kw)
        scales.add(scale)
        return judged

    def pooled(prompt: str, category: str, knobs: Mapping[str, float], first: float) -> float:
        return (first + share(prompt, category, knobs, 1)) / 2

    judged: dict[str, dict[str, Any]] = {}
    base: dict[str, list[float]] = {}  # class -> [share on n clips, share on 2n] (the second when needed)
    known: dict[str, float] = {}  # class -> the class prompt's share the gate and the bar are set by
    for category in classes:
        first = share(CATEGORY_PROMPTS[category], category, {}, 0)
        base[category] = [first]
        if first < LIMIT_ADHERENCE and not surely_under(first, LIMIT_ADHERENCE, n):  # short by the noise of n
            base[category].append(pooled(CATEGORY_PROMPTS[category], category, {}, first))
        known[category] = base[category][-1]
        judged[category] = {"class_prompt": round(first, 4), "prompts": {}}
        bar.update(1)
    reach: dict[str, dict[str, float | None]] = {}
    for category, name, prompt, knobs, movable in tasks:
        first = share(prompt, category, knobs, 0)
        row: dict[str, Any] = {"prompt": prompt, "knobs": {k: round(v, 3) for k, v in knobs.items()},
                               "judged": round(first, 4)}
        middle = base[category]
        need = round(min(LIMIT_ADHERENCE, known[category] - LIMIT_SLACK), 4)
        if known[category] >= LIMIT_ADHERENCE and first < need and surely_below(first, middle[0], n):
            if len(middle) == 1:
                middle.append(pooled(CATEGORY_PROMPTS[category], category, {}, middle[0]))
            both = pooled(prompt, category, knobs, first)
            row["judged_2n"] = round(both, 4)
            if both < need and surely_below(both, middle[1], 2 * n):
                row["tried"] = {}
                found = None
                for f in reaches:
                    moved = {k: toward_middle(v, f) if k in movable else v for k, v in knobs.items()}
                    with generator.with_timbre(keyword_reach={category: {name: f}}) if weigh \
                            else contextlib.nullcontext():
                        s = pooled(prompt, category, moved, share(prompt, category, moved, 0))
                    row["tried"][str(f)] = round(s, 4)
                    if not (s < need and surely_below(s, middle[1], 2 * n)):
                        found = f
                        break
                row["reach"] = found
                reach.setdefault(category, {})[name] = found
        judged[category]["prompts"][name] = row
        bar.update(1)
    bar.close()
    for category, middle in base.items():
        if len(middle) == 2:
            judged[category]["class_prompt_2n"] = round(middle[1], 4)
    used = sorted(scales)
    return {"reach": reach, "judged": judged, "adherence": LIMIT_ADHERENCE, "slack": LIMIT_SLACK,
            "reaches": list(reaches), "settings": {**kw, "seed": seed, "second_block_seed": seed + REACH_SEEDS,
                                                   "cfg_scale": used[0] if len(used) == 1 else used}}
