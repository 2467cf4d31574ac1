"""Where cai-engine keeps caches (converted checkpoints, response cache)."""

from __future__ import annotations

import os
from pathlib import Path


def cai_home() -> Path:
    """``$CAI_HOME`` or ``~/.cache/cai-engine``; created on first use."""
    home = Path(os.environ.get("CAI_HOME") or Path.home() / ".cache" / "cai-engine").expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home
