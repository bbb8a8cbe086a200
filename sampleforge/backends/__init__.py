"""Backends: every model sampleforge runs, behind one interface (``base.Backend``).

    from sampleforge.backends import BackendOptions, load_backend
    model = load_backend("hf:stabilityai/stable-audio-open-1.0", BackendOptions(precision="fp16"))
    g = model.generate_full("kick drum", steps=50, cfg_scale=7, seed=1, duration=2)   # g.audio (1, 2, 88200)
    g.latents, g.raw, g.stats   # the stages, for sweep's statistics; stats: seconds and peak memory

``load_backend`` reads what ``--model`` names (``resolve.resolve``) and builds the matching backend:
sampleforge's own folders (``pipeline.Generator``; ``MODEL+VOCODER`` with that vocoder), diffusers pipelines
(``diffusers_backend``),
stable-audio-tools folders such as Stable Audio Open Small (``sat``) and audio-diffusion-pytorch checkpoints
(``adp``). Heavy libraries are imported only for the format in use.
"""

from __future__ import annotations

import os
from typing import Any

from sampleforge.backends.base import Backend, BackendOptions, Generation, ParamSpace
from sampleforge.backends.resolve import ModelRef, resolve
from sampleforge.errors import CheckpointError

__all__ = ["Backend", "BackendOptions", "Generation", "ParamSpace", "ModelRef", "resolve", "load_backend"]


def _import_error(fmt: str, exc: ImportError) -> CheckpointError:
    return CheckpointError(f"{fmt} models need {exc.name or 'more packages'}: pip install 'sampleforge[backends]'")


def load_backend(model: str | os.PathLike[str], options: BackendOptions | None = None) -> Any:
    """``--model`` value -> a loaded backend (``base.Backend``). CheckpointError on a missing/bad model."""
    options = options or BackendOptions()
    ref = resolve(model)
    if ref.format == "sampleforge":
        from sampleforge.pipeline import Generator

        return Generator.from_options(ref.path, options, components=ref.components)
    if ref.format == "diffusers":
        try:
            from sampleforge.backends.diffusers_backend import DiffusersBackend
        except ImportError as exc:
            raise _import_error("diffusers", exc) from None
        return DiffusersBackend(ref.path, options, spec=ref.spec)
    if ref.format == "audio-diffusion-pytorch":
        from sampleforge.backends.adp import ADPBackend

        return ADPBackend(ref.path, options, spec=ref.spec)
    try:
        from sampleforge.backends.sat import SATBackend
    except ImportError as exc:
        raise _import_error("stable-audio-tools", exc) from None
    return SATBackend(ref.path, options, spec=ref.spec)
