"""Where cai-engine keeps caches (converted checkpoints, response cache) and its shipped data."""

from __future__ import annotations

import os
from pathlib import Path

#: Files shipped inside the package (constitutions, eval sets, judge-eval labels, viewer, demo run).
DATA_DIR = Path(__file__).resolve().parent / "data"


def data_path(*parts: str) -> Path:
    """A file or folder under the package's ``data/``, e.g. ``data_path("constitutions")``."""
    return DATA_DIR.joinpath(*parts)


def cai_home() -> Path:
    """``$CAI_HOME`` or ``~/.cache/cai-engine``; created on first use."""
    home = Path(os.environ.get("CAI_HOME") or Path.home() / ".cache" / "cai-engine").expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home
