"""CLI: ``sampleforge eval [train-classifier | score-classifier]``, ``sweep``, ``doctor``, ``inspect``."""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

from sampleforge.errors import UserInputError
from sampleforge.locations import DEFAULT_MODEL
from sampleforge.params import (
    SPECS,
    GenerationParams,
    add_arguments,
    from_namespace,
    int_at_least,
    parse_list,
)

SWEEP_BASE = GenerationParams(seed=0)  # every cell uses the same seed, so cells differ only by their settings


def register(sub: Any) -> None:
    _register_eval(sub)
    _register_sweep(sub)
    _register_doctor(sub)
    _register_inspect(sub)


# ----------------------------------------------------------------------------------------------- eval


def add_train_classifier_arguments(p: argparse.ArgumentParser) -> None:
    """``eval train-classifier``'s flags."""
    from sampleforge.eval.settings import CLASSIFIER_OUT, ClassifierTraining

    _classifier_data_arguments(p)
    p.add_argument("--out", type=Path, default=CLASSIFIER_OUT,
                   help=f"output folder (default: {CLASSIFIER_OUT}; the shipped judge: weights/classifier-v2)")
    p.add_argument("--epochs", type=int, default=ClassifierTraining.epochs)
    p.add_argument("--samples-per-epoch", type=int, default=ClassifierTraining.samples_per_epoch)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cv-folds", type=int_at_least(0), default=0, help="also estimate accuracy by kit-grouped K-fold CV")
    p.add_argument("--compare", nargs="+", type=Path, default=[],
                   help="other classifier folders scored on the same held-out clips, in the card's table")


def _classifier_data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", nargs="+", type=Path, default=None, help="drum folders (default: the Hydrogen kits)")
    p.add_argument("--held-out", nargs="+", default=None, help="held-out kit names (default: the corpus default)")
    p.add_argument("--config", type=Path, default=None,
                   help="training recipe (e.g. configs/drums-v2.json) whose data.held_out_kits are held out")


def _run_train_classifier(args: argparse.Namespace) -> int:
    from sampleforge.eval import classifier_train

    return classifier_train.run(args)


def _run_score_classifier(args: argparse.Namespace) -> int:
    from sampleforge.eval import classifier_train

    return classifier_train.run_score(args)


def _register_eval(sub: Any) -> None:
    from sampleforge.eval.settings import CLASSIFIER_NAME, EVAL_GENERATION, LISTEN_VOCODER, EvalSettings

    judge_help = f"classifier folder (default: weights/{CLASSIFIER_NAME})"

    p = sub.add_parser("eval", help="measure a model against real drum recordings (JSON + HTML report)",
                       description="Generate N clips per class prompt and report class adherence, Fréchet "
                       "distances (with the real-vs-real floor), clipping, NaN, loudness, onsets, diversity, "
                       "memorisation and a vocoder check. `sampleforge eval train-classifier` rebuilds the judge.")
    p.add_argument("--model", help="model folder or shipped name (e.g. drums-v1)")
    p.add_argument("--reference", nargs="+", type=Path, help="folders of real drum clips (e.g. the Hydrogen kits)")
    p.add_argument("--per-class", type=int, default=EvalSettings.per_class, help="clips generated per class")
    p.add_argument("--classes", nargs="+", default=list(EvalSettings.classes), help="taxonomy classes to prompt")
    add_arguments(p, ("steps", "cfg_scale", "sampler", "seed", "precision", "eta", "steps_offset", "flow_shift"),
                  base=EVAL_GENERATION)
    p.add_argument("--vocoder-clips", type=int_at_least(0), default=EvalSettings.vocoder_clips,
                   help="real clips re-synthesised for the vocoder check (0: skip)")
    p.add_argument("--held-out-kits", nargs="+", default=None, help="reference kits (default: the corpus held-out kits)")
    p.add_argument("--config", type=Path, default=None,
                   help="a training recipe whose data.held_out_kits are the reference kits (e.g. configs/drums-v2.json)")
    p.add_argument("--classifier", type=Path, default=None, help=judge_help)
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: runs/eval/<model>)")
    p.set_defaults(func=_run_eval, eval_flags_taking_lists=("reference", "classes", "held_out_kits"))
    eval_sub = p.add_subparsers(dest="eval_command", metavar="SUBCOMMAND", action=_EvalSubcommands)
    t = eval_sub.add_parser("train-classifier", help="train the judge of `sampleforge eval` on real drum kits",
                            description="Train the drum classifier on real recordings with whole kits held out; the "
                            "card reports per-class held-out accuracy (95 % Wilson intervals), next to any --compare "
                            "classifier scored on the same clips. `make train-classifier` gives the data and held-out kits of "
                            "drums-v2: --data /usr/share/hydrogen/data/drumkits runs/debian-drums --config "
                            "configs/drums-v2.json --out weights/classifier-v2.")
    add_train_classifier_arguments(t)
    t.set_defaults(func=_run_train_classifier)
    sc = eval_sub.add_parser("score-classifier", help="score classifier folders on the held-out kits' real clips",
                            description="Per-class accuracy (95 % Wilson intervals) of one or more drum classifiers "
                            "on the same held-out real clips; no training.")
    sc.add_argument("--classifier", nargs="+", type=Path, required=True, help="classifier folders to score")
    _classifier_data_arguments(sc)
    sc.set_defaults(func=_run_score_classifier)
    d = eval_sub.add_parser("descriptors", help="do prompt words and timbre knobs move the sound? (contrasts, sweeps)",
                            description="Generate each contrast's two prompts with the same seeds, measure the "
                            "feature each contrast is about and compare its effect size with real recordings; "
                            "sweep each timbre knob from 0.1 to 0.9 and check its feature rises.")  # fmt: skip
    d.add_argument("--model", help="model folder or shipped name")
    d.add_argument("--reference", nargs="+", type=Path, help="folders of real drum clips (the training data)")
    d.add_argument("-n", "--count", type=int, default=24, help="clips per prompt (default 24)")
    add_arguments(d, ("steps", "cfg_scale", "sampler", "seed"), base=DESCRIPTOR_SETTINGS)
    d.add_argument("--classifier", type=Path, default=None, help=judge_help)
    d.add_argument("--out", type=Path, default=None, help="output folder for descriptors.json")
    d.set_defaults(func=_run_descriptors)
    k = eval_sub.add_parser("knob-limits", help="how far each timbre knob can go before a class stops being itself",
                            description="For each class and timbre knob, generate the class prompt with the knob "
                            "at 0.05-0.95 and judge the clips; the range around the middle where the class holds "
                            "(judged itself at least 90 %% of the time) is the furthest a prompt word may move the "
                            "knob. --write stores the ranges in the model folder's timbre.json (knob_limits), where "
                            "generation reads them: 'bright snare' then asks for the brightest snare that is still a "
                            "snare. A knob value given explicitly is never limited.")
    _timbre_measure_flags(k, "knob value", "knob-limits", "ranges", judge_help, count=96)  # LIMIT_CLIPS
    k.set_defaults(func=_run_knob_limits)
    w = eval_sub.add_parser("word-reach", help="does each timbre word keep its class? how far may it move its knobs",
                            description="For each class and each word that sets one of its timbre knobs ('high "
                            "tom', 'bright snare'), generate the prompt and judge the clips against the class prompt "
                            "alone. A word that leaves the class (judged the class surely less often, and under 90 %% "
                            "of the time, on two blocks of seeds) is tried with its knobs moved back toward the middle "
                            "(3/4, 1/2, 1/4 of the way, then the middle); the first that holds is the word's reach. "
                            "The knob limits hold one knob at a time; this holds a word's knobs together. --write "
                            "stores the reaches in the model folder's timbre.json (word_reach), where generation reads "
                            "them. Run it after knob-limits --write.")
    _timbre_measure_flags(w, "prompt and block of seeds", "word-reach", "reaches", judge_help)
    w.set_defaults(func=_run_word_reach)
    pr = eval_sub.add_parser("pair-reach", help="do two timbre words keep the class together ('short thin tom')?",
                             description="For each class, each two timbre knobs and each corner of them, generate "
                             "the prompt of two words that set them ('short thin tom': decay low, weight low) and "
                             "judge the clips against the class prompt alone. A corner that leaves the class (by the "
                             "rule of word-reach) is tried with its two knobs moved back toward the middle; the "
                             "first that holds is the corner's reach, which generation applies to any two words that "
                             "set the two knobs that way. --write stores the reaches in the model folder's "
                             "timbre.json (pair_reach). Run it after word-reach --write.")
    _timbre_measure_flags(pr, "prompt and block of seeds", "pair-reach", "reaches", judge_help)
    pr.add_argument("--class-words", action="store_true",
                    help="measure instead each word the model measured for a class ('808' kick, 'high' tom), which "
                         "also reaches it as a keyword, with the word of each other knob end ('bright high tom'); "
                         "generation reads these before the corners. Run it after pair-reach --write")
    pr.add_argument("--words", nargs="+", default=None, metavar="WORD",
                    help="with --class-words: only these words of each class (--write keeps the others' entries)")
    pr.add_argument("--three-words", action="store_true",
                    help="measure instead the corners of three knobs, set by three words ('long bright punchy "
                         "kick'), from where the pair reaches put them. Run it after pair-reach --write")
    pr.set_defaults(func=_run_pair_reach)
    kr = eval_sub.add_parser("keyword-reach", help="does each keyword keep its class by itself ('808 snare')? "
                             "how much of it may the class take",
                             description="For each class and each keyword of the model that sets none of its timbre "
                             "knobs ('808 snare', '909 clap'), generate the prompt and judge the clips against the "
                             "class prompt alone. A keyword that leaves the class (by the rule of word-reach) is tried "
                             "with part of its conditioning (3/4, 1/2, 1/4, none), between the prompt without it and "
                             "with it; the first that holds is the keyword's weight for the class. --write stores the "
                             "weights in the model folder's timbre.json (keyword_reach), where generation reads them.")
    _timbre_measure_flags(kr, "prompt and block of seeds", "keyword-reach", "weights", judge_help)
    kr.add_argument("--words", nargs="+", default=None, metavar="WORD",
                    help="only these keywords (--write keeps the others' entries)")
    kr.set_defaults(func=_run_keyword_reach)
    c = eval_sub.add_parser("candidates", help="what --candidates does to keywords the model holds back ('808 snare')",
                            description="For each keyword the model holds back in a class (its keyword_reach), or "
                            "each --entries CLASS:WORD: generate the class prompt, the keyword at full strength, the "
                            "model's own blend and the blend with --candidates on the same seeds; say the share each "
                            "drum judge hears as the class (the two that choose the candidates, and any --judge) and "
                            "the part of the keyword kept (by the first judge's embedding: 0 the class prompt's "
                            "sound, 1 the keyword's whole).")
    c.add_argument("--model", required=True, help="model folder or shipped name")
    c.add_argument("--entries", nargs="+", default=None, metavar="CLASS:WORD",
                   help="the entries to measure (e.g. snare:808 clap:909; default: every keyword the model holds back)")
    c.add_argument("--classes", nargs="+", default=None, help="without --entries: only these classes")
    c.add_argument("-n", "--count", type=int_at_least(8), default=48, help="clips per prompt (default 48)")
    add_arguments(c, ("candidates", "steps", "cfg_scale", "sampler", "seed"), base=CANDIDATE_SETTINGS)
    c.add_argument("--judge", nargs="+", type=Path, default=None, metavar="FOLDER",
                   help="other drum classifiers that judge the clips too (they do not choose them), e.g. one trained "
                        "on other kits with `eval train-classifier`")
    c.add_argument("--out", type=Path, default=None,
                   help="JSON file of the measurement (default: runs/eval/<model>-candidates.json)")
    c.set_defaults(func=_run_candidates)
    v = eval_sub.add_parser("vocoder", help="the vocoder check alone: the model's vocoder vs Griffin-Lim on real clips",
                            description="Re-synthesise held-out real clips from their log-mel with the model's "
                            "vocoder and with Griffin-Lim; MR-STFT and log-mel distances to the originals, and the "
                            "spectral character (tail flatness, hop-rate flutter, high-band peakiness) of all three. "
                            "Writes a JSON file and, beside it, an HTML page with a blind listening test: the "
                            "original, then the vocoder and Griffin-Lim as A and B in a drawn order.")
    v.add_argument("--model", required=True, help="model folder or shipped name")
    v.add_argument("--reference", nargs="+", type=Path, required=True, help="folders of real drum clips")
    v.add_argument("--clips", type=int, default=64, help="real clips re-synthesised (at most; default 64)")
    v.add_argument("--held-out-kits", nargs="+", default=None, help="reference kits (default: the corpus held-out kits)")
    v.add_argument("--vocoder", type=Path, default=None,
                   help="check this vocoder on the model instead of its own: a model folder with one (a vocoder "
                        "training run's model/) or its vocoder.safetensors")
    v.add_argument("--seed", type=int_at_least(0), default=0, help="seed of the clips' draw and the page's order")
    v.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    v.add_argument("--listen", type=int_at_least(0), default=LISTEN_VOCODER, metavar="N",
                   help=f"clips in the page's listening test, from each class in turn (default {LISTEN_VOCODER}; "
                        "0: tables only)")
    v.add_argument("--out", type=Path, default=None,
                   help="JSON file; the page is written beside it as .html (default: runs/eval/<model>/vocoder.json)")
    v.set_defaults(func=_run_vocoder_check)
    p.set_defaults(eval_subcommands=tuple(eval_sub.choices))


def _check_list_flags(args: argparse.Namespace) -> None:
    """``eval --reference A B descriptors ...``: the list took the sub-command's name as a value (argparse reads
    a list up to the next flag), and ``eval`` itself would run. Refused, saying where the sub-command goes."""
    names = getattr(args, "eval_subcommands", ())
    for dest in getattr(args, "eval_flags_taking_lists", ()):
        values = getattr(args, dest, None) or []
        taken = [str(v) for v in values if str(v) in names]
        if taken:
            flag = "--" + dest.replace("_", "-")
            raise UserInputError(f"{flag} took {taken[0]!r} as one of its values: a sub-command goes first "
                                 f"(sampleforge eval {taken[0]} {flag} ...)")


class _EvalSubcommands(argparse._SubParsersAction):  # type: ignore[type-arg]
    """``sampleforge eval``'s sub-commands. A flag of ``eval`` itself given before one (``eval --model X
    descriptors``) would be dropped without a word: it is refused, naming the flag."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        given = [max(a.option_strings, key=len) for a in parser._actions if a.option_strings
                 and getattr(namespace, a.dest, a.default) != a.default]
        if given:
            raise argparse.ArgumentError(None, f"{given[0]} before the sub-command {values[0]} is not its flag: "
                                               f"give it after (sampleforge eval {values[0]} {given[0]} ...)")
        super().__call__(parser, namespace, values, option_string)


def _timbre_measure_flags(p: argparse.ArgumentParser, per: str, name: str, what: str, judge_help: str,
                          count: int = 48) -> None:
    """The flags of ``eval knob-limits``, ``word-reach`` and ``pair-reach`` (``_timbre_measure`` reads them)."""
    p.add_argument("--model", required=True, help="model folder or shipped name")
    p.add_argument("-n", "--count", type=int_at_least(8), default=count, help=f"clips per {per} (default {count})")
    p.add_argument("--classes", nargs="+", default=None, help="taxonomy classes (default: all)")
    add_arguments(p, ("steps", "cfg_scale", "sampler", "seed"), base=DESCRIPTOR_SETTINGS)
    p.add_argument("--classifier", type=Path, default=None, help=judge_help)
    p.add_argument("--out", type=Path, default=None,
                   help=f"JSON file of the measurement (default: runs/eval/<model>-{name}.json)")
    p.add_argument("--write", action="store_true", help=f"store the {what} in the model folder's timbre.json")


# the descriptor check's own defaults: the fast setting, seed 0 (both prompts of a contrast share the seeds); the
# guidance is the model's own
DESCRIPTOR_SETTINGS = GenerationParams(steps=8, sampler="dpmpp_2m", seed=0)


CANDIDATE_SETTINGS = GenerationParams(steps=8, sampler="dpmpp_2m", seed=0, candidates=4)  # eval candidates
# the keys that tell an earlier report of each kind (which its --out may replace) from any other file
CANDIDATES_KEYS = ("entries", "means", "judges")
DESCRIPTORS_KEYS = ("contrasts", "passed", "total", "sweeps")


def _run_candidates(args: argparse.Namespace) -> int:
    from sampleforge.backends.resolve import resolve
    from sampleforge.eval import report
    from sampleforge.eval.candidates import held_back, measure_candidates, parse_entries
    from sampleforge.eval.classifier import load_classifier
    from sampleforge.pipeline import JUDGES, Generator
    from sampleforge.taxonomy import CATEGORY_PROMPTS

    entries = parse_entries(args.entries) if args.entries else None  # before anything loads
    unknown = [c for c in args.classes or () if c not in CATEGORY_PROMPTS]
    if unknown:
        raise UserInputError(f"--classes: unknown class {unknown[0]!r} (known: {', '.join(CATEGORY_PROMPTS)})")
    asked = from_namespace(args, CANDIDATE_SETTINGS)
    ref = resolve(args.model)
    if ref.format != "sampleforge":
        raise UserInputError(f"--model {args.model}: only sampleforge models take candidates")
    out = args.out or Path("runs") / "eval" / f"{ref.path.name}-candidates.json"
    report.check_report_file(out, "--out", "eval candidates", CANDIDATES_KEYS)  # before the slow part
    others = {path.name: load_classifier(path) for path in args.judge or ()}
    gen = Generator.from_pretrained(args.model)
    unknown_words = [w for _, w in entries or () if w not in gen.vocab()]
    if unknown_words:  # measured, it would be the class prompt alone under the keyword's name
        raise UserInputError(f"--entries: {unknown_words[0]!r} is not a keyword of this model")
    entries = entries or held_back(gen, args.classes)
    if not entries:
        raise UserInputError(f"--model {args.model}: it holds back no keyword (its timbre.json has no keyword_reach "
                             "under 1); name --entries CLASS:WORD")
    p = gen.resolve(asked)
    assert p.steps is not None and p.sampler is not None and p.seed is not None and p.candidates is not None
    shipped = gen.judges()
    judges = {(JUDGES[i] if i < len(JUDGES) else f"judge-{i}"): j for i, j in enumerate(shipped)}
    judges.update({name if name not in judges else f"{name} (--judge)": j for name, j in others.items()})
    result = measure_candidates(gen, entries, judges, n=args.count, candidates=p.candidates, steps=p.steps,
                                sampler=p.sampler, cfg_scale=asked.cfg_scale, seed=p.seed)
    result["model"] = ref.path.name
    report.write_text(out, json.dumps(result, indent=2) + "\n")
    names = result["judges"]
    print(f"{'':<24} judged the class by {', '.join(names)}; keyword kept")
    for row in result["entries"]:
        for key in ("blend", "candidates"):
            heard = " / ".join(f"{row[key]['judged'][name]:.0%}" for name in names)
            print(f"  {row['prompt'] if key == 'blend' else '':<22} {key:<10} {heard:<20} {row[key]['keyword_kept']:+.2f}")
    for key, m in result["means"].items():
        heard = " / ".join(f"{m['judged_' + name]:.0%}" for name in names)
        print(f"mean {key:<19} {heard:<20} median {m['keyword_kept_median']:+.2f}, mean {m['keyword_kept_mean']:+.2f}")
    print(f"wrote {out}")
    return 0


def _run_descriptors(args: argparse.Namespace) -> int:
    import numpy as np

    from sampleforge.data import corpus
    from sampleforge.data.dataset import WaveCache
    from sampleforge.eval import report
    from sampleforge.eval.classifier import load_classifier
    from sampleforge.eval.descriptors import check_descriptors
    from sampleforge.eval.evaluate import sampleforge_model
    from sampleforge.pipeline import Generator

    if not args.model or not args.reference:
        raise UserInputError("--model and --reference are required (e.g. --model drums-v2 "
                             "--reference /usr/share/hydrogen/data/drumkits)")
    if args.count < 2:
        raise UserInputError(f"--count must be at least 2 (effect sizes need pairs), got {args.count}")
    asked = from_namespace(args, DESCRIPTOR_SETTINGS)
    assert asked.steps is not None  # DESCRIPTOR_SETTINGS gives it
    missing = [str(r) for r in args.reference if not Path(r).is_dir()]
    if missing:
        raise UserInputError(f"--reference: {missing[0]} is not a folder")
    sampleforge_model(args.model, "eval descriptors")
    out = args.out or Path("runs") / "eval" / (Path(str(args.model)).name + "-descriptors")
    report.check_report_folder(out, "--out", "eval descriptors", DESCRIPTORS_KEYS, ["descriptors.json"])
    gen = Generator.from_pretrained(args.model)
    p = gen.resolve(asked)  # the model's own sampler; its guidance for each prompt unless --cfg-scale
    assert p.sampler is not None and p.seed is not None
    clf = load_classifier(args.classifier)
    clips = corpus.scan(list(args.reference)).clips
    if not clips:
        raise UserInputError(f"--reference: no drum clips found in {', '.join(map(str, args.reference))}")
    cache = WaveCache()
    duration = float(gen.bundle.config.duration)
    wavs = np.stack([cache.get(c.path, duration=duration, sample_rate=gen.sample_rate) for c in clips])
    result = check_descriptors(gen, clf, wavs, [c.category for c in clips], [c.keywords for c in clips],
                               n=args.count, steps=p.steps, sampler=p.sampler, cfg_scale=asked.cfg_scale, seed=p.seed)
    for r in result["contrasts"]:
        print(f"  {'pass' if r['passed'] else 'FAIL'}  {r['contrast']:<36} {r['feature']:<10} d {_f(r['d']):>6} {_interval(r['d_interval'])} "
              f"(real {_f(r['real_d'])}, n {r['real_n'][0]}/{r['real_n'][1]})  judged "
              f"{_f(r['adherence'][0], 100)} / {_f(r['adherence'][1], 100)} %")
    for w in result["sweeps"]:
        falls = "".join(f"; falls {f['from']:g}->{f['to']:g} (p {f['p']:.2g})" for f in w.get("falls", []))
        print(f"  {'pass' if w['rises'] else 'FAIL'}  sweep {w['class']} {w['knob']:<10} medians "
              + " ".join(f"{m:.3g}" for m in w["medians"])
              + f"  (rho {_f(w['spearman'])}, rise p {_f(w['rise_p'])}{falls})")
    print(f"{result['passed']}/{result['total']} contrasts pass; {result['sweeps_rising']}/{len(result['sweeps'])} "
          f"knob sweeps rise (p < {result['alpha']:g}, no step falling surely; "
          f"{sum(w['monotonic'] for w in result['sweeps'])} with every median rising)")
    report.write_text(out / "descriptors.json", json.dumps(result, indent=2) + "\n")
    print(f"wrote {out / 'descriptors.json'}")
    return 0


def _timbre_measure(args: argparse.Namespace, measure: Any, key: str, name: str, rows: str | None = None
                    ) -> tuple[dict[str, Any], Path, Path | None]:
    """Run a timbre measurement of ``eval knob-limits`` / ``word-reach`` / ``pair-reach`` (``measure(generator, classifier, **settings)``)
    on --model; writes its JSON (``--out``, default runs/eval/<model>-<name>.json) and, with --write, merges its
    ``key`` table into the model folder's timbre.json: each class measured replaces its table, or, with ``rows``
    (the result's ``judged`` rows of each class), the entries of the names it measured, keeping the others.
    Returns (the result, the JSON file, the timbre.json written or None)."""
    from sampleforge.backends.resolve import resolve
    from sampleforge.eval import report
    from sampleforge.eval.classifier import load_classifier
    from sampleforge.pipeline import Generator
    from sampleforge.taxonomy import CATEGORY_PROMPTS

    unknown = [c for c in args.classes or () if c not in CATEGORY_PROMPTS]
    if unknown:
        raise UserInputError(f"--classes: unknown class {unknown[0]!r} (known: {', '.join(CATEGORY_PROMPTS)})")
    ref = resolve(args.model)
    if ref.format != "sampleforge":
        raise UserInputError(f"--model {args.model}: only sampleforge models have timbre knobs")
    folder = ref.path
    timbre_file = folder / "timbre.json"
    if args.write and not timbre_file.is_file():
        raise UserInputError(f"--write: {folder} has no timbre.json (a model without timbre knobs)")
    out = args.out or Path("runs") / "eval" / f"{folder.name}-{name}.json"
    report.check_report_file(out, "--out", f"eval {name}", (key,))  # before the measurement, which takes hours
    asked = from_namespace(args, DESCRIPTOR_SETTINGS)
    gen = Generator.from_pretrained(args.model)
    if not gen.bundle.config.text.knobs:
        raise UserInputError(f"--model {args.model}: this model has no timbre knobs")
    unknown_words = [w for w in getattr(args, "words", None) or () if w not in gen.vocab()]
    if key == "keyword_reach" and unknown_words:  # measured, it would be 0 of 0 words
        raise UserInputError(f"--words: {unknown_words[0]!r} is not a keyword of this model")
    p = gen.resolve(asked)
    assert p.steps is not None and p.sampler is not None and p.seed is not None
    result = measure(gen, load_classifier(args.classifier), n=args.count, steps=p.steps, sampler=p.sampler,
                     cfg_scale=asked.cfg_scale, seed=p.seed, classes=args.classes)
    report.write_text(out, json.dumps(result, indent=2) + "\n")
    if args.write:
        timbre = json.loads(timbre_file.read_text())
        table = dict(timbre.get(key, {}))
        if rows is None:
            table.update(result[key])
        else:
            for category, row in result["judged"].items():
                kept = {k: v for k, v in table.get(category, {}).items() if k not in row[rows]}
                table[category] = {**kept, **result[key].get(category, {})}
        timbre[key] = {c: entries for c, entries in table.items() if entries}
        tmp = timbre_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(timbre, indent=1) + "\n")
        tmp.replace(timbre_file)
    return result, out, timbre_file if args.write else None


def _run_knob_limits(args: argparse.Namespace) -> int:
    from sampleforge.eval.descriptors import knob_limits

    result, out, written = _timbre_measure(args, knob_limits, "knob_limits", "knob-limits")
    for category, knobs in result["knob_limits"].items():
        print(f"  {category:<11} " + "  ".join(f"{knob} {lo:.2f}-{hi:.2f}" for knob, (lo, hi) in knobs.items()))
    print(f"wrote {out}")
    if written is not None:
        print(f"wrote knob_limits into {written}")
    return 0


def _run_word_reach(args: argparse.Namespace) -> int:
    from sampleforge.eval.descriptors import word_reach

    return _run_reach(args, word_reach, "word_reach", "word-reach", "words")


def _run_keyword_reach(args: argparse.Namespace) -> int:
    from sampleforge.eval.descriptors import keyword_reach

    return _run_reach(args, functools.partial(keyword_reach, words=args.words), "keyword_reach", "keyword-reach",
                      "words")


def _run_pair_reach(args: argparse.Namespace) -> int:
    from sampleforge.eval.descriptors import pair_reach

    if args.class_words and args.three_words:
        raise UserInputError("--class-words and --three-words are two measurements: give one")
    if args.words and not args.class_words:
        raise UserInputError("--words chooses among a class's own words: give it with --class-words")
    measure = functools.partial(pair_reach, class_words=args.class_words, three_words=args.three_words,
                                words=args.words)

    kind = "-class-words" if args.class_words else "-three-words" if args.three_words else ""
    return _run_reach(args, measure, "pair_reach", f"pair-reach{kind}", "pairs")


def _run_reach(args: argparse.Namespace, measure: Any, key: str, name: str, rows: str) -> int:
    """``eval word-reach`` / ``pair-reach``: run, then say per class how many of its ``rows`` keep the class and the
    reach of each that does not."""
    result, out, written = _timbre_measure(args, measure, key, name, rows)
    for category, row in result["judged"].items():
        judged = row[rows]
        kept = sum("tried" not in j for j in judged.values())  # tried: confirmed to leave the class
        pooled = f" ({row['class_prompt_2n']:.0%} on both blocks)" if "class_prompt_2n" in row else ""
        print(f"  {category:<11} class prompt {row['class_prompt']:.0%}{pooled}; {kept} of {len(judged)} {rows} keep "
              "the class")
        for j in judged.values():
            if "tried" in j:
                where = "without the keyword" if key == "keyword_reach" else "at the middle"
                reach = f"leaves the class even {where}" if j["reach"] is None else f"reach {j['reach']:g}"
                print(f"    {j['prompt']:<28} {j['judged_2n']:.0%} -> {reach}")
    print(f"wrote {out}")
    if written is not None:
        print(f"wrote {key} into {written}")
    return 0


def _interval(iv: list[float] | None) -> str:
    return f"[{iv[0]:.2f}, {iv[1]:.2f}]" if iv else ""


def _run_eval(args: argparse.Namespace) -> int:
    from sampleforge.eval.evaluate import run_eval
    from sampleforge.eval.settings import EVAL_GENERATION, EvalSettings

    _check_list_flags(args)
    generation = from_namespace(args, base=EVAL_GENERATION)
    if not args.model or not args.reference:
        raise UserInputError("--model and --reference are required (e.g. --model drums-v1 "
                             "--reference /usr/share/hydrogen/data/drumkits)")
    from sampleforge.eval.classifier_train import held_out_kits_from

    kits = (held_out_kits_from(args.held_out_kits, args.config, "--held-out-kits") if args.config
            else args.held_out_kits)
    settings = EvalSettings(per_class=args.per_class, classes=args.classes, vocoder_clips=args.vocoder_clips,
                            held_out_kits=kits, generation=generation,
                            held_out_flag=f"--config {args.config}" if args.config else "--held-out-kits")
    out = args.out or Path("runs") / "eval" / Path(str(args.model)).name
    result, js, page = run_eval(args.model, args.reference, out, settings, args.classifier, args.device)
    print(result["reference"]["split"])
    o = result["overall"]
    iv = o.get("adherence_interval")
    interval = f" [{iv[0]:.1%}, {iv[1]:.1%}]" if iv else ""
    print(f"adherence {_f(o['adherence'], 100)} %{interval}  FD classifier {_f(o['fd_classifier'])} (floor "
          f"{_f(o['fd_classifier_floor'])})  FD MFCC {_f(o['fd_mfcc'])} (floor {_f(o['fd_mfcc_floor'])})  "
          f"clipping {_f(o['clipping_percent'])} %  NaN {o['nan_count']}")
    trip = result["roundtrip_check"]["per_class"]
    for cat, v in result["per_class"].items():
        rt = trip.get(cat)
        rt_text = f"  real via VAE {_f(rt['vae'], 100):>5} % (vocoder alone {_f(rt['vocoder'], 100)} %)" if rt else ""
        print(f"  {cat:<11} adherence {_f(v['adherence'], 100):>5} %  LUFS {_f(v['lufs_mean']):>6}  "
              f"onset {_f(v['onset_ms_mean']):>5} ms  diversity {_f(v['diversity'])} "
              f"({_f(v['diversity_ratio'])}x real){rt_text}")
    print(f"wrote {js} and {page}")
    return 0


def _run_vocoder_check(args: argparse.Namespace) -> int:
    from sampleforge.eval.evaluate import run_vocoder_check

    if args.clips < 1:
        raise UserInputError(f"--clips must be >= 1, got {args.clips}")
    out = args.out or Path("runs") / "eval" / Path(str(args.model)).name / "vocoder.json"
    if out.suffix == ".html":
        raise UserInputError(f"--out: {out} is the JSON file; the page goes beside it as .html")
    if args.vocoder is not None:
        from sampleforge.backends.resolve import refuse_second_vocoder
        from sampleforge.bundle import resolve_model
        from sampleforge.errors import CheckpointError

        refuse_second_vocoder(args.model, "--vocoder", "--model")
        if not args.vocoder.exists():
            try:  # a shipped vocoder's name, as generate --vocoder-ckpt takes it
                args.vocoder = resolve_model(str(args.vocoder))
            except CheckpointError:
                raise UserInputError(f"--vocoder: {args.vocoder} does not exist") from None
    result = run_vocoder_check(args.model, args.reference, out, args.clips, args.held_out_kits, args.seed, args.device,
                               args.vocoder, args.listen)
    rows = [("model vocoder", result["vocoder"])] if result["vocoder"] is not None else []
    rows += [("Griffin-Lim", result["griffin_lim"]), ("real recordings", result["real"])]
    print(f"{result['clips']} real clips ({result['split']})")
    if result.get("griffin_lim_iters") is not None:
        from sampleforge.audio.griffinlim import describe

        print("Griffin-Lim: " + describe(result["griffin_lim_iters"], result.get("griffin_lim_mel_iters") or 0,
                                         result.get("griffin_lim_init")))
    if result.get("vocoder_description"):
        print("Vocoder: " + result["vocoder_description"])
    print(f"{'':<16}{'MR-STFT':>9}{'mel L1':>9}{'MR mel L1':>11}{'tail flat':>11}{'flutter dB':>12}{'HF peaks dB':>13}")
    for name, r in rows:
        print(f"{name:<16}{_f(r.get('mrstft')):>9}{_f(r.get('logmel_l1')):>9}{_f(r.get('mr_logmel_l1')):>11}"
              f"{_f(r['tail_flatness']):>11}"
              f"{_f(r['hop_flutter_db']):>12}{_f(r['hf_peakiness_db']):>13}")
    per_class = result.get("per_class") or {}
    if per_class:
        print("MR-STFT by class (clips): " + ", ".join(
            f"{c} ({v['clips']}) " + (f"{_f(v['vocoder']['mrstft'])} vs " if v["vocoder"] else "")
            + _f(v["griffin_lim"]["mrstft"]) for c, v in per_class.items())
            + (" (vocoder vs Griffin-Lim)" if result["vocoder"] is not None else " (Griffin-Lim)"))
    if result["vocoder"] is None:
        print("this model has no neural vocoder: only Griffin-Lim was measured")
    else:
        for key, label in (("mrstft", "MR-STFT"), ("mr_logmel_l1", "MR mel L1")):
            if not result["griffin_lim"].get(key):
                continue
            gain = 1 - result["vocoder"][key] / result["griffin_lim"][key]
            print(f"{label}: the vocoder is {100 * abs(gain):.1f} % {'below' if gain >= 0 else 'above'} Griffin-Lim's")
    print(f"wrote {out} and {out.with_suffix('.html')}")
    return 0


def _f(v: float | None, scale: float = 1.0) -> str:
    return "—" if v is None else f"{v * scale:.3g}"


# ----------------------------------------------------------------------------------------------- sweep


def _register_sweep(sub: Any) -> None:
    p = sub.add_parser("sweep", help="render one prompt over cfg x steps x sampler into one HTML page",
                       description="A grid of generations with per-cell stats (latent std, audio std, clipping %, "
                       "LUFS before finishing, stage times and peak memory), spectrograms and players; on every "
                       "backend: the way to tell a weight bug from a bad setting.")
    p.add_argument("--model", default=DEFAULT_MODEL, help=SPECS["model"].help)
    p.add_argument("--cfg-scale", nargs="+", default="1,3,5,7", metavar="X",
                   help="guidance scales, separated by spaces or commas (default 1,3,5,7)")
    p.add_argument("--steps", nargs="+", default="10,25,50", metavar="N",
                   help="step counts, separated by spaces or commas (default 10,25,50)")
    p.add_argument("--sampler", nargs="+", default=None, metavar="SAMPLER",
                   help="samplers, separated by spaces or commas (default: ddim,dpmpp_2m,heun; other people's "
                        "models: their first three, e.g. native,euler,dpmpp_2m)")
    add_arguments(p, ("prompt", "seed", "count", "duration", "precision", "eta", "steps_offset", "flow_shift", "offload",
                      "decode_chunk", "quantize", "channels"), base=SWEEP_BASE)
    p.add_argument("--device", default=None)
    p.add_argument("--out", type=Path, default=None, help="output folder (default: runs/sweep/<model>/<prompt>, a short hash added where the prompt has capitals or punctuation)")
    p.set_defaults(func=_run_sweep)


def _slug(text: str, empty: str) -> str:
    """``text`` as a folder name: lower-case letters and digits joined by _, at most 40 (``empty`` when none)."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:40] or empty


def _prompt_folder(prompt: str) -> str:
    """A prompt's ``_slug``, with a short hash of the prompt when the slug drops more than its spaces, so that
    prompts differing in case, punctuation or after 40 characters ("kick", "KICK!") get folders of their own."""
    name = _slug(prompt, "prompt")
    if name.replace("_", " ") == " ".join(prompt.split()):
        return name
    return f"{name}_{hashlib.sha1(prompt.encode()).hexdigest()[:6]}"


def _run_sweep(args: argparse.Namespace) -> int:
    from sampleforge.eval.sweep import sweep

    grid = {name: parse_list(getattr(args, name), name) for name in ("cfg_scale", "steps")}
    samplers = parse_list(args.sampler, "sampler") if args.sampler is not None else None
    args.cfg_scale = args.steps = args.sampler = None  # the grid, not single values
    base = from_namespace(args, base=SWEEP_BASE)
    if args.prompt is None and not args.prompt_words:
        raise UserInputError("give the prompt to sweep: sampleforge sweep WORDS... or --prompt TEXT")
    out = args.out or Path("runs") / "sweep" / _slug(Path(str(args.model)).name or str(args.model), "model") \
        / _prompt_folder(base.prompt)
    result, js, page = sweep(args.model, base, grid["cfg_scale"], grid["steps"], samplers, out, args.device)
    for w in result["warnings"]:  # as generate says them: unknown keywords, settings a backend ignores
        print(f"warning: {w}", file=sys.stderr)
    for c in result["cells"]:
        flag = "  <- clipping/NaN" if c["raw_clipping_percent"] > 1.0 or c["nan_count"] else ""
        mem = f"  +{c['sample_peak_mib']:.0f} MiB" if "sample_peak_mib" in c else ""
        print(f"{c['sampler']:<9} steps {c['steps']:>4} cfg {c['cfg_scale']:>5.2f}: latent std {c['latent_std']:.3f}  "
              f"audio std {c['raw_audio_std']:.3f}  clip {c['raw_clipping_percent']:.2f} %  {c['lufs']:.1f} LUFS  "
              f"{c['seconds']:.2f} s{mem}{flag}")
    print(f"wrote {js} and {page}")
    return 0


# ----------------------------------------------------------------------------------------------- doctor


def _register_doctor(sub: Any) -> None:
    p = sub.add_parser("doctor", help="check torch build, devices, libraries, model and data; say what to fix")
    p.add_argument("--brief", action="store_true", help="only problems and the summary")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--model", default=DEFAULT_MODEL, help="the model to look for")
    p.add_argument("--data", nargs="+", type=Path, default=None, help="drum folders to look for")
    p.set_defaults(func=_run_doctor)


def _run_doctor(args: argparse.Namespace) -> int:
    from sampleforge.eval import doctor

    checks = doctor.run_checks(model=args.model, data_dirs=args.data)
    if args.json:
        print(json.dumps(doctor.checks_as_dicts(checks), indent=2))
    else:
        print(doctor.format_checks(checks, brief=args.brief))
    return 1 if any(c.status == "fail" for c in checks) else 0


# ----------------------------------------------------------------------------------------------- inspect


def _register_inspect(sub: Any) -> None:
    p = sub.add_parser("inspect", help="show a model folder or a legacy .pt checkpoint (safely, no unpickling)")
    p.add_argument("path", help="model folder, shipped model name, or a .pt/.pth/.ckpt file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_run_inspect)


def _run_inspect(args: argparse.Namespace) -> int:
    from sampleforge.eval.inspect import format_inspect, inspect_path

    info = inspect_path(args.path)
    print(json.dumps(info, indent=2, default=str) if args.json else format_inspect(info))
    return 1 if info.get("missing") or info.get("problems") else 0
