"""Stage configs from YAML + ``--set key=value`` overrides, validated by the stage's pydantic model.

Errors name the file, line and field, in one line: ``dpo.yaml:5: beta: Input should be greater than 0``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from cai_engine.errors import ConfigError
from cai_engine.yamlfile import read_mapping, validation_error


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
    doc = None
    if path is not None:
        doc = read_mapping(Path(path), "training config")
        loaded = dict(doc.data)
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
        raise validation_error(exc, doc, None if doc is not None else "--set") from None
