"""Where the project keeps its caches and its local stack's state (both git-ignored)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(os.environ.get("SYI_CACHE_DIR", REPO_ROOT / ".cache"))
STATE_DIR = Path(os.environ.get("SYI_STATE_DIR", REPO_ROOT / ".stack"))
DEFAULT_METHODOLOGY = REPO_ROOT / "methodology.toml"
