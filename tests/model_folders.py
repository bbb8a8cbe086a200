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
