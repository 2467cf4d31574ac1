"""Load constitution YAML files: validation with ``file:line:col`` errors, ``extends``, shipped names.

Each file is validated on its own first (so a typo in a parent is reported against the parent),
then ``extends`` chains are merged: scalars overridden by the child, principles merged by id
(the child's replaces the parent's in place, new ones appended), few-shot examples concatenated
(parent first) and ``sampling`` merged field by field. Checks that need the whole chain (at
least one principle, ``k`` not above the principle count, few-shot principle ids) run on the
merged result but still point at the file and line that set the offending value.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from cai_engine.constitution.diagnostics import config_error_from_validation
from cai_engine.constitution.schema import (
    Constitution,
    FewShotExample,
    Principle,
    SamplingConfig,
    coerce_version,
)
from cai_engine.errors import ConfigError
from cai_engine.paths import data_path
from cai_engine.yamlfile import YamlDoc, read_yaml

_SCALARS = ("name", "version", "description", "system_prompt")


def shipped_dir() -> Path:
    """Folder of the constitutions shipped inside the package (``cai_engine/data/constitutions``)."""
    return data_path("constitutions")


def shipped_names() -> list[str]:
    """Names accepted in place of a path, e.g. ``general``."""
    folder = shipped_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


class ConstitutionFile(BaseModel):
    """One YAML file as written: everything optional, because a child may set only what it changes."""

    model_config = ConfigDict(extra="forbid")

    extends: str | None = Field(default=None, description="Another constitution to start from (path or shipped name).")
    name: str | None = Field(default=None, min_length=1)
    version: str | None = None
    description: str | None = None
    system_prompt: str | None = None
    principles: list[Principle] | None = None
    sampling: SamplingConfig | None = None
    few_shot: list[FewShotExample] | None = None

    @field_validator("extends", "name", "version", "description", "principles", "sampling", "few_shot", mode="before")
    @classmethod
    def _no_null(cls, value: Any) -> Any:
        # `principles:` with nothing after it is almost always a mistake, not "inherit".
        if value is None:
            raise PydanticCustomError("null_value", "must not be empty")
        return value

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        return coerce_version(value)


@dataclass
class _Merged:
    """A constitution being resolved, with ``file:line:col`` of where each part was set."""

    root: YamlDoc
    scalars: dict[str, tuple[Any, str]] = field(default_factory=dict)
    principles: dict[str, tuple[Principle, str]] = field(default_factory=dict)
    principles_where: str | None = None
    sampling: dict[str, tuple[int, str]] = field(default_factory=dict)
    few_shot: list[tuple[FewShotExample, str]] = field(default_factory=list)


def _parse_file(path: Path) -> tuple[YamlDoc, ConstitutionFile]:
    doc = read_yaml(path)
    if doc.data is None:
        raise ConfigError(f"{path}:1:1: the file is empty; write at least `name:` and a `principles:` list")
    if not isinstance(doc.data, dict):
        raise ConfigError(
            f"{doc.where()}: the top level must be a mapping (name:, principles:, ...), got a "
            f"{type(doc.data).__name__}; start the file with `name: ...`"
        )
    version = doc.data.get("version")
    if isinstance(version, (int, float)) and not isinstance(version, bool) and ("version",) in doc.raw:
        doc.data["version"] = doc.raw[("version",)]  # `version: 1.10` means "1.10", not the float 1.1
    try:
        parsed = ConstitutionFile.model_validate(doc.data)
    except ValidationError as exc:
        raise config_error_from_validation(exc, doc, ConstitutionFile) from None
    seen: dict[str, int] = {}
    for index, p in enumerate(parsed.principles or []):
        if p.id in seen:
            first_line = doc.pos(("principles", seen[p.id])).line
            raise ConfigError(
                f"{doc.where(('principles', index, 'id'))}: duplicate principle id {p.id!r} "
                f"(first at line {first_line}); give each principle a unique id"
            )
        seen[p.id] = index
    return doc, parsed


def _resolve_extends(target: str, doc: YamlDoc) -> Path:
    here = doc.path.parent / target
    if here.is_file():
        return here
    looks_like_name = "/" not in target and "\\" not in target
    if looks_like_name:
        stem = target[:-5] if target.endswith(".yaml") else target
        shipped = shipped_dir() / f"{stem}.yaml"
        if shipped.is_file():
            return shipped
    names = ", ".join(shipped_names()) or "none"
    raise ConfigError(
        f"{doc.where(('extends',))}: extends target {target!r} not found (looked for {here}); "
        f"fix the path (relative to {doc.path.parent or '.'}) or use a shipped name ({names})"
    )


def _resolve(path: Path, stack: tuple[Path, ...]) -> _Merged:
    doc, parsed = _parse_file(path)
    if parsed.extends is not None:
        parent_path = _resolve_extends(parsed.extends, doc)
        key = parent_path.resolve()
        chain = [*stack, path.resolve()]
        if key in chain:
            loop = " -> ".join(p.name for p in chain[chain.index(key):] + [key])
            raise ConfigError(
                f"{doc.where(('extends',))}: extends cycle {loop}; remove the `extends` that closes the loop"
            )
        merged = _resolve(parent_path, tuple(chain))
        merged.root = doc
    else:
        merged = _Merged(root=doc)
    _merge_into(merged, doc, parsed)
    return merged


def _merge_into(merged: _Merged, doc: YamlDoc, parsed: ConstitutionFile) -> None:
    for name in _SCALARS:
        if name in parsed.model_fields_set:
            merged.scalars[name] = (getattr(parsed, name), doc.where((name,)))
    if parsed.principles is not None:
        merged.principles_where = doc.where(("principles",), key=True)
        for index, p in enumerate(parsed.principles):
            # dict keeps the parent's position for a replaced id and appends new ids
            merged.principles[p.id] = (p, doc.where(("principles", index)))
    if parsed.sampling is not None:
        for name in parsed.sampling.model_fields_set:
            merged.sampling[name] = (getattr(parsed.sampling, name), doc.where(("sampling", name)))
    for index, ex in enumerate(parsed.few_shot or []):
        merged.few_shot.append((ex, doc.where(("few_shot", index, "principle"))))


def _finish(merged: _Merged, source: Path) -> Constitution:
    root = merged.root
    if "name" not in merged.scalars:
        raise ConfigError(f"{root.where()}: missing required key 'name'; add `name: my-constitution` at the top level")
    if not merged.principles:
        where = merged.principles_where or root.where()
        raise ConfigError(
            f"{where}: the constitution has no principles; add a `principles:` list with at least one "
            "principle (id, critique, revision)"
        )
    n = len(merged.principles)
    for name in ("principles_per_round", "principles_per_judgment"):
        if name in merged.sampling and merged.sampling[name][0] > n:
            k, where = merged.sampling[name]
            raise ConfigError(
                f"{where}: sampling.{name} is {k} but the constitution has only {n} principle{'s' * (n != 1)}; "
                f"set it to at most {n} or add principles"
            )
    for ex, where in merged.few_shot:
        if ex.principle is not None and ex.principle not in merged.principles:
            close = difflib.get_close_matches(ex.principle, list(merged.principles), n=1)
            fix = f"did you mean {close[0]!r}?" if close else f"use one of: {', '.join(merged.principles)}"
            raise ConfigError(f"{where}: few_shot example names unknown principle {ex.principle!r}; {fix}")
    values = {name: value for name, (value, _) in merged.scalars.items()}
    try:
        return Constitution(
            **values,
            principles=[p for p, _ in merged.principles.values()],
            sampling=SamplingConfig(**{name: value for name, (value, _) in merged.sampling.items()}),
            few_shot=[ex for ex, _ in merged.few_shot],
            source_path=source,
        )
    except ValidationError as exc:  # not expected after the checks above; still one line, still located
        first = exc.errors(include_url=False)[0]
        raise ConfigError(f"{root.where()}: {first['msg']}; fix the constitution") from None


def resolve_path(path_or_name: str | Path) -> Path:
    """A file path as given, or the shipped file for a name like ``general``."""
    path = Path(path_or_name)
    if path.is_file():
        return path
    if path.is_dir():
        raise ConfigError(f"{path} is a folder; pass a constitution .yaml file or a shipped name")
    text = str(path_or_name)
    if "/" not in text and "\\" not in text:
        stem = text[:-5] if text.endswith(".yaml") else text
        shipped = shipped_dir() / f"{stem}.yaml"
        if shipped.is_file():
            return shipped
    raise ConfigError(
        f"constitution {text!r} not found: no such file and not a shipped name; pass a .yaml path "
        f"or one of: {', '.join(shipped_names()) or '(none shipped)'}"
    )


def load_constitution(path_or_name: str | Path) -> Constitution:
    """Load, validate and resolve a constitution file or shipped name.

    A ``.json`` file in the public CAI recipe shape (``{"constitutions": [...], "system_chat": ...}``)
    is imported on the fly, so recipe files can be used without converting them first.
    """
    path = resolve_path(path_or_name)
    if path.suffix.lower() == ".json":
        doc = read_yaml(path)  # JSON is YAML; keeps syntax errors located
        if isinstance(doc.data, dict) and "constitutions" in doc.data:
            from cai_engine.constitution.cai_json import constitution_from_cai_json

            constitution = constitution_from_cai_json(doc.data, name=path.stem)
            return constitution.model_copy(update={"source_path": path})
    return _finish(_resolve(path, ()), path)


def principle_locations(path_or_name: str | Path) -> dict[str, str]:
    """``file:line:col`` where each principle of the resolved constitution is defined (child wins).

    For tools that point at a principle in its source (lint, reports); ids in constitution order.
    """
    path = resolve_path(path_or_name)
    merged = _resolve(path, ())
    _finish(merged, path)  # same validation as load_constitution
    return {pid: where for pid, (_, where) in merged.principles.items()}
