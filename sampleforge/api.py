"""The reference API: ``generate(...) -> Path`` to a finished WAV.

    generate(diffusion_checkpoint=..., vae_checkpoint=..., vocoder_checkpoint=None,   # None → Griffin-Lim
             prompt="808", cfg_scale=3.0, ddim_steps=50, output_path=None, seed=None, **settings) -> Path

Checkpoint arguments take a model folder (or a shipped model's name) or one component's ``.safetensors`` file;
omitted ones mean the shipped model. An explicit ``vocoder_checkpoint=None`` keeps the reference meaning:
Griffin-Lim instead of the neural vocoder.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from sampleforge.audio.io import read_metadata, write_wav
from sampleforge.backends.base import BackendOptions
from sampleforge.bundle import DEFAULT_MODEL, resolve_model
from sampleforge.errors import ParamError, SampleforgeError, UserInputError, file_in_the_way
from sampleforge.params import DEFAULTS, GENERATE_SETTINGS, GenerationParams
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
    return resolve_model(arg), None


@lru_cache(maxsize=2)
def _generator(folder: str, overrides: tuple[tuple[str, str | None], ...], options: BackendOptions) -> Generator:
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
    base = folder or vae_folder or (ref.path if ref is not None else resolve_model(DEFAULT_MODEL))
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
        overrides["vocoder"] = str(voc_file or (voc_folder or base) / "vocoder.safetensors")
    return _generator(str(base), tuple(sorted(overrides.items())), options), vocoder_checkpoint is not None


def check_writable(path: Path, name: str = "output") -> None:
    """Fail before generating when ``path`` cannot be written (ParamError naming it and the setting ``name`` that
    gave it), or when it is a file that sampleforge did not write (the user's own sample or notes): a clip
    replaces only an earlier clip.

    Creates the missing parent folders (as writing would) and probes them with a temporary file.
    """
    if path.is_dir():
        raise ParamError(name, f": {path} is a folder, not a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".sampleforge-probe-"):
            pass
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
    """Generate one one-shot and write it as a 44.1 kHz mono float32 WAV (peak 0.95); return its path.

    ``settings``: further ``GenerationParams`` fields (sampler, duration, eta, ...); all are checked before
    the model loads.
    """
    params = GenerationParams.from_kwargs(
        {"prompt": prompt, "cfg_scale": cfg_scale, "ddim_steps": ddim_steps, "seed": seed, **settings})
    if params.count != 1:
        raise UserInputError(f"count: generate() makes one clip, got {params.count} (see Generator.generate)")
    gen, use_vocoder = load_generator(diffusion_checkpoint, vae_checkpoint, vocoder_checkpoint, model=params.model,
                                      options=BackendOptions.from_params(params))
    named = named_settings(params)
    params = gen.resolve(params)
    assert params.seed is not None and params.sampler is not None
    if output_path is not None and (not isinstance(output_path, str | os.PathLike) or not str(output_path)):
        raise ParamError("output_path", f": a file path, got {output_path!r}")
    out = Path(output_path) if output_path is not None else \
        auto_name(params.prompt, params.seed, gen.id, params.steps, params.cfg_scale, named)
    check_writable(out, "output_path")
    result = gen.run(params, vocoder=use_vocoder)
    write_wav(out, result.audio[0].numpy(), gen.sample_rate, provenance(gen, params))
    return out
