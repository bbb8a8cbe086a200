"""``sampleforge import``: the command line of ``sampleforge.legacy`` (reference-design ``.pt`` checkpoints to a
model folder); its parser loads nothing heavy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sampleforge.errors import CheckpointError


def register(sub: Any) -> None:
    p = sub.add_parser("import", help="convert reference-design .pt checkpoints into a model folder",
                       description="Reads the checkpoints with torch.load(weights_only=True) (never unpickles objects), "
                       "checks every tensor against the architecture in the diffusion checkpoint's config, and writes a "
                       "model folder usable with --model.")
    p.add_argument("diffusion", type=Path, help="the diffusion checkpoint (.pt): config, vocab, U-Net and text encoder")
    p.add_argument("--vae", type=Path, required=True, help="the VAE checkpoint (.pt)")
    p.add_argument("--vocoder", type=Path, default=None, help="the vocoder checkpoint (.pt); without it: Griffin-Lim")
    p.add_argument("--out", type=Path, required=True, help="the model folder to write")
    p.set_defaults(func=cmd_import)


def cmd_import(args: Any) -> int:
    out_dir = args.out
    if out_dir.is_symlink():  # a link to a folder: write into the folder it names (the link stays)
        if not out_dir.is_dir():
            raise CheckpointError(f"--out {out_dir} is a symbolic link to no folder; give a folder")
        out_dir = out_dir.resolve()
    if out_dir.exists() and any(out_dir.iterdir()):
        raise CheckpointError(f"{args.out} exists and is not empty; choose another --out")
    from sampleforge.legacy import convert_legacy

    out = convert_legacy(args.diffusion, args.vae, args.vocoder, out_dir)
    print(out)
    return 0
