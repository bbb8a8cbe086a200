"""Where sampleforge finds its shipped models, and which it uses by default; light to import (no torch), so a
command's parser can name them without loading a model."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent  # a source checkout: configs/ and weights/ sit beside the package
DEFAULT_MODEL = "drums-v2"
