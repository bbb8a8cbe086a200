"""The producer's workflow as file-writing functions (the Python API behind ``sampleforge vary | morph | kit``):

    sampleforge.vary("my_snare.wav", strength=0.3, count=8, prompt="snare", out_dir="variations")  # -> [Path]
    sampleforge.morph(MorphEnd("kick", 1), MorphEnd("snare", 2), morph_steps=5, out_dir="morph")    # -> [Path]
    sampleforge.make_kit("mykit", prompt="dusty 808", round_robins=2, velocity_layers=3)           # -> Path

Settings are ``GenerationParams`` fields by name (checked before the model loads). Every file carries its
provenance (prompt, seed, model id, parameters) in its metadata. The generator comes from
``api.load_generator`` (cached), or pass ``generator=`` a loaded one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sampleforge.api import provenance, write_clip
from sampleforge.audio.io import FORMATS, read_audio, read_metadata
from sampleforge.errors import AudioReadError, ParamError, SampleforgeError, UserInputError
from sampleforge.params import DEFAULTS, GenerationParams
from sampleforge.pipeline import Callback, Generation, Generator, MorphEnd, check_end

PathLike = str | os.PathLike[str]
Warn = Callable[[str], None] | None  # told each warning (unknown keywords, ...)


Vocoder = bool | str | os.PathLike[str]  # True: the model's own (Griffin-Lim when it has none); False: Griffin-Lim;
# a vocoder folder, a shipped vocoder's name ("drums-vocoder-v1") or a vocoder.safetensors: that one


def _check_generator(generator: object, model: PathLike | None, vocoder: Vocoder) -> None:
    """A ``generator=`` that is not a loaded sampleforge Generator, or given with ``model=`` or a vocoder's name,
    is a UserInputError naming the parameter (before anything is written or loaded)."""
    if generator is None:
        return
    if not isinstance(generator, Generator):
        raise ParamError("generator", f": a loaded Generator (Generator.from_pretrained(...)), got "
                         f"{type(generator).__name__} {str(generator)[:40]!r}; a model's name or folder goes as model=")
    if model is not None:
        raise ParamError("model", f": give the model or a loaded generator, not both (the generator is {generator.name})")
    if not isinstance(vocoder, bool):
        raise UserInputError("vocoder: give a vocoder folder or name with the model, not with a loaded generator")


def _generator(generator: Generator | None, model: PathLike | None, vocoder: Vocoder) -> tuple[Generator, bool]:
    _check_generator(generator, model, vocoder)
    if generator is not None:
        assert isinstance(vocoder, bool)
        return generator, vocoder
    from sampleforge import api

    if vocoder is not True:
        from sampleforge.backends.resolve import refuse_second_vocoder

        refuse_second_vocoder(model, "vocoder=")
    gen, use_vocoder = api.load_generator(vocoder_checkpoint=api.vocoder_checkpoint(vocoder), model=model)
    if not isinstance(gen, Generator):
        raise ParamError("model", f": {model} is a {getattr(gen, 'kind', 'foreign')} model; variations, morphs and "
                         "kits need a sampleforge model")
    return gen, use_vocoder


def _tell(warn: Warn, lines: Sequence[str]) -> None:
    """Each warning to ``warn``, or, without one, as a Python warning (``GenerationWarning``) to the caller."""
    if warn is None:
        from sampleforge.backends.base import issue_warnings

        issue_warnings(lines, stacklevel=4)
        return
    for line in lines:
        warn(line)


def input_sha256(path: PathLike) -> str:
    """The SHA-256 (first 16 hex digits) of an input file's bytes: what a variation records as ``input_sha256``
    (and a morph after its input's name), so that the file it came from can be told apart from another of the
    same name."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def load_input(path: PathLike, sample_rate: int) -> tuple[np.ndarray, str]:
    """An input clip (T,) at ``sample_rate`` and its file's ``input_sha256``; AudioReadError names the file."""
    p = Path(path)
    wav = read_audio(p, sample_rate)
    if float(np.abs(wav).max()) < 1e-4:
        raise AudioReadError(f"{p}: silent (peak below -80 dBFS): nothing to vary")
    return wav, input_sha256(p)


def write_clips(result: Generation, names: Sequence[Path], gen: Generator, meta: Sequence[dict[str, str]]) -> list[Path]:
    """Write each clip of ``result`` to its name at the settings' length and format, with its metadata."""
    return [write_clip(path, wav, gen.sample_rate, result.params, m)
            for path, wav, m in zip(names, result.audio.numpy(), meta, strict=True)]


def _prepare_dir(out_dir: PathLike) -> Path:
    from sampleforge.api import check_writable

    d = Path(out_dir)
    check_writable(d / "probe.wav", "out_dir")
    return d


def vary(
    input: PathLike | None = None,
    params: GenerationParams | None = None,
    *,
    out_dir: PathLike = "generations",
    model: PathLike | None = None,
    vocoder: Vocoder = True,
    generator: Generator | None = None,
    callback: Callback | None = None,
    warn: Warn = None,
    **settings: Any,
) -> list[Path]:
    """``count`` variations of the sample ``input`` (see ``Generator.vary``) written to ``out_dir`` as
    ``<input stem>_var<strength %>_<seed>.<ext>``, with ``_<hash>`` before the suffix when a prompt, another
    vocoder or any other setting that shapes the sound is given (so that another prompt with the same seed is
    another file); a model given (``model=``, ``generator=``) is in the hash too, so that another model's
    variation is another file. A file of that name that is not a variation of this very sample (another
    ``snare.wav``) is not replaced: ParamError before generating."""
    if input is not None:
        if not isinstance(input, (str, os.PathLike)):
            raise ParamError("input", f": a file path, got {type(input).__name__} (for samples in memory use "
                             "Generator.vary)")
        settings["input"] = os.fspath(input)
    p = GenerationParams.from_kwargs(settings, base=params or DEFAULTS).with_seed()  # the names, before generating
    if p.input is None:
        raise ParamError("input", ": give the sample to vary")
    assert p.seed is not None
    _check_generator(generator, model, vocoder)
    d = _prepare_dir(out_dir)
    gen, use_vocoder = _generator(generator, model, vocoder)
    wav, digest = load_input(p.input, gen.sample_rate)
    stem = Path(p.input).stem[:60]
    ext = FORMATS[p.format][0]
    chosen = model is not None or generator is not None or p.model is not None  # not the default model
    tag = _settings_tag(p, vocoder, gen.id if chosen else None)
    names = [d / f"{stem}_var{int(round(p.strength * 100)):03d}_{p.seed + k}{tag}.{ext}" for k in range(p.count)]
    _keep_others(names, digest, Path(p.input).name)
    result = gen.vary(wav, p, vocoder=use_vocoder, callback=callback)
    _tell(warn, result.warnings)
    meta = [provenance(gen, result.params, seed=s, operation="vary", strength=p.strength, fit_steps=p.fit_steps,
                       input=Path(p.input).name, input_sha256=digest) for s in result.seeds]
    return write_clips(result, names, gen, meta)


def _settings_tag(p: GenerationParams, vocoder: Vocoder = True, model_id: str | None = None) -> str:
    """``_<hash>`` of the prompt and the settings that shape the sound, as asked, where they are not the defaults
    (``api.named_settings``, steps, cfg scale, fit steps, vocoder), and of ``model_id``, the loaded model's id when it is not
    the default model; "" when all are the defaults."""
    from sampleforge.api import named_settings

    asked = {k: getattr(p, k) for k in ("prompt", "steps", "cfg_scale", "fit_steps")
             if getattr(p, k) != getattr(DEFAULTS, k)}
    if model_id is not None:
        asked["model"] = model_id
    if vocoder is not True:  # Griffin-Lim or another vocoder
        asked["vocoder"] = vocoder if isinstance(vocoder, bool) else str(vocoder)
    shaping = sorted({**asked, **named_settings(p)}.items())
    return f"_{hashlib.sha1(repr(shaping).encode()).hexdigest()[:8]}" if shaping else ""


def _keep_others(names: Sequence[Path], digest: str, input_name: str) -> None:
    """ParamError naming out_dir when one of ``names`` exists and is not a variation of the input whose SHA-256
    starts with ``digest`` (a variation of another file of the same name, or a file of the user's)."""
    for name in names:
        if not name.exists():
            continue
        try:
            theirs = read_metadata(name).get("input_sha256")
        except SampleforgeError:
            theirs = None
        if theirs != digest:
            raise ParamError("out_dir", f": {name} exists and is not a variation of this {input_name}; not "
                             "replaced (vary into another out_dir)", mentions=("out_dir",))


def morph(
    a: MorphEnd,
    b: MorphEnd,
    params: GenerationParams | None = None,
    *,
    out_dir: PathLike = "generations",
    model: PathLike | None = None,
    vocoder: Vocoder = True,
    generator: Generator | None = None,
    callback: Callback | None = None,
    warn: Warn = None,
    **settings: Any,
) -> list[Path]:
    """``morph_steps`` clips from ``a`` to ``b`` (see ``Generator.morph``); ``a.audio`` / ``b.audio`` may be file
    paths. Written to ``out_dir`` as ``morph_<k>of<N>_<hash>.<ext>`` (k = 1 is ``a``); a file of that name that
    sampleforge did not write (the user's own) is not replaced: ParamError before generating. Where the ends'
    guidance scales differ, each file records its own (``cfg_scale``)."""
    a, b = check_end(a, "a"), check_end(b, "b")
    p = GenerationParams.from_kwargs(settings, base=params or DEFAULTS).with_seed()
    _check_generator(generator, model, vocoder)
    d = _prepare_dir(out_dir)
    gen, use_vocoder = _generator(generator, model, vocoder)
    ends, inputs = [], []
    for end in (a, b):
        if isinstance(end.audio, (str, os.PathLike)):
            wav, digest = load_input(end.audio, gen.sample_rate)
            inputs.append(f"{Path(end.audio).name}@{digest}")
            end = MorphEnd(end.prompt, end.seed, wav)
        ends.append(end)
    planned_params, planned_a, planned_b, _ = gen.morph_plan(a, b, p)
    planned = _morph_names(d, gen, a, b, inputs, planned_params, planned_a, planned_b)
    _keep_users(planned)  # before generating
    result = gen.morph(ends[0], ends[1], p, vocoder=use_vocoder, callback=callback)
    _tell(warn, result.warnings)
    sa, sb = result.seeds[0], result.seeds[-1]
    n = len(result.seeds)
    r = result.params
    names = _morph_names(d, gen, a, b, inputs, r, sa, sb)
    if names != planned:
        _keep_users(names)
    meta = []
    for k in range(n):
        extra: dict[str, Any] = {"operation": "morph", "prompt": f"{a.prompt} -> {b.prompt}",
                                 "seed": f"{sa} -> {sb}", "t": f"{k / (n - 1):.4f}", "prompt_a": a.prompt,
                                 "prompt_b": b.prompt}
        if inputs:
            extra |= {"input_a": inputs[0], "input_b": inputs[1], "strength": r.strength, "fit_steps": r.fit_steps}
        if result.cfg_scales is not None:  # the ends' scales differ: the one this clip was rendered at
            extra["cfg_scale"] = result.cfg_scales[k]
        meta.append(provenance(gen, r, (a.prompt, b.prompt), **extra))
    return write_clips(result, names, gen, meta)


def _morph_names(d: Path, gen: Generator, a: MorphEnd, b: MorphEnd, inputs: Sequence[str], r: GenerationParams,
                 sa: int, sb: int) -> list[Path]:
    """``morph_<k>of<N>_<hash>.<ext>`` in ``d``: the hash is of the ends (their seeds ``sa``, ``sb``), their input
    files, the model and the settings ``r`` as run but for the settings' seed, which no clip uses but through
    ``sa`` and ``sb`` (a random one, drawn when both ends name theirs, would give new names every run)."""
    settings = dataclasses.replace(r, seed=None)
    tag = hashlib.sha1(f"{a.prompt}|{sa}|{b.prompt}|{sb}|{inputs}|{gen.id}|{settings}".encode()).hexdigest()[:8]
    ext = FORMATS[r.format][0]
    return [d / f"morph_{k + 1}of{r.morph_steps}_{tag}.{ext}" for k in range(r.morph_steps)]


def _keep_users(names: Sequence[Path]) -> None:
    """ParamError naming out_dir when one of ``names`` cannot be written or is a file sampleforge did not write
    (``api.check_writable``): an earlier clip is replaced, the user's own file never."""
    from sampleforge.api import check_writable

    for name in names:
        check_writable(name, "out_dir")


def make_kit(
    out_dir: PathLike,
    params: GenerationParams | None = None,
    *,
    pad_seeds: dict[str, int] | None = None,
    name: str | None = None,
    overwrite: bool = False,
    model: PathLike | None = None,
    vocoder: Vocoder = True,
    generator: Generator | None = None,
    callback: Callback | None = None,
    warn: Warn = None,
    **settings: Any,
) -> Path:
    """Generate a kit (see ``kit.build.build_kit``; defaults ``KIT_DEFAULTS``: wav24 at natural length) and
    write it into ``out_dir`` (new or empty unless ``overwrite``) with its SFZ, Decent Sampler preset, Hydrogen
    drumkit.xml, GM map and kit.json. ``name``: the kit's name (default: from the prompt), text on one line.
    With ``overwrite``, an earlier kit's samples there that the new kit does not replace are removed; a file of
    the user's by a sample's name or by a preset's or kit.json's is never replaced (ParamError before
    generating)."""
    from sampleforge.kit.build import build_kit, check_pad_seeds
    from sampleforge.kit.pieces import KIT_DEFAULTS, parse_pieces
    from sampleforge.kit.writers import check_name, check_out_dir, check_replaceable, sample_names, write_kit

    if name is not None:
        check_name(name)
    p = GenerationParams.from_kwargs(settings, base=params or KIT_DEFAULTS)
    pieces = parse_pieces(p.pieces)
    check_pad_seeds(pad_seeds, pieces)
    _check_generator(generator, model, vocoder)
    out = Path(out_dir)
    check_out_dir(out, overwrite)  # before generating
    check_replaceable(out, sample_names(pieces, p.round_robins, p.velocity_layers, p.format))
    gen, use_vocoder = _generator(generator, model, vocoder)
    kit = build_kit(gen, p, pad_seeds=pad_seeds, name=name, vocoder=use_vocoder, callback=callback)
    _tell(warn, kit.warnings)
    write_kit(kit, out, p.format, overwrite=True)
    return out
