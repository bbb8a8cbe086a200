"""Running a workflow job in a worker: the variation, morph, kit pad or kit that routes/workflow.py queued.

A workflow job's ``request`` is ``{"operation": "vary" | "morph" | "pad" | "kit", "settings": {GenerationParams
fields}, ...}`` with every seed fixed when it was accepted, so a job interrupted by a restart runs again with
the same seeds and gives the same files. Its uploaded clips wait in its folder (``input_<field>.wav``); the
request keeps the SHA-256 of each clip's uploaded bytes (``input_sha256``: {field: digest}). A kit's request
holds its name as given (``kit_name``, shown by its presets) and, file-name safe, the name of its folder
(``name``).

Results: one entry per audio file, ``<k>.wav`` (or ``.flac``) with its provenance inside (a kit's samples are
``kit/<name>/<sample>.wav`` beside its SFZ, Decent Sampler preset, Hydrogen kit, GM map and kit.json), plus
``job.json`` and ``pack.zip`` (a kit: its folder, as ``sampleforge kit`` writes it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sampleforge.audio.finish import apply_length, parse_length
from sampleforge.audio.io import FORMATS, read_audio
from sampleforge.errors import SampleforgeError
from sampleforge.params import GenerationParams
from sampleforge.serve.job import Job
from sampleforge.serve.results import ResultFiles, ResultWriteError, from_file_system

Callback = Callable[[int, int], None]


@dataclass
class Rendered:
    """A workflow job's audio before it is written: finished clips or a kit."""

    clips: list[tuple[np.ndarray, dict[str, str], dict[str, Any]]]  # (audio (T,), file metadata, result fields)
    warnings: list[str]
    params: GenerationParams
    kit: Any = None  # a sampleforge.kit.build.Kit (operation "kit")


def settings(job: Job) -> GenerationParams:
    """The job's stored settings back as GenerationParams."""
    assert job.request is not None
    return GenerationParams.from_kwargs(job.request["settings"])


def _finished(gen: Any, p: GenerationParams, wav: np.ndarray) -> np.ndarray:
    return apply_length(wav, gen.sample_rate, parse_length(p.length))


def _input(files: ResultFiles, job: Job, field_name: str, sample_rate: int) -> np.ndarray:
    return read_audio(files.input_path(job.id, field_name), sample_rate)


def _upload(job: Job, files: ResultFiles, field_name: str) -> tuple[str, str | None]:
    """An uploaded clip as a file's provenance names its input: the name it is stored under (a request carries no
    file name) and the ``input_sha256`` of the uploaded bytes (None for a job stored without it)."""
    assert job.request is not None
    return files.input_path(job.id, field_name).name, job.request.get("input_sha256", {}).get(field_name)


def _morph_input(job: Job, files: ResultFiles, field_name: str) -> str:
    """A morph end's clip as a morph's files name it: ``<name>@<input_sha256>``."""
    name, digest = _upload(job, files, field_name)
    return f"{name}@{digest}" if digest else name


def _vary(job: Job, gen: Any, files: ResultFiles, callback: Callback) -> Rendered:
    from sampleforge.api import provenance

    result = gen.vary(_input(files, job, "audio", gen.sample_rate), settings(job), callback=callback)
    r, ext = result.params, FORMATS[result.params.format][0]
    name, digest = _upload(job, files, "audio")
    clips = [(_finished(gen, r, wav), provenance(gen, r, seed=seed, operation="vary", strength=r.strength,
                                                 fit_steps=r.fit_steps, input=name, input_sha256=digest),
              {"seed": seed, "name": f"variation_{seed}.{ext}"})
             for wav, seed in zip(result.audio.numpy(), result.seeds, strict=True)]
    return Rendered(clips, result.warnings, r)


def _morph(job: Job, gen: Any, files: ResultFiles, callback: Callback) -> Rendered:
    from sampleforge.api import provenance
    from sampleforge.pipeline import MorphEnd

    req = job.request
    assert req is not None
    ends = [MorphEnd(req[f"{end}_prompt"], req[f"{end}_seed"],
                     _input(files, job, f"{end}_audio", gen.sample_rate) if req["clips"] else None)
            for end in ("from", "to")]
    result = gen.morph(ends[0], ends[1], settings(job), callback=callback)
    r, n = result.params, len(result.seeds)
    sa, sb, ext = result.seeds[0], result.seeds[-1], FORMATS[result.params.format][0]
    inputs = [_morph_input(job, files, f"{end}_audio") for end in ("from", "to")] if req["clips"] else []
    clips = [(_finished(gen, r, wav),
              provenance(gen, r, (ends[0].prompt, ends[1].prompt), operation="morph",
                         prompt=f"{ends[0].prompt} -> {ends[1].prompt}",
                         seed=f"{sa} -> {sb}", t=f"{k / (n - 1):.4f}", prompt_a=ends[0].prompt,
                         prompt_b=ends[1].prompt,
                         **({"input_a": inputs[0], "input_b": inputs[1], "strength": r.strength,
                             "fit_steps": r.fit_steps} if inputs else {}),
                         **({} if result.cfg_scales is None else {"cfg_scale": result.cfg_scales[k]})),
              {"t": k / (n - 1), "name": f"morph_{k + 1}of{n}.{ext}"})
             for k, wav in enumerate(result.audio.numpy())]
    return Rendered(clips, result.warnings, r)


def _pad(job: Job, gen: Any, files: ResultFiles, callback: Callback) -> Rendered:
    from sampleforge.kit.build import build_kit
    from sampleforge.kit.pieces import PIECES
    from sampleforge.kit.writers import sample_metadata

    req = job.request
    assert req is not None
    p, piece = settings(job), req["piece"]
    kit = build_kit(gen, p, pad_seeds={piece: req["pad_seed"]}, callback=callback)
    s = kit.samples[0]
    info = {"piece": piece, "label": PIECES[piece].label, "note": PIECES[piece].note, "seed": s.seed,
            "kit_seed": kit.seed, "pad_seed": s.seed, "prompt": s.prompt,
            "name": f"{piece}.{FORMATS[p.format][0]}", **({"candidate": s.candidate} if (p.candidates or 1) > 1 else {})}
    return Rendered([(s.audio, sample_metadata(s, kit), info)], kit.warnings, p)


def _kit(job: Job, gen: Any, files: ResultFiles, callback: Callback) -> Rendered:
    from sampleforge.kit.build import build_kit

    req = job.request
    assert req is not None
    p = settings(job)
    kit = build_kit(gen, p, pad_seeds=req["pad_seeds"] or None, name=req.get("kit_name") or req["name"],
                    callback=callback)
    return Rendered([], kit.warnings, p, kit=kit)


OPERATIONS: dict[str, Callable[[Job, Any, ResultFiles, Callback], Rendered]] = {
    "vary": _vary, "morph": _morph, "pad": _pad, "kit": _kit}


def render(job: Job, gen: Any, files: ResultFiles, callback: Callback) -> Rendered:
    """Run the job's operation on ``gen`` (a sampleforge Generator); ``callback(step, steps)`` as it samples."""
    return OPERATIONS[job.operation](job, gen, files, callback)


def write(job: Job, out: Rendered, files: ResultFiles, sample_rate: int) -> list[dict[str, Any]]:
    """Write the rendered audio, ``job.json`` and ``pack.zip``; returns the job's results. Raises
    ResultWriteError (worth retrying)."""
    if out.kit is not None:
        results, pack = _write_kit(job, out, files)
    else:
        results, pack = [], []
        for k, (wav, meta, info) in enumerate(out.clips):
            titled = meta if meta.get("prompt") else {**meta, "title": str(info["name"])}  # a clip without a prompt is titled by its name
            path = files.write_clip(job.id, k, wav, sample_rate, out.params.format, titled)
            results.append({"index": k, "file": path.name, **info, "samples": int(wav.shape[-1]),
                            "sample_rate": sample_rate})
            pack.append((path, str(info["name"])))
    files.write_manifest(job.id, {"id": job.id, "operation": job.operation, "model": job.model,
                                  "request": job.request, "warnings": out.warnings, "results": results})
    if out.kit is None:
        pack.append((files.job_dir(job.id) / "job.json", "job.json"))
    files.write_pack(job.id, pack, deflate_audio=out.kit is not None)  # a kit zip as `sampleforge kit` makes it
    return results


def _write_kit(job: Job, out: Rendered, files: ResultFiles) -> tuple[list[dict[str, Any]], list[tuple[Path, str]]]:
    """The kit's folder under ``kit/<name>/`` (the request's file-name-safe ``name``, not the kit's own, which is
    any text): its samples are the results, the folder is the pack."""
    from sampleforge.kit.build import slug
    from sampleforge.kit.writers import write_kit

    assert job.request is not None
    kit, name = out.kit, slug(job.request["name"])
    folder = files.result_path(job.id, f"kit/{name}")
    try:
        written = write_kit(kit, folder, out.params.format, overwrite=True)
    except (OSError, SampleforgeError) as exc:
        raise ResultWriteError(f"cannot write the kit ({type(exc).__name__})", transient=from_file_system(exc)) from exc
    root = files.job_dir(job.id)
    results = [{"index": k, "file": str(path.relative_to(root)), "name": path.name, "piece": s.piece,
                "layer": s.layer, "round_robin": s.rr, "seed": s.seed, "prompt": s.prompt,
                "samples": int(s.audio.shape[-1]), "sample_rate": kit.sample_rate}
               for k, (s, path) in enumerate(zip(kit.samples, written, strict=False))]
    pack = [(p, f"{name}/{p.name}") for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")]
    return results, pack
