"""Model folders made for tests from the debug model."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any


def edited_copy(model: Path, out: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of the model folder ``model`` at ``out`` whose config.json ``edit`` changed in place."""
    shutil.copytree(model, out)
    cfg = json.loads((out / "config.json").read_text())
    edit(cfg)
    (out / "config.json").write_text(json.dumps(cfg))
    return out


def vocoder_folder(model: Path, out: Path, name: str = "a-vocoder") -> Path:
    """A vocoder folder at ``out`` as drums-vocoder-v1 ships, with ``model``'s vocoder: a config.json of its name
    and the mel and vocoder sections, and vocoder.safetensors."""
    out.mkdir(parents=True)
    full = json.loads((model / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({"name": name, "mel": full["mel"], "vocoder": full["vocoder"]}))
    shutil.copy(model / "vocoder.safetensors", out)
    return out
