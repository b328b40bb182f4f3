"""Where the project keeps its caches (git-ignored) and its default methodology.

The local stack's state folder (SYI_STATE_DIR) is a setting: syi_cli.settings."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(os.environ.get("SYI_CACHE_DIR", REPO_ROOT / ".cache"))
DEFAULT_METHODOLOGY = REPO_ROOT / "methodology.toml"
