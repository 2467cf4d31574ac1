"""``load_constitution(name | path | dict | Constitution)`` for the API and the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cai_engine.constitution import Constitution
from cai_engine.constitution import load_constitution as _load_file
from cai_engine.errors import ConfigError


def load_constitution(source: str | Path | dict[str, Any] | Constitution) -> Constitution:
    """A shipped name (``"medical"``), a YAML/JSON path, a dict of the YAML's fields, or a
    :class:`Constitution` (returned as is). Errors are one line with file:line where there is a file."""
    if isinstance(source, Constitution):
        return source
    if isinstance(source, dict):
        from pydantic import ValidationError

        try:
            return Constitution.model_validate(source)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ConfigError(f"constitution dict: {where}: {first['msg']}") from None
    return _load_file(source)
