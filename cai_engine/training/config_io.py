"""Stage configs from YAML + ``--set key=value`` overrides, validated by the stage's pydantic model.

Errors name the file and the field, in one line: ``dpo.yaml: beta: Input should be greater than 0``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from cai_engine.errors import ConfigError


def parse_override(item: str) -> tuple[list[str], Any]:
    """``a.b=1`` -> (["a", "b"], 1); the value is parsed as YAML so numbers, bools and lists work."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set beta=0.2 or --set lora.r=8")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def load_stage_config(stage: str, path: Path | str | None, overrides: list[str], fields: dict[str, Any]) -> Any:
    from cai_engine.training import stage_parts

    config_cls, _ = stage_parts(stage)
    data: dict[str, Any] = {}
    source = str(path) if path else "--set"
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: training config file not found")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a training config must be a mapping of {config_cls.__name__} fields")
        loaded.pop("stage", None)  # config.resolved.yaml files carry it
        data.update(loaded)
    for item in overrides:
        keys, value = parse_override(item)
        target = data
        for key in keys[:-1]:
            target = target.setdefault(key, {})
            if not isinstance(target, dict):
                raise ConfigError(f"--set {item!r}: {key} is not a mapping")
        target[keys[-1]] = value
    data.update({k: v for k, v in fields.items() if v is not None})
    if stage == "rloo":
        data.setdefault("algorithm", "rloo")
    try:
        return config_cls.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        raise ConfigError(f"{source}: {where}: {first['msg']}") from None
