"""``sampleforge doctor``: what this machine can do, and what to fix.

Each check returns a :class:`Check` (name, status ``ok`` / ``warn`` / ``fail``, detail, fix). The checks
cover the torch build (CPU-only vs CUDA / MPS: the cause of "10-50x slower" reports), devices and memory,
threads, libsndfile, numpy's BLAS, and whether the default model, the shipped classifier and the
training data are present.
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sampleforge.bundle import DEFAULT_MODEL, REPO_ROOT, load_bundle, resolve_model
from sampleforge.errors import CheckpointError, SampleforgeError

HYDROGEN_KITS = Path("/usr/share/hydrogen/data/drumkits")
GIB = 1024**3


@dataclass
class Check:
    name: str
    status: str  # "ok" | "warn" | "fail"
    detail: str
    fix: str = ""


def _mem_total_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_python() -> Check:
    v = sys.version_info
    status = "ok" if v >= (3, 11) else "fail"
    return Check("python", status, f"{platform.python_version()} on {platform.platform()}",
                 "" if status == "ok" else "sampleforge needs Python 3.11 or newer")


def check_torch_build() -> Check:
    cuda_build = torch.version.cuda
    hip_build = getattr(torch.version, "hip", None)
    mps_built = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_built()
    if cuda_build or hip_build:
        build = f"CUDA {cuda_build}" if cuda_build else f"ROCm {hip_build}"
    elif mps_built:
        build = "MPS (Apple)"
    else:
        build = "CPU-only"
    detail = f"torch {torch.__version__}, {build} build"
    if build == "CPU-only":
        return Check("torch", "warn", detail,
                     "CPU-only torch: generation will be slower; install a CUDA build if you have a GPU "
                     "(https://pytorch.org/get-started/locally/), keeping torch==2.13.0")
    return Check("torch", "ok", detail)


def check_devices() -> Check:
    parts: list[str] = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            parts.append(f"cuda:{i} {p.name} {p.total_memory / GIB:.1f} GiB")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        parts.append("mps")
    mem = _mem_total_bytes()
    cpu = f"cpu ({os.cpu_count()} logical cores" + (f", {mem / GIB:.1f} GiB RAM)" if mem else ")")
    parts.append(cpu)
    chosen = "cuda" if torch.cuda.is_available() else ("mps" if mps is not None and mps.is_available() else "cpu")
    detail = "; ".join(parts) + f" -> generation uses {chosen}"
    if torch.version.cuda and not torch.cuda.is_available():
        return Check("devices", "warn", detail,
                     "this torch has CUDA but sees no GPU: check the NVIDIA driver (nvidia-smi) and CUDA_VISIBLE_DEVICES")
    if mem is not None and mem < 4 * GIB:
        return Check("devices", "warn", detail, "less than 4 GiB RAM: use --batch 1 and few clips at a time")
    return Check("devices", "ok", detail)


def check_threads() -> Check:
    n, inter, cores = torch.get_num_threads(), torch.get_num_interop_threads(), os.cpu_count() or 1
    env = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ}
    detail = f"torch intra-op {n}, inter-op {inter}, {cores} cores" + (f", {env}" if env else "")
    bad = [k for k, v in env.items() if not all(x.strip().isdigit() and int(x) > 0 for x in v.split(","))]
    if bad:
        return Check("threads", "warn", detail, f"{bad[0]}={env[bad[0]]!r} is not a number of threads (the thread "
                     "libraries ignore it): set a number of threads, or unset it")
    if n == 1 and cores > 2 and not env:
        return Check("threads", "warn", detail, f"torch uses 1 of {cores} cores: unset OMP_NUM_THREADS")
    return Check("threads", "ok", detail)


def check_libsndfile() -> Check:
    try:
        import soundfile
    except OSError as exc:  # the shared library is missing
        return Check("libsndfile", "fail", str(exc), "install libsndfile (apt install libsndfile1)")
    version = str(getattr(soundfile, "__libsndfile_version__", "unknown"))
    flac_ok = "FLAC" in soundfile.available_formats()
    detail = f"libsndfile {version}, soundfile {soundfile.__version__}, FLAC {'yes' if flac_ok else 'no'}"
    if not flac_ok:
        return Check("libsndfile", "warn", detail, "this libsndfile cannot read FLAC: the Hydrogen kits need it")
    return Check("libsndfile", "ok", detail)


def _blas_name() -> str:
    try:
        cfg: Any = np.show_config(mode="dicts")  # type: ignore[call-arg]
        blas = cfg["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # older numpy or an unexpected layout: the name is informational only
        return "unknown BLAS"


def check_numpy() -> Check:
    mkl = "MKL" if torch.backends.mkl.is_available() else "no MKL"
    omp = "OpenMP" if torch.backends.openmp.is_available() else "no OpenMP"
    return Check("numpy", "ok", f"numpy {np.__version__} ({_blas_name()}); torch CPU: {mkl}, {omp}")


def _resolve_model(name: str) -> Path:
    try:
        return resolve_model(name)
    except CheckpointError:  # an unknown name: report where it belongs
        return Path(name) if os.sep in name else REPO_ROOT / "weights" / name


def check_backends() -> Check:
    """The optional libraries that other people's models need (``pip install 'sampleforge[backends]'``)."""
    import importlib.metadata as md

    wanted = {"diffusers": "diffusers", "transformers": "transformers", "torchsde": "torchsde",
              "accelerate": "accelerate", "huggingface_hub": "huggingface-hub",
              "audio_diffusion_pytorch": "audio-diffusion-pytorch"}
    have, missing = [], []
    for name, dist in wanted.items():
        try:
            have.append(f"{name} {md.version(dist)}")
        except md.PackageNotFoundError:
            missing.append(name)
    detail = ", ".join(have) + (f"; missing: {', '.join(missing)}" if missing else "")
    if missing:
        return Check("backends", "warn", detail, "diffusers / audio-diffusion-pytorch models need "
                     "pip install 'sampleforge[backends]' (audio-diffusion-pytorch: see the README, --no-deps)")
    return Check("backends", "ok", detail)


def _foreign_model(name: str) -> Check | None:
    """Other people's models: resolve, load once, report the load's time and peak memory (None: ours)."""
    try:
        from sampleforge.backends import load_backend, resolve
        from sampleforge.backends.memory import measure_peak
    except ImportError:
        return None
    try:
        ref = resolve(name)
    except Exception as exc:  # CheckpointError: a missing file or an hf: id not in the cache
        if name.startswith("hf:") or (Path(name).is_dir() and not (Path(name) / "config.json").is_file()):
            return Check("model", "fail", str(exc), "fix the folder or download the model as the message says")
        return None
    if ref.format == "sampleforge":
        return None
    try:
        with measure_peak() as peak:
            model = load_backend(name)
    except Exception as exc:
        return Check("model", "fail", f"{name} ({ref.format}): does not load: {exc}",
                     "check the folder against the format's layout (README: other people's models)")
    mem = f", +{peak.mib:.0f} MiB peak" if peak.mib is not None else ""
    return Check("model", "ok", f"{name}: {ref.format} {getattr(model, 'pipeline_class', model.kind)} at {ref.path}; "
                 f"loads in {peak.seconds:.1f} s{mem}")


def check_memory() -> Check:
    """This process's peak resident memory so far, and the GPU's peak allocation when there is one."""
    from sampleforge.backends.memory import process_peak_bytes

    parts = []
    peak = process_peak_bytes()
    if peak is not None:
        parts.append(f"process peak {peak / 2**20:.0f} MiB resident")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            parts.append(f"cuda:{i} peak {torch.cuda.max_memory_allocated(i) / 2**20:.0f} MiB allocated")
    return Check("memory", "ok", "; ".join(parts) or "not measurable on this platform")


def check_model(name: str = DEFAULT_MODEL) -> Check:
    foreign = _foreign_model(name)
    if foreign is not None:
        return foreign
    folder, components, vocoder = _resolve_model(name), None, ""
    if "+" in name and not folder.is_dir():  # MODEL+VOCODER: the model, loaded with that vocoder
        from sampleforge.backends.resolve import resolve

        try:
            ref = resolve(name)
        except CheckpointError as exc:
            return Check("model", "fail", str(exc), "give a model, or MODEL+VOCODER with a vocoder folder or name")
        folder, components = ref.path, ref.components
        vocoder = f" with {'Griffin-Lim' if ref.griffin_lim else ref.vocoder}"
    config = folder / "config.json"
    weights = sorted(p.name for p in folder.glob("*.safetensors")) if folder.is_dir() else []
    if not config.is_file() or not weights:
        what = "no folder" if not folder.is_dir() else ("no config.json" if not config.is_file() else "no *.safetensors")
        return Check("model", "fail", f"{name}: {what} at {folder}",
                     f"the default model ships in weights/{DEFAULT_MODEL}: restore it from the repository (git checkout weights/), "
                     "pass --model PATH, or rebuild it with `make train-default`")
    size = sum((folder / w).stat().st_size for w in weights) / 1e6
    detail = f"{name}: {folder} ({', '.join(weights)}; {size:.1f} MB){vocoder}"
    try:
        load_bundle(folder, components=components)
    except Exception as exc:  # CheckpointError, ConfigError...: the files are there but do not load
        return Check("model", "fail", f"{detail}: does not load: {exc}",
                     "the model folder is damaged or from another version: restore or rebuild it")
    return Check("model", "ok", detail)


def check_classifier(path: Path | None = None) -> Check:
    from sampleforge.eval.classifier import load_classifier, shipped_classifier

    folder = path or shipped_classifier()
    if not (folder / "model.safetensors").is_file() or not (folder / "config.json").is_file():
        return Check("classifier", "warn", f"no drum classifier at {folder}",
                     "`sampleforge eval` needs it: rebuild it with `sampleforge eval train-classifier`")
    try:
        load_classifier(folder)
    except SampleforgeError as exc:  # the files are there but do not load (truncated, another version)
        return Check("classifier", "fail", f"{folder}: does not load: {exc}",
                     "the classifier is damaged: restore it (git checkout weights/) or rebuild it with "
                     "`sampleforge eval train-classifier`")
    return Check("classifier", "ok", f"{folder}")


def check_data(dirs: list[Path] | None = None) -> Check:
    dirs = dirs if dirs is not None else [HYDROGEN_KITS]
    found = [d for d in dirs if d.is_dir()]
    if not found:
        return Check("data", "warn", f"no drum kits at {', '.join(map(str, dirs))}",
                     "install the real drum recordings: `make data` (apt install hydrogen-drumkits hydrogen-drumkits-effects)")
    try:
        kits = sum(1 for d in found for k in d.iterdir() if k.is_dir())
    except OSError as exc:  # a folder it may not list
        return Check("data", "warn", f"cannot list {exc.filename}: {exc.strerror or exc}",
                     "give --data folders you can read")
    if not kits:
        return Check("data", "warn", f"0 kits in {', '.join(map(str, found))}",
                     "a drum folder holds one folder per kit: give the folder above the kits, or `make data`")
    return Check("data", "ok", f"{kits} kits in {', '.join(map(str, found))}")


def check_disk(path: Path | None = None) -> Check:
    target = path or Path.cwd()
    free = shutil.disk_usage(target).free
    detail = f"{free / GIB:.1f} GiB free at {target}"
    if free < 1 * GIB:
        return Check("disk", "warn", detail, "less than 1 GiB free: generation and training write files here")
    return Check("disk", "ok", detail)


def run_checks(model: str = DEFAULT_MODEL, data_dirs: list[Path] | None = None,
               classifier: Path | None = None) -> list[Check]:
    """Run every check; none of them raises."""
    checks: list[Callable[[], Check]] = [
        check_python, check_torch_build, check_devices, check_threads, check_libsndfile, check_numpy,
        check_backends, functools.partial(check_model, model), functools.partial(check_classifier, classifier),
        functools.partial(check_data, data_dirs), check_disk, check_memory,
    ]
    out = []
    for fn in checks:
        try:
            out.append(fn())
        except Exception as exc:  # a broken check is a finding, not a crash
            name = getattr(getattr(fn, "func", fn), "__name__", "check").removeprefix("check_")
            out.append(Check(name, "fail", f"check crashed: {exc!r}",
                             "a bug in sampleforge doctor: please report it with this line"))
    return out


def format_checks(checks: list[Check], brief: bool = False) -> str:
    """Text report: one line per check (``--brief``: problems only, plus a summary), then the fixes."""
    mark = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
    lines = [f"[{mark[c.status]}] {c.name:<11} {c.detail}" for c in checks if not brief or c.status != "ok"]
    fixes = [f"  - {c.name}: {c.fix}" for c in checks if c.fix]
    n_warn = sum(c.status == "warn" for c in checks)
    n_fail = sum(c.status == "fail" for c in checks)
    lines.append(f"{len(checks)} checks: {len(checks) - n_warn - n_fail} ok, {n_warn} warnings, {n_fail} failures")
    if fixes:
        lines += ["what to fix:", *fixes]
    return "\n".join(lines)


def checks_as_dicts(checks: list[Check]) -> list[dict[str, str]]:
    return [asdict(c) for c in checks]
