"""Memory and speed controls shared by every backend: peak-memory measurement, chunked decoding, int8
dynamic quantisation and CPU offload of idle components.

Peak memory: on CUDA the allocator's own peak; on Linux CPUs the kernel's high-water mark of the resident
set (``VmHWM``, reset through ``/proc/self/clear_refs``), minus the resident set at the start: what the
measured block added at its worst moment, for the whole process.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import torch
from torch import Tensor, nn

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kb(key: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_cpu_peak() -> bool:
    try:
        _CLEAR_REFS.write_text("5")  # resets VmHWM to the current resident set
        return True
    except OSError:
        return False


@dataclass
class Peak:
    """Filled in when the ``measure_peak`` block ends: extra bytes at the worst moment (None: unmeasurable)."""

    bytes: int | None = None
    seconds: float = 0.0
    where: str = "cpu"

    @property
    def mib(self) -> float | None:
        return None if self.bytes is None else self.bytes / 2**20


@contextmanager
def measure_peak(device: torch.device | str = "cpu") -> Iterator[Peak]:
    """``with measure_peak(dev) as peak: ...`` -> ``peak.bytes`` the block's peak memory above its start."""
    dev = torch.device(device)
    peak = Peak(where=dev.type)
    t0 = time.perf_counter()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
        yield peak
        torch.cuda.synchronize(dev)
        peak.bytes = torch.cuda.max_memory_allocated(dev) - base
    else:
        ok = _reset_cpu_peak()
        rss = _status_kb("VmRSS")
        yield peak
        top = _status_kb("VmHWM")
        if ok and rss is not None and top is not None:
            peak.bytes = max(0, top - rss) * 1024
    peak.seconds = time.perf_counter() - t0


def process_peak_bytes() -> int | None:
    """This process's peak resident memory so far (CPU), or None where the kernel does not say."""
    kb = _status_kb("VmHWM")
    return None if kb is None else kb * 1024


def in_chunks(run: Callable[[Tensor], Tensor], x: Tensor, chunk: int, overlap: int = 8, dim: int = -1) -> Tensor:
    """``run(x)`` along axis ``dim`` in pieces of ``chunk`` frames, each with ``overlap`` frames of context on
    both sides that are run and then cut away, so that convolutions see their neighbours and the seams vanish.
    Peak memory falls roughly by L / (chunk + 2 overlap).

    ``run`` maps L' frames to L' * r along the same axis, for a fixed ratio r read from the first piece: a
    decoder (latent frames -> samples, r = hop) or an encoder (samples -> latent frames, r = 1 / hop; then
    ``chunk`` and ``overlap`` must be multiples of the hop). Returns what ``run(x)`` returns, up to the seams'
    rounding."""
    if chunk < 1 or overlap < 0:
        raise ValueError(f"chunk must be >= 1 and overlap >= 0, got {chunk}, {overlap}")
    dim = dim % x.ndim
    length = x.shape[dim]
    if chunk >= length:
        return run(x)
    pieces: list[Tensor] = []
    ratio: Fraction | None = None
    for start in range(0, length, chunk):
        end = min(start + chunk, length)
        lo, hi = max(0, start - overlap), min(length, end + overlap)
        out = run(x.narrow(dim, lo, hi - lo))
        if ratio is None:
            ratio = Fraction(out.shape[dim], hi - lo)
        at, size = (start - lo) * ratio, (end - start) * ratio
        if at.denominator != 1 or size.denominator != 1:
            raise ValueError(f"chunk {chunk} and overlap {overlap} are not multiples of the {1 / ratio} frames "
                             "one output frame needs")
        pieces.append(out.narrow(dim, int(at), int(size)))
        del out
    return torch.cat(pieces, dim=dim)


def quantize_int8(module: nn.Module) -> nn.Module:
    """Dynamic int8 quantisation of ``module``'s Linear layers (weights int8, activations quantised on the
    fly; CPU only). Returns the quantised module (the original is left as it was)."""
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice: the API still works in this torch
        return quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8)


def cpu_offload_available(device: torch.device) -> bool:
    """Offload moves idle components to the CPU: it only helps when the model runs on a CUDA device."""
    return device.type == "cuda" and torch.cuda.is_available()
