"""Atomic file writes: a reader sees the old file or the new one, never half of either.

Every JSON state file (``state.json``, ``manifest.json``, ``eval.json``, batch ids, ...) is written
through here: to ``NAME.tmp`` beside the target, then ``os.replace``. ``durable=True`` also fsyncs
the file and its folder, for files whose loss would cost money (submitted batch ids).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_text_atomic(path: Path, text: str, *, durable: bool = False) -> Path:
    """Replace ``path`` with ``text`` in one step (``NAME.tmp`` then ``os.replace``)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(text)
        if durable:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)
    if durable:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


def write_json_atomic(path: Path, data: Any, *, indent: int | None = 2, durable: bool = False) -> Path:
    """``data`` as JSON (UTF-8 kept, non-JSON values as ``str``), replacing ``path`` atomically."""
    return write_text_atomic(path, json.dumps(data, indent=indent, ensure_ascii=False, default=str), durable=durable)
