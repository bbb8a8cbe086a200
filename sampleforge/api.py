"""The reference API: ``generate(...) -> Path`` to a finished WAV.

    generate(diffusion_checkpoint=..., vae_checkpoint=..., vocoder_checkpoint=None,   # None → Griffin-Lim
             prompt="808", cfg_scale=None, ddim_steps=None, output_path=None, seed=None, **settings) -> Path

``cfg_scale`` and ``ddim_steps`` left None are the model's own (sampleforge's models: 50 steps; the guidance its
config names, 3 unless it names another; drums-v2: 4 for a prompt that sets no timbre knob, 3 for one that does).
Checkpoint arguments take a model folder (or a shipped model's name) or one component's ``.safetensors`` file;
omitted ones mean the shipped model (or ``model=``'s): ``vae_checkpoint`` alone replaces the VAE only. An
explicit ``vocoder_checkpoint=None`` keeps the reference meaning: Griffin-Lim instead of the neural vocoder.
What a generation warns of (an unknown keyword, a prompt naming two classes) is issued as a ``GenerationWarning``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from sampleforge.audio.io import read_metadata
from sampleforge.backends.base import BackendOptions, issue_warnings
from sampleforge.bundle import DEFAULT_MODEL, resolve_model
from sampleforge.errors import (
    CheckpointError,
    ParamError,
    SampleforgeError,
    UserInputError,
    file_in_the_way,
    names_a_folder,
)
from sampleforge.params import ALIASES, DEFAULTS, GENERATE_SETTINGS, WORKFLOW_SETTINGS, GenerationParams
from sampleforge.pipeline import Generator
from sampleforge.taxonomy import CATEGORY_WORDS, category_from_tokens
from sampleforge.text.keywords import tokenize
from sampleforge.timbre import conditioned_knobs

_DEFAULT: Any = object()  # "argument omitted" (distinct from an explicit None)
GENERATIONS_DIR = Path("generations")

PathLike = str | os.PathLike[str]


def vocoder_checkpoint(choice: bool | str | os.PathLike[str]) -> Any:
    """A vocoder choice (True: the model's own, False: Griffin-Lim, a folder, name or file: that one) as
    ``load_generator``'s ``vocoder_checkpoint``."""
    if isinstance(choice, bool):
        return _DEFAULT if choice else None
    return choice


def _component(arg: Any, name: str) -> tuple[Path | None, Path | None]:
    """A checkpoint argument → (model folder, component file override)."""
    if arg is _DEFAULT:
        return None, None
    if not isinstance(arg, str | os.PathLike) or not str(arg):
        raise ParamError(name, f": a model folder or name, or a .safetensors file, got {arg!r}")
    p = Path(arg)
    if p.suffix == ".safetensors":
        if not p.is_file():
            raise ParamError(name, f": {p} does not exist")
        return None, p
    if p.suffix == ".pt":
        raise ParamError(
            name, f": {p} is a legacy .pt checkpoint; convert it first with `sampleforge import {p} --vae VAE.pt --out DIR`"
        )
    try:
        return resolve_model(arg), None
    except CheckpointError as exc:
        hint = ""
        if name == "diffusion_checkpoint" and not p.exists() and os.sep not in str(arg):
            hint = " (the first positional argument is the diffusion checkpoint; the prompt goes as prompt=...)"
        raise ParamError(name, f": {exc}{hint}") from None


def _vocoder_file(folder: Path) -> Path:
    """The vocoder weights of a model or vocoder folder given as ``vocoder_checkpoint``; ParamError when it has
    none (a model that renders with Griffin-Lim)."""
    file = folder / "vocoder.safetensors"
    if not file.is_file():
        raise ParamError("vocoder_checkpoint", f": {folder} has no vocoder (no vocoder.safetensors); give a vocoder "
                                               "folder or name, e.g. drums-vocoder-v1")
    return file


def _stamp(folder: Path, overrides: Mapping[str, str | None]) -> tuple[tuple[str, int, int], ...]:
    """Size and modification time of every file a model loads: a folder written again (a training run's model/)
    is loaded again, not served from the cache."""
    files = [*sorted(folder.glob("*.safetensors")), *(folder / n for n in ("config.json", "vocab.json", "timbre.json")),
             *(Path(v) for v in overrides.values() if v)]
    return tuple((str(f), st.st_size, st.st_mtime_ns) for f in files if f.is_file() and (st := f.stat()))


@lru_cache(maxsize=2)
def _generator(folder: str, overrides: tuple[tuple[str, str | None], ...], options: BackendOptions,
               stamp: tuple[tuple[str, int, int], ...] = ()) -> Generator:
    """A loaded Generator; ``stamp`` (``_stamp``) is only part of the cache's key."""
    comps: dict[str, Path | None] = {k: (Path(v) if v else None) for k, v in overrides}
    return Generator.from_options(folder, options, components=comps or None)


@lru_cache(maxsize=2)
def _backend(model: str, options: BackendOptions) -> Any:
    from sampleforge.backends import load_backend

    return load_backend(model, options)


MAX_NAME_WORD = 24  # characters of a prompt word in a file name (the hash stands for the whole prompt)


def auto_name(prompt: str, seed: int, model: str, steps: int, cfg_scale: float,
              settings: Mapping[str, Any] | None = None) -> Path:
    """``generations/<class>_<keywords>_<hash>.wav`` (class "drum" when the prompt names none; at most four
    keywords, each cut to ``MAX_NAME_WORD`` characters, so that any prompt gives a name the file system takes).
    The hash is of the arguments and of ``settings`` (``named_settings``: the others that shape the sound), so
    that a clip made otherwise is another file, not an overwrite."""
    tokens = tokenize(prompt)
    category = category_from_tokens(tokens) or "drum"
    class_words = set(CATEGORY_WORDS.get(category, ()))
    rest = [t[:MAX_NAME_WORD] for t in tokens if t not in class_words][:4]
    more = "".join(f"|{k}={v}" for k, v in sorted((settings or {}).items()))
    digest = hashlib.sha1(f"{prompt}|{seed}|{model}|{steps}|{cfg_scale}{more}".encode()).hexdigest()[:8]
    stem = "_".join([category, *rest, digest])
    return GENERATIONS_DIR / f"{stem}.wav"


# the settings besides auto_name's own arguments that a file's name stands for (not: how many clips, how a model
# is held in memory)
NAMED_SETTINGS = tuple(n for n in GENERATE_SETTINGS if n not in ("prompt", "seed", "model", "steps", "cfg_scale",
                                                               "count", "offload"))


def named_settings(params: GenerationParams) -> dict[str, Any]:
    """The ``NAMED_SETTINGS`` of ``params`` (as asked, before a model fills in its own) other than the defaults:
    ``auto_name``'s ``settings``. Default settings name a file as before."""
    return {n: getattr(params, n) for n in NAMED_SETTINGS if getattr(params, n) != getattr(DEFAULTS, n)}


def load_generator(
    diffusion_checkpoint: Any = _DEFAULT,
    vae_checkpoint: Any = _DEFAULT,
    vocoder_checkpoint: Any = _DEFAULT,
    model: PathLike | None = None,
    options: BackendOptions | None = None,
) -> tuple[Any, bool]:
    """Resolve the reference API's checkpoint arguments → (a cached Generator, whether to use its vocoder).
    ``model`` may also be ``MODEL+VOCODER`` (that model with that vocoder; ``vocoder_checkpoint`` as well is a
    UserInputError) or another format (a diffusers folder, ``hf:OWNER/NAME``, a ``.ckpt``): its backend.
    ``options``: how the model is loaded (device, precision, int8 quantisation...; default: ``BackendOptions()``),
    whichever checkpoint arguments are given."""
    options = options or BackendOptions()
    if isinstance(vocoder_checkpoint, bool):  # as make_kit's, vary's and morph's vocoder=: True the model's own
        vocoder_checkpoint = _DEFAULT if vocoder_checkpoint else None
    ref = None
    if model is not None:
        from sampleforge.backends.resolve import resolve

        ref = resolve(model)
        if ref.format != "sampleforge":
            if any(a is not _DEFAULT for a in (diffusion_checkpoint, vae_checkpoint, vocoder_checkpoint)):
                raise UserInputError("diffusion_checkpoint, vae_checkpoint and vocoder_checkpoint apply to "
                                     "sampleforge models only")
            return _backend(str(model), options), True
        if ref.names_vocoder and vocoder_checkpoint is not _DEFAULT:
            raise ref.conflict("vocoder_checkpoint=")
    folder, unet_file = _component(diffusion_checkpoint, "diffusion_checkpoint")
    vae_folder, vae_file = _component(vae_checkpoint, "vae_checkpoint")
    if folder is not None and ref is not None and folder != ref.path:
        raise UserInputError(f"model {model} and diffusion_checkpoint {diffusion_checkpoint} both name the model: "
                             "give one of them")
    base = folder or (ref.path if ref is not None else resolve_model(DEFAULT_MODEL))
    overrides: dict[str, str | None] = {}
    if unet_file is not None:
        overrides["unet"] = str(unet_file)
    if vae_file is not None:
        overrides["vae"] = str(vae_file)
    elif vae_folder is not None and vae_folder != base:
        overrides["vae"] = str(vae_folder / "vae.safetensors")
    named = ref.components if ref is not None else None  # MODEL+VOCODER's vocoder
    if named is not None:
        overrides["vocoder"] = None if named["vocoder"] is None else str(named["vocoder"])
    elif vocoder_checkpoint is None:
        overrides["vocoder"] = None
    elif vocoder_checkpoint is not _DEFAULT:
        voc_folder, voc_file = _component(vocoder_checkpoint, "vocoder_checkpoint")
        overrides["vocoder"] = str(voc_file or _vocoder_file(voc_folder or base))
    return (_generator(str(base), tuple(sorted(overrides.items())), options, _stamp(base, overrides)),
            vocoder_checkpoint is not None)


CLIP_SUFFIXES = (".wav", ".flac")  # what sampleforge writes (``format``: WAV of some sample type, or FLAC)


def output_path_of(value: Any, name: str = "output_path") -> Path:
    """A clip's file name given as text or a path; ParamError naming ``name`` for anything else, or for text that
    names a folder (ends in a slash, ``.`` or ``..``: a clip would be written by the folder's name)."""
    if not isinstance(value, str | os.PathLike) or not str(value).strip():
        raise ParamError(name, f": a file path, got {value!r}")
    text = os.fspath(value)
    if names_a_folder(text):
        raise ParamError(name, f": {text} names a folder: give a file name")
    if "\0" in text:
        raise ParamError(name, f": {text!r} holds a NUL character")
    return Path(text)


def output_format(path: Path, fmt: str | None, name: str = "output_path", cli: bool = False) -> str:
    """The format a clip named ``path`` is written in: ``fmt``, or when it is None (not given) FLAC for a .flac
    name and WAV otherwise. ParamError naming ``name`` when the name cannot be a clip's: no name before its suffix,
    a suffix other than .wav or .flac (a WAV called .mp3 would mislead), or a ``fmt`` of the other container.
    ``cli``: the message names the command's flags (``--output``, ``--format``) instead of the parameters."""
    def setting(n: str, value: Any = None) -> str:
        flag = "--" + n.replace("_", "-")
        return (flag if cli else n) if value is None else (f"{flag} {value}" if cli else f"{n}={str(value)!r}")

    suffix = path.suffix.lower()
    if path.name.lower() in CLIP_SUFFIXES:
        raise ParamError(setting(name), f"{path}: give the file a name before its suffix (e.g. "
                                        f"{setting(name, path.with_name('kick' + path.name))})")
    if suffix not in CLIP_SUFFIXES:
        raise ParamError(setting(name), f"{path}: sampleforge writes .wav or .flac files (see {setting('format')}); "
                                        f"e.g. {setting(name, path.with_suffix('.wav'))}")
    if fmt is None:
        return "flac" if suffix == ".flac" else "wav"
    if (suffix == ".flac") != (fmt == "flac"):
        raise ParamError(setting(name), f"{path} and {setting('format', fmt)} disagree: {setting('format', fmt)} "
                                        f"writes {'FLAC' if fmt == 'flac' else 'WAV'}")
    return fmt


def audio_suffix(path: Path, fmt: str) -> Path:
    """``path`` with the suffix of ``fmt``'s container when it has the other one (x.wav -> x.flac)."""
    ext = ".flac" if fmt == "flac" else ".wav"
    return path.with_suffix(ext) if path.suffix.lower() in CLIP_SUFFIXES and path.suffix.lower() != ext else path


def write_clip(out: Path, wav: Any, sample_rate: int, params: GenerationParams, meta: Mapping[str, str]) -> Path:
    """One finished clip (T,) to ``out`` as ``params`` ask: cut to ``length`` (``auto``: its natural length), in
    ``format``; ``meta`` is its provenance. The CLI, the Python API and the workflow write clips so."""
    from sampleforge.audio.finish import apply_length, parse_length
    from sampleforge.audio.io import write_audio

    samples = wav.numpy() if hasattr(wav, "numpy") else wav
    return write_audio(out, apply_length(samples, sample_rate, parse_length(params.length)), sample_rate, dict(meta),
                       format=params.format)


def candidate_meta(candidates: list[int | None] | None, k: int) -> dict[str, str]:
    """Which of clip k's candidates the drum judges kept, as its file records it ("none": the model's own clip);
    nothing when the call had no ``candidates``."""
    if candidates is None:
        return {}
    kept = candidates[k]
    return {"candidate": "none" if kept is None else str(kept)}


def check_writable(path: Path, name: str = "output") -> None:
    """Fail before generating when ``path`` cannot be written (ParamError naming it and the setting ``name`` that
    gave it), or when it is a file that sampleforge did not write (the user's own sample or notes): a clip
    replaces only an earlier clip.

    Creates the missing parent folders (as writing would) and probes them with a temporary file.
    """
    try:
        if path.is_dir():
            raise ParamError(name, f": {path} is a folder, not a file")
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".sampleforge-probe-"):
            pass
        if len(path.name.encode()) > 255:
            raise OSError(36, "File name too long")
    except OSError as exc:
        problem = file_in_the_way(path.parent) or f"cannot write to {path.parent} ({exc.strerror or exc})"
        raise ParamError(name, f": {problem}") from None
    if path.exists() and not os.access(path, os.W_OK):
        raise ParamError(name, f": {path} is not writable")
    if path.exists() and not written_here(path):
        raise ParamError(name, f": {path} exists and was not written by sampleforge; not replaced (remove it, or "
                               "name another file)")


def written_here(path: Path) -> bool:
    """Whether the file ``path`` is a clip sampleforge wrote (its metadata names the model that made it)."""
    try:
        return "model" in read_metadata(path)
    except SampleforgeError:
        return False


def provenance(gen: Any, p: GenerationParams, ends: tuple[str, str] | None = None, **extra: Any) -> dict[str, str]:
    """A generated file's metadata, the same from every interface: model id, prompt, seed, the settings that shaped
    it (steps, guidance, sampler, duration, precision, and eta, a timestep offset or shift, quantisation and the
    init or inpainting settings when set), the timbre knobs the clip was conditioned on
    (``timbre.conditioned_knobs``, as JSON: ``knobs``, or ``knobs_a`` and ``knobs_b`` for the prompts of a morph's
    ``ends``), and ``extra``, which may override any of them (a clip's own seed and prompt); all as text, None left
    out."""
    def knobs(prompt: str) -> str | None:
        values = conditioned_knobs(gen, prompt, p.knobs())
        return json.dumps(values, sort_keys=True) if values else None

    conditioned = {"knobs": knobs(extra.get("prompt", p.prompt))} if ends is None else \
        {"knobs_a": knobs(ends[0]), "knobs_b": knobs(ends[1])}
    shaping = {  # settings that change the sound, where they are not the ones every clip has
        "eta": p.eta, "steps_offset": p.steps_offset or None, "flow_shift": None if p.flow_shift == 1.0 else p.flow_shift,
        "quantize": None if p.quantize == "none" else p.quantize, "init_noise": p.init_noise,
        "mask_start": p.mask_start, "mask_end": p.mask_end}
    base = {"model": gen.id, "prompt": p.prompt, "seed": p.seed, "steps": p.steps, "cfg_scale": p.cfg_scale,
            "sampler": p.sampler, "duration": p.duration, "precision": p.precision, **shaping, "format": p.format,
            "length": p.length, "candidates": p.candidates, **conditioned, **extra}
    return {k: str(v) for k, v in base.items() if v is not None}


def generate(
    diffusion_checkpoint: Any = _DEFAULT,
    vae_checkpoint: Any = _DEFAULT,
    vocoder_checkpoint: Any = _DEFAULT,
    prompt: str = DEFAULTS.prompt,
    cfg_scale: float | None = None,
    ddim_steps: int | None = None,
    output_path: PathLike | None = None,
    seed: int | None = None,
    **settings: Any,
) -> Path:
    """Generate one clip and write it (a 44.1 kHz mono WAV, 32-bit float, peak 0.95, unless ``format`` and
    ``length`` say otherwise: a ``.flac`` ``output_path`` is FLAC); return its path.

    ``settings``: further ``GenerationParams`` fields (sampler, duration, eta, format, length, timbre knobs, ...),
    or ``params=GenerationParams(...)`` to start from; all are checked before the model loads. Those of a variation, morph or kit (strength, input, ...) are refused:
    ``vary``, ``morph`` and ``make_kit`` take them.
    """
    base = settings.pop("params", None)  # a GenerationParams to start from, as Generator.generate takes
    if base is not None and not isinstance(base, GenerationParams):
        raise ParamError("params", f": a GenerationParams, got {type(base).__name__}")
    arguments = {"prompt": prompt, "cfg_scale": cfg_scale, "ddim_steps": ddim_steps, "seed": seed}
    if base is not None:  # over params, only the arguments given (left out, they are None or the empty prompt)
        arguments = {k: v for k, v in arguments.items()
                     if v is not None and not (k == "prompt" and v == DEFAULTS.prompt)}
    params = GenerationParams.from_kwargs({**arguments, **settings}, base=base or DEFAULTS)
    if params.count != 1:
        count_name = next((k for k in settings if ALIASES.get(k) == "count"), "params.count")  # or params= gave it
        raise ParamError(count_name, f": generate() makes one clip, got {params.count} (see Generator.generate)")
    workflow = [n for n in WORKFLOW_SETTINGS if getattr(params, n) != getattr(DEFAULTS, n)]
    if workflow:  # named as the caller gave it: a keyword (or its alias), else the params object's field
        name = next((k for k in settings if ALIASES.get(k) == workflow[0]), f"params.{workflow[0]}")
        raise ParamError(name, ": generate() makes a clip from a prompt; sampleforge.vary, morph and make_kit "
                               "take this setting")
    out = None if output_path is None else output_path_of(output_path)
    if out is not None:
        params = dataclasses.replace(params, format=output_format(out, params.format if "format" in settings else None))
    gen, use_vocoder = load_generator(diffusion_checkpoint, vae_checkpoint, vocoder_checkpoint, model=params.model,
                                      options=BackendOptions.from_params(params))
    named = named_settings(params)
    params = gen.resolve(params)
    assert params.seed is not None and params.sampler is not None
    if out is None:
        out = audio_suffix(auto_name(params.prompt, params.seed, gen.id, params.steps, params.cfg_scale, named),
                           params.format)
    check_writable(out, "output_path")
    result = gen.run(params, vocoder=use_vocoder)
    issue_warnings(result.warnings)
    write_clip(out, result.audio[0], gen.sample_rate, params,
               {**provenance(gen, params), **candidate_meta(result.candidates, 0)})
    return out
