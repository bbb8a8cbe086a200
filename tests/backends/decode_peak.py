"""Decoding 4 s of stereo audio with a small Oobleck VAE, in one piece or in chunks, and the decode's peak memory
measured in a fresh Python process.

The CPU peak is the kernel's resident-set high-water mark. Inside a test session it is polluted by what earlier
tests allocated and freed (the allocator hands those pages to the decode without the resident set growing), and
the first decode of a process maps the convolution kernels' code and scratch buffers (resident memory that is
not the decode's). So each mode runs alone, after a warm-up decode of one chunk:
``python -m tests.backends.decode_peak full|chunked`` prints ``{"bytes": peak}`` (null where the platform
cannot measure it). ``MALLOC_MMAP_THRESHOLD_`` pins glibc's threshold for mapping large blocks, so that every
freed activation goes back to the kernel at once instead of being kept for the next one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[2]
MODES = ("full", "chunked")
CHUNK, OVERLAP = 200, 16  # latent frames


def build_vae() -> nn.Module:
    """A small random AutoencoderOobleck (hop 32, 16 kHz stereo), the same in every process."""
    from diffusers import AutoencoderOobleck

    torch.manual_seed(0)
    return AutoencoderOobleck(encoder_hidden_size=8, downsampling_ratios=[2, 4, 4], decoder_channels=16,
                              decoder_input_channels=4, audio_channels=2, channel_multiples=[1, 2, 4],
                              sampling_rate=16000).eval()


def latents() -> Tensor:
    """(1, 4, 2000) latents: 64 000 samples once decoded."""
    return torch.randn(1, 4, 2000, generator=torch.Generator().manual_seed(0))


@torch.inference_mode()
def decode(vae: nn.Module, z: Tensor, mode: str) -> Tensor:
    """z (1, 4, L) -> waveform (1, 2, 32 L), in one piece ("full") or chunks of CHUNK frames ("chunked")."""
    from sampleforge.backends.memory import in_chunks

    if mode == "full":
        return vae.decode(z).sample  # type: ignore[operator]
    return in_chunks(lambda x: vae.decode(x).sample, z, chunk=CHUNK, overlap=OVERLAP)  # type: ignore[operator]


def measure(mode: str) -> int | None:
    """The peak bytes of ``decode(mode)`` above the process's resident set before it, in a fresh process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "131072"}
    run = subprocess.run([sys.executable, "-m", "tests.backends.decode_peak", mode], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600, check=False)
    if run.returncode != 0:
        raise RuntimeError(f"decode_peak {mode} failed: {run.stderr.strip()[-2000:]}")
    value = json.loads(run.stdout.strip().splitlines()[-1])["bytes"]
    return None if value is None else int(value)


def main(argv: list[str]) -> int:
    from sampleforge.backends.memory import measure_peak

    if len(argv) != 1 or argv[0] not in MODES:
        print(f"usage: python -m tests.backends.decode_peak {'|'.join(MODES)}", file=sys.stderr)
        return 2
    vae, z = build_vae(), latents()
    decode(vae, z[..., : CHUNK + 2 * OVERLAP], "full")  # the warm-up: kernels' code and scratch
    with measure_peak() as peak:
        out = decode(vae, z, argv[0])
    assert out.shape == (1, 2, 64000)
    print(json.dumps({"bytes": peak.bytes}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
