"""What the ``candidates`` setting does to keywords a model holds back ("808 snare"): the model's own blend against N
candidates a clip, judged by the drum judges that choose the candidates and by any other judge given.

For each entry (class, keyword), on the same seeds: the class prompt alone ("snare"), the keyword at full strength
("808 snare", nothing held back), the model's own blend, and the blend with ``candidates``. Each is judged by every
judge (the share heard as the class), and the part of the keyword each keeps is measured in the first judge's
embedding: the move of the clips' centroid from the class prompt's, projected on the full keyword's move (0: the
class prompt's sound, 1: the keyword's whole).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from sampleforge.errors import UserInputError
from sampleforge.taxonomy import CATEGORY_PROMPTS


def held_back(generator: Any, classes: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """The (class, keyword) entries the model's ``keyword_reach`` gives part of their conditioning (a weight under 1;
    None, a keyword that leaves the class even without it, holds nothing back), class by class."""
    out = []
    for category, words in generator.bundle.keyword_reach.items():
        if classes is None or category in classes:
            out += [(category, w) for w, f in sorted(words.items()) if f is not None and f < 1.0]
    return out


def parse_entries(texts: Sequence[str]) -> list[tuple[str, str]]:
    """``CLASS:WORD`` texts ("snare:808", "closed_hat:jazz") → (class, word) entries."""
    out = []
    for text in texts:
        category, _, word = text.partition(":")
        if category not in CATEGORY_PROMPTS or not word.strip():
            raise UserInputError(f"--entries: {text!r} is not CLASS:WORD with a class of "
                                 f"{', '.join(CATEGORY_PROMPTS)} (e.g. snare:808)")
        out.append((category, word.strip()))
    return out


def keyword_kept(emb: np.ndarray, class_emb: np.ndarray, full_emb: np.ndarray) -> float:
    """The part of a keyword clips keep: their embedding centroid's move from the class prompt's clips, projected on
    the move of the keyword at full strength (1: all of it, 0: none)."""
    d = full_emb.mean(0) - class_emb.mean(0)
    return float((emb.mean(0) - class_emb.mean(0)) @ d / max(float(d @ d), 1e-12))


def measure_candidates(generator: Any, entries: Sequence[tuple[str, str]], judges: Mapping[str, Any], n: int = 48,
                       candidates: int = 4, steps: int = 8, sampler: str = "dpmpp_2m",
                       cfg_scale: float | None = None, seed: int = 0) -> dict[str, Any]:
    """The blend against ``candidates`` for each entry (``judges``: name → classifier; the first one's embedding
    measures the keyword kept). Returns a JSON-able dict: per entry the share each judge hears as the class and the
    keyword kept, for the full keyword, the blend and the candidates, and how many clips kept candidate 0, 1, ...
    or none; the means over the entries; the settings."""
    from sampleforge.eval.classifier import embed_and_classify

    if not judges:
        raise UserInputError("no judge to measure candidates with")
    names = list(judges)
    run = {"n": n, "seed": seed, "steps": steps, "sampler": sampler,
           **({} if cfg_scale is None else {"cfg_scale": cfg_scale})}

    def judged(wavs: np.ndarray, category: str) -> tuple[dict[str, float], np.ndarray]:
        heard, emb = {}, np.zeros(0)
        for name, clf in judges.items():
            e, probs = embed_and_classify(clf, wavs)
            target = clf.cfg.judged_class(category) or category
            heard[name] = round(float(np.mean([clf.cfg.classes[i] == target for i in probs.argmax(1)])), 4)
            emb = e if name == names[0] else emb
        return heard, emb

    rows = []
    bar = tqdm(total=len(entries), desc="candidates", unit="entry", file=sys.stderr, disable=None, leave=False)
    for category, word in entries:
        prompt = f"{word} {CATEGORY_PROMPTS[category]}"
        _, class_emb = judged(generator.generate_full(CATEGORY_PROMPTS[category], **run).audio.numpy(), category)
        with generator.with_timbre(keyword_reach={}):
            full = generator.generate_full(prompt, **run)
        blend = generator.generate_full(prompt, **run)
        chosen = generator.generate_full(prompt, candidates=candidates, **run)
        row: dict[str, Any] = {"class": category, "word": word, "prompt": prompt}
        full_heard, full_emb = judged(full.audio.numpy(), category)
        for key, g in (("full", full), ("blend", blend), ("candidates", chosen)):
            heard, emb = (full_heard, full_emb) if key == "full" else judged(g.audio.numpy(), category)
            row[key] = {"judged": heard, "keyword_kept": round(keyword_kept(emb, class_emb, full_emb), 4)}
        kept = chosen.candidates or []
        row["kept_at"] = [sum(1 for j in kept if j == k) for k in range(candidates)] + [sum(j is None for j in kept)]
        rows.append(row)
        bar.update(1)
    bar.close()
    means = {key: {**{f"judged_{name}": round(float(np.mean([r[key]["judged"][name] for r in rows])), 4)
                      for name in names},
                   "keyword_kept_median": round(float(np.median([r[key]["keyword_kept"] for r in rows])), 4),
                   "keyword_kept_mean": round(float(np.mean([r[key]["keyword_kept"] for r in rows])), 4)}
             for key in ("full", "blend", "candidates")} if rows else {}
    return {"entries": rows, "means": means, "judges": names, "candidates": candidates, "clips": n,
            "seeds": f"{seed}-{seed + n - 1}", "steps": steps, "sampler": sampler, "cfg_scale": cfg_scale}
