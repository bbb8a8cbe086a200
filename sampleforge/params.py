"""Generation parameters: every setting of a generation declared once, with its type, default, bounds and help.

``GenerationParams`` is the one place that knows them. The command line (``add_arguments`` /
``from_namespace``), the Python API (``GenerationParams.from_kwargs``), the HTTP request schemas, the eval
and sweep settings and the server's advertised limits all derive from its ``param(...)`` declarations; a
server's own limits may only narrow them. Adding a setting is one ``param(...)`` line below.

    params = GenerationParams.from_kwargs({"prompt": "808 kick", "ddim_steps": 25})
    params.steps, params.cfg_scale  # 25, None: left to the model, whose resolve() fills in its own default
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import numbers
import os
import secrets
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sampleforge.errors import ParamError, UserInputError

MAX_SEED = 2**31 - 1
PRECISIONS = ("fp32", "bf16", "fp16")  # the first is what a model loads with unless told otherwise
QUANTIZE = ("none", "int8")
OFFLOAD = ("none", "model")
CHANNELS = ("mono", "stereo")
MAX_DURATION = 600.0  # the widest any backend accepts; each model narrows it (sampleforge models: 10 s)
# "wav": the reference's 32-bit float WAV (= "wav32f"); "wav16" is TPDF-dithered PCM; "flac" is 24-bit
FORMATS = ("wav", "flac", "wav16", "wav24", "wav32f")


# every sampler name: ours (sampleforge.diffusion.samplers.SAMPLERS), then "native", the scheduler another
# model was saved with (sampleforge.backends.schedulers maps ours onto other models' schedulers); a model accepts
# the subset that fits it. Listed here, not read from those registries, so that checking a setting (and a
# command's parser) loads no torch; a test holds the two equal.
SAMPLER_NAMES = ("ddim", "euler", "euler_ancestral", "heun", "dpmpp_2m", "flow_euler", "flow_heun", "pingpong",
                 "native")


def random_seed(clips: int = 1) -> int:
    """A random seed whose ``clips`` seeds (seed + k) are all valid."""
    return secrets.randbelow(MAX_SEED + 2 - clips)


def check_seeds(seed: int | None, clips: int) -> None:
    """Clip k of ``clips`` uses seed + k, which must be a valid seed too (ParamError on ``seed`` otherwise)."""
    if seed is not None and seed + clips - 1 > MAX_SEED:
        raise ParamError("seed", f"must leave room for its {clips} clips (clip k uses seed + k, at most {MAX_SEED}): "
                                 f"at most {MAX_SEED - clips + 1}, got {seed}")


@dataclass(frozen=True)
class Spec:
    """One setting: what it holds and what it accepts. ``default=None`` means "decided later" (see help)."""

    default: Any
    help: str
    ge: float | None = None  # inclusive lower bound
    gt: float | None = None  # exclusive lower bound
    le: float | None = None  # inclusive upper bound
    max_length: int | None = None
    choices: tuple[str, ...] | None = None
    aliases: tuple[str, ...] = ()  # other keyword names the Python API accepts
    task: str | None = None  # its name in the task API's ``params`` (AudioLDM-service style)
    http: bool = True  # part of HTTP request bodies
    normalize: Callable[[Any], Any] | None = None  # str settings of a richer shape: value -> canonical text,
    # ValueError (its message says what is accepted) when bad
    own: Any = None  # default=None settings left to the model: the value sampleforge's own models use
    join: str | None = None  # the command line takes several values for it, joined with this (words, a list)
    path: bool = False  # a str setting that names a file or folder: a pathlib.Path is taken as its text
    name: str = ""  # filled in from the field
    kind: type = object  # int, float or str; filled in from the annotation

    @property
    def flag(self) -> str:
        """The command-line spelling: ``cfg_scale`` -> ``--cfg-scale``."""
        return "--" + self.name.replace("_", "-")

    @property
    def optional(self) -> bool:
        return self.default is None

    def describe(self) -> str:
        """What the setting accepts, e.g. "an integer between 1 and 1000"."""
        if self.kind is str:
            choices = self.choices
            if choices is not None:
                return f"one of {', '.join(choices)}"
            return f"a text of at most {self.max_length} characters" if self.max_length else "a text"
        what = "an integer" if self.kind is int else "a finite number"
        high = f" and at most {_num(self.le)}" if self.le is not None else ""
        if self.gt is not None:
            return f"{what} above {_num(self.gt)}{high}"
        if self.ge is not None:
            return f"{what} between {_num(self.ge)} and {_num(self.le)}" if high else f"{what} >= {_num(self.ge)}"
        return f"{what} <= {_num(self.le)}" if high else what

    def check(self, value: Any) -> Any:
        """``value`` if it is acceptable (ints become floats for float settings); else ParamError."""
        if value is None and self.optional:
            return None
        if self.path and isinstance(value, os.PathLike):
            value = os.fspath(value)
        if self.normalize is not None:
            try:
                return self.normalize(value)
            except (TypeError, ValueError) as exc:
                raise ParamError(self.name, str(exc)) from None
        if self.kind is str:
            choices = self.choices
            if not isinstance(value, str) or (choices is not None and value not in choices) \
                    or (self.max_length is not None and len(value) > self.max_length):
                raise ParamError(self.name, f"must be {self.describe()}, got {_short(value)}")
            return value
        number = numbers.Integral if self.kind is int else numbers.Real
        if isinstance(value, bool) or not isinstance(value, number) or not self._within(value):
            raise ParamError(self.name, f"must be {self.describe()}, got {_short(value)}")
        return self.kind(value)

    def _within(self, value: Any) -> bool:
        x = int(value) if isinstance(value, numbers.Integral) else float(value)  # big ints stay exact
        return (isinstance(x, int) or math.isfinite(x)) and (self.ge is None or x >= self.ge) and (self.gt is None or x > self.gt) \
            and (self.le is None or x <= self.le)

    def parse(self, text: str) -> Any:
        """Command-line text -> a value of the setting's type (not yet checked against the bounds)."""
        if self.kind is str:
            return text
        try:
            return self.kind(text)
        except ValueError:
            raise ParamError(self.name, f"must be {self.describe()}, got {text!r}") from None


def _num(x: float | None) -> str:
    """3.0 -> "3", 0.1 -> "0.1"."""
    return str(int(x)) if x is not None and float(x).is_integer() else str(x)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _length_text(value: Any) -> str:
    """"auto" or a positive number of seconds (a number or its text) -> "auto" or the number as text."""
    from sampleforge.audio.finish import parse_length

    if isinstance(value, bool):
        raise ValueError(f"must be 'auto' or a positive number of seconds, got {value!r}")
    try:
        parsed = parse_length(value)
    except ValueError as exc:
        raise ValueError(str(exc).removeprefix("length ")) from None
    return "auto" if parsed == "auto" else repr(float(parsed))  # type: ignore[arg-type]


def _pieces_text(value: Any) -> str:
    """Kit pieces as comma-separated text or a list -> "kick,snare,..." (each a known piece, none twice)."""
    from sampleforge.kit.pieces import parse_pieces

    if not isinstance(value, (str, list, tuple)):
        raise ValueError(f"must be comma-separated piece names, got {value!r}")
    try:
        return ",".join(parse_pieces(value))
    except UserInputError as exc:
        raise ValueError(": " + str(exc).removeprefix("pieces: ")) from None


def param(default: Any, help: str, **bounds: Any) -> Any:
    """Declare one setting of GenerationParams (see ``Spec`` for the keywords)."""
    return field(default=default, metadata={"spec": Spec(default, help, **bounds)})


@dataclass(frozen=True)
class GenerationParams:
    """Everything one generation takes besides the model; checked on construction (ParamError naming the field)."""

    prompt: str = param("", "keywords, e.g. 'punchy 808 kick'", max_length=2000, join=" ")
    count: int = param(1, "clips to make; clip k uses seed + k", ge=1, le=1000, aliases=("n",))
    steps: int | None = param(None, "sampler steps; default: the model's own (sampleforge models 50, Stable Audio "
                              "Open 1.0 100, Stable Audio Open Small 8, AudioLDM2 200)", ge=1, le=1000,
                              aliases=("ddim_steps",), task="diffusionSteps", own=50)
    cfg_scale: float | None = param(None, "classifier-free guidance scale; default: the model's own (sampleforge "
                                    "models 3 unless their config says, drums-v2 4 for a prompt that sets no timbre knob, Stable Audio "
                                    "Open 1.0 7, Stable Audio Open Small 1, AudioLDM2 3.5)",
                                    ge=0.0, le=30.0, task="guidanceScale", own=3.0)
    sampler: str | None = param(None, "sampler, e.g. ddim, dpmpp_2m, euler_ancestral (flow models: flow_euler, "
                                "flow_heun; distilled flow models: pingpong); default: the model's first",
                                choices=SAMPLER_NAMES)
    seed: int | None = param(None, "seed of clip 0; random if omitted", ge=0, le=MAX_SEED)
    duration: float | None = param(None, "clip length in seconds; default: the model's (each model narrows the "
                                   "range: sampleforge models 0.1-10 s)", ge=0.1, le=MAX_DURATION)
    format: str = param("wav", "audio file format: wav (32-bit float, = wav32f), flac (24-bit), wav16 (dithered "
                        "PCM), wav24", choices=FORMATS)
    precision: str | None = param(
        None, "the U-Net's precision; bf16 is ~2x faster for large batches on CPUs with AVX512-BF16 and gives "
        "close but not identical clips; other people's models load their weights in it (fp16 too); default: the "
        "one the model was loaded with (fp32)", choices=PRECISIONS, http=False)
    eta: float | None = param(None, "fresh noise per step, 0 (deterministic) to 1 (ancestral); default: the "
                              "sampler's (ddim 0, euler_ancestral 1)", ge=0.0, le=1.0, http=False)
    steps_offset: int = param(0, "added to every timestep of the 'uniform' (leading) spacing, as diffusers' "
                              "steps_offset (models whose config samples 'uniform'; the shipped ones: 'trailing')",
                              ge=0, le=100, http=False)
    flow_shift: float = param(1.0, "time shift of flow-matching models, on top of a model's own (above 1: more "
                              "steps at high noise)",
                              gt=0.0, le=100.0, http=False)
    candidates: int | None = param(None, "render up to this many candidates a clip, the first with the prompt's "
                                   "keywords at full strength, each next a step closer to the model's own weighting "
                                   "of them, and keep the first both drum judges hear as the prompt's class; where "
                                   "none is, the clip the model gives by itself (sampleforge drum models, a prompt "
                                   "that names a class); default: one, not judged", ge=1, le=8)
    # which model, and how it is loaded and run (sampleforge.backends)
    model: str | None = param(None, "the model: a sampleforge folder or shipped name, or MODEL+VOCODER for one "
                              "with another vocoder (a vocoder folder or name, or griffin-lim: "
                              "drums-v2+drums-vocoder-v1), a diffusers pipeline folder, hf:OWNER/NAME from the "
                              "Hugging Face cache, or an audio-diffusion-pytorch .ckpt; default: drums-v2 (a "
                              "server: its first model, see /v1/models)", max_length=1000, path=True)
    offload: str = param("none", "model: keep idle components on the CPU and move each to the GPU only while it "
                         "runs (accelerate hooks; CUDA only)", choices=OFFLOAD, http=False)
    decode_chunk: float | None = param(None, "run the autoencoder in chunks of this many seconds (the decode, and "
                                       "the encode of init audio): lower peak memory for long audio; default: in "
                                       "one piece", gt=0.0, le=MAX_DURATION, http=False)
    quantize: str = param("none", "int8: dynamic int8 quantisation of the denoiser's Linear layers (CPU, fp32)",
                          choices=QUANTIZE, http=False)
    channels: str | None = param(None, "mono: mix a stereo model down; stereo: keep both channels; default: the "
                                 "model's own", choices=CHANNELS, http=False)
    init_audio: str | None = param(None, "audio-to-audio (Stable Audio 3, Stable Audio Open "
                                   "Small) and inpainting (Stable Audio 3): the audio file to start from; "
                                   "sampleforge models: use `vary`", max_length=4096, http=False, path=True)
    init_noise: float | None = param(None, "audio-to-audio: how much of init_audio to re-noise, 0 (keep) to 1 "
                                     "(all); default 1", ge=0.0, le=1.0, http=False)
    mask_start: float | None = param(None, "inpainting: start of the region to regenerate, seconds", ge=0.0,
                                     le=MAX_DURATION, http=False)
    mask_end: float | None = param(None, "inpainting: end of the region to regenerate, seconds", ge=0.0,
                                   le=MAX_DURATION, http=False)
    # timbre knobs (sampleforge.timbre): quantiles within the class, 0-1; unset = sampled freely
    decay: float | None = param(None, "timbre knob: how long the sound rings, 0 (shortest of its class) to 1 "
                                "(longest); words 'long', 'short' set it; default: free", ge=0.0, le=1.0)
    brightness: float | None = param(None, "timbre knob: spectral centroid of the attack, 0 (dark) to 1 (bright); "
                                     "default: free", ge=0.0, le=1.0)
    weight: float | None = param(None, "timbre knob: how heavy the low end is, 0 (thin) to 1 (deep): the share "
                                 "below 120 Hz, or the body's pitch for models trained on timbre features "
                                 "version 2; default: free", ge=0.0, le=1.0)
    punch: float | None = param(None, "timbre knob: attack against body, 0 (soft) to 1 (punchy); default: free",
                                ge=0.0, le=1.0)

    # the producer's workflow: output length, variations, morphs, kits
    length: str | None = param(None, "'auto' (each clip trimmed to its sound, with a natural fade below -60 dB) "
                               "or seconds; default: the whole generated clip", normalize=_length_text)
    strength: float = param(0.3, "variations: how far from the input, 0 (the input through the VAE) to 1 "
                            "(ignore it)", ge=0.0, le=1.0, http=False)
    input: str | None = param(None, "variations: the sample to vary (a WAV, FLAC, AIFF or OGG file)",
                              max_length=4096, http=False, path=True)
    fit_steps: int = param(50, "variations and morphs of clips: steps that fit the clip's latent to its sound "
                           "(0: the VAE encoder's estimate alone, about 1 s faster, further from the clip)", ge=0,
                           le=500, http=False)
    morph_steps: int = param(5, "morph: clips from one end to the other, both included", ge=2, le=1000,
                             http=False)
    pieces: str | None = param(None, "kit: the pieces, separated by spaces or commas (kick, rim, snare, clap, "
                               "closed_hat, low_tom, open_hat, mid_tom, crash, high_tom, ride, cowbell, shaker, "
                               "perc); default: the first eleven", normalize=_pieces_text, http=False, join=",")
    round_robins: int = param(1, "kit: variations per piece and velocity", ge=1, le=8, http=False)
    velocity_layers: int = param(1, "kit: velocity layers, soft ... hard (-12 ... 0 dB)", ge=1, le=5, http=False)
    relatedness: float = param(0.5, "kit: how much the pieces share their start noise, 0 to 1", ge=0.0, le=1.0,
                               http=False)

    def __post_init__(self) -> None:
        for spec in SPECS.values():
            object.__setattr__(self, spec.name, spec.check(getattr(self, spec.name)))
        check_seeds(self.seed, self.count)

    @classmethod
    def from_kwargs(cls, values: Mapping[str, Any], base: GenerationParams | None = None) -> GenerationParams:
        """Settings by name or alias over ``base`` (the defaults); errors use the caller's name."""
        chosen: dict[str, Any] = {}
        said: dict[str, str] = {}
        for key, value in values.items():
            name = ALIASES.get(key)
            if name is None:
                raise UserInputError(f"unknown generation setting {key!r} (valid: {', '.join(SPECS)})")
            if name in chosen:
                raise UserInputError(f"{said[name]} and {key} both set {name}")
            chosen[name], said[name] = value, key
        try:
            return dataclasses.replace(base or DEFAULTS, **chosen)
        except ParamError as exc:
            raise exc.renamed(said.get(exc.name, exc.name)) from None

    def knobs(self) -> dict[str, float]:
        """The timbre knobs that are set, by name (``timbre.KNOBS``)."""
        from sampleforge.timbre import KNOBS

        return {k: getattr(self, k) for k in KNOBS if getattr(self, k) is not None}

    def with_seed(self, clips: int | None = None) -> GenerationParams:
        """These settings with a random seed if none was given, one whose ``clips`` (default ``count``) seeds are all
        valid."""
        return self if self.seed is not None else dataclasses.replace(self, seed=random_seed(clips or self.count))


def _bind_specs() -> dict[str, Spec]:
    hints = typing.get_type_hints(GenerationParams)
    specs = {}
    for f in dataclasses.fields(GenerationParams):
        kind = next(t for t in typing.get_args(hints[f.name]) or (hints[f.name],) if t is not type(None))
        specs[f.name] = dataclasses.replace(f.metadata["spec"], name=f.name, kind=kind)
    return specs


SPECS: dict[str, Spec] = _bind_specs()
# settings of the producer's workflow only (vary, morph, kit); `generate` takes the others
WORKFLOW_SETTINGS = ("strength", "input", "fit_steps", "morph_steps", "pieces", "round_robins", "velocity_layers",
                     "relatedness")
GENERATE_SETTINGS = tuple(name for name in SPECS if name not in WORKFLOW_SETTINGS)
ALIASES: dict[str, str] = {a: s.name for s in SPECS.values() for a in (s.name, *s.aliases)}
DEFAULTS = GenerationParams()


# ---- the command line ------------------------------------------------------------------------------------


# settings a command line may also give without their flag, in this order: `vary my_snare.wav bright snare`
POSITIONAL = {"input": ("input_word", "?", "INPUT"), "prompt": ("prompt_words", "*", "PROMPT")}


def add_arguments(parser: argparse.ArgumentParser, names: Iterable[str] | None = None,
                  base: GenerationParams | None = None) -> None:
    """Add ``--steps``, ``--cfg-scale``, ... for ``names`` (default: all); ``base`` gives the defaults shown.
    ``input`` and ``prompt`` may also be given without their flag: `generate punchy 808 kick`.

    Values stay text until ``from_namespace``, so a bad one is a one-line error naming the flag.
    """
    base = base or DEFAULTS
    names = tuple(names or SPECS)
    for name, (dest, nargs, metavar) in POSITIONAL.items():
        if name in names:
            parser.add_argument(dest, nargs=nargs, default=None, metavar=metavar,
                                help=f"the same as {SPECS[name].flag}" + (" (its words)" if nargs == "*" else ""))
    for name in names:
        spec = SPECS[name]
        default = getattr(base, name)
        shown = f" (default {default})" if default is not None and default != "" else ""
        choices = spec.choices if isinstance(spec.choices, tuple) else None
        parser.add_argument(spec.flag, dest=name, default=None, metavar=_metavar(spec, choices),
                            nargs="+" if spec.join is not None else None, help=f"{spec.help}{shown}")


def _metavar(spec: Spec, choices: tuple[str, ...] | None) -> str:
    if choices is not None:
        return "{" + ",".join(choices) + "}"
    if spec.join is not None:  # several: a prompt's words, a kit's pieces
        return "WORD" if spec.join == " " else spec.name.removesuffix("s").upper()
    return {int: "N", float: "X"}.get(spec.kind, "TEXT")


def from_namespace(args: argparse.Namespace, base: GenerationParams | None = None) -> GenerationParams:
    """The settings given on the command line over ``base``; a bad value raises ParamError naming its flag."""
    given: dict[str, Any] = {}
    for name, spec in SPECS.items():
        text = _flag_or_positional(args, name)
        if text is None:
            continue
        try:
            given[name] = spec.parse(text)
        except ParamError as exc:
            raise exc.renamed(spec.flag) from None
    try:
        return dataclasses.replace(base or DEFAULTS, **given)
    except ParamError as exc:
        raise exc.renamed(SPECS[exc.name].flag) from None


def _flag_or_positional(args: argparse.Namespace, name: str) -> str | None:
    """The text given for setting ``name``: by its flag or without it (``POSITIONAL``); both, differing, is a
    ParamError."""
    text = getattr(args, name, None)
    if isinstance(text, list):  # a flag that takes several values: `--pieces kick snare`, `--prompt punchy kick`
        text = (SPECS[name].join or " ").join(text)
    if name not in POSITIONAL:
        return text
    dest, nargs, metavar = POSITIONAL[name]
    value = getattr(args, dest, None)
    bare = " ".join(value) if isinstance(value, list) and value else value if isinstance(value, str) else None
    if bare is None or text is None or bare == text:
        return text if bare is None else bare
    what = f"the prompt {bare!r}" if nargs == "*" else f"{metavar} {bare!r}"
    raise ParamError(SPECS[name].flag, f"{text!r} and {what} differ: give it once")


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer >= ``low`` (else a one-line usage error naming the flag)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer of at least {low}, got {text}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    return parse


def positive_float(text: str) -> float:
    """An argparse ``type``: a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def parse_list(text: str | list[str], name: str) -> list[Any]:
    """``"1,3,5"`` (or ``["1", "3,5"]``, a flag's several values) for setting ``name`` -> [1, 3, 5], each item
    checked; an error names the flag."""
    spec = SPECS[name]
    text = ",".join(text) if isinstance(text, list) else str(text)
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ParamError(spec.flag, f"expects a comma-separated list, got {text!r}")
    try:
        return [spec.check(spec.parse(t)) for t in items]
    except ParamError as exc:
        raise exc.renamed(spec.flag) from None
