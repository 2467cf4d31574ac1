"""Load constitution YAML files: validation with ``file:line:col`` errors, ``extends``, shipped names.

Each file is validated on its own first (so a typo in a parent is reported against the parent),
then ``extends`` chains are merged: scalars overridden by the child, principles merged by id
(the child's replaces the parent's in place, new ones appended), few-shot examples concatenated
(parent first) and ``sampling`` merged field by field. Checks that need the whole chain (at
least one principle, ``k`` not above the principle count, few-shot principle ids) run on the
merged result but still point at the file and line that set the offending value.

Every problem is collected, not just the first: a file that fails validation is still merged from
its raw data, so the chain checks run too, and all problems are raised together as one
:class:`~cai_engine.constitution.diagnostics.ConstitutionError` (``problems`` lists them). Only a
YAML syntax error ends a file early: the parser cannot read past it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from cai_engine.constitution.diagnostics import Problem, ProblemList, model_at, validation_problems
from cai_engine.constitution.schema import (
    Constitution,
    FewShotExample,
    Principle,
    SamplingConfig,
    coerce_version,
)
from cai_engine.errors import ConfigError
from cai_engine.paths import data_path
from cai_engine.constitution.yaml_nodes import SwallowedKey, swallowed_keys, tolerant_doc
from cai_engine.yamlfile import Loc, YamlDoc, read_yaml

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


_At = tuple[YamlDoc, Loc, bool]  # where a value was set: file, path in it, point at the key


def _where(at: _At) -> str:
    doc, loc, key = at
    return doc.where(loc, key=key)


@dataclass
class _Merged:
    """A constitution being resolved, with where each part was set.

    Built from the validated file when it is valid (``Principle`` objects) and from the raw data
    when it is not (``None`` in their place), so the checks of the whole chain still run and a
    file's every problem is found in one pass.
    """

    root: YamlDoc | None
    chain_ok: bool = True  # every `extends` target was found (else the chain checks are skipped)
    ids_known: bool = True  # every principle item has a text id (else counts are not trusted)
    name_guessed: bool = False  # a misspelt top-level key probably meant `name` (already reported)
    scalars: dict[str, tuple[Any, _At]] = field(default_factory=dict)
    principles: dict[str, tuple[Principle | None, _At]] = field(default_factory=dict)
    principles_at: _At | None = None
    sampling: dict[str, tuple[int, _At]] = field(default_factory=dict)
    few_shot: list[tuple[FewShotExample | None, str | None, _At]] = field(default_factory=list)


def schema_keys(loc: Loc) -> list[str]:
    """The keys a constitution file allows in the mapping at ``loc`` (empty inside a scalar)."""
    model = model_at(ConstitutionFile, loc)
    return [k for k in model.model_fields if k != "source_path"] if model is not None else []


def _read(path: Path, problems: ProblemList) -> tuple[YamlDoc | None, frozenset[Loc]]:
    """The parsed file, and the paths of keys that are not text (already reported).

    A file with duplicate or non-text keys is read anyway (each key problem reported), so its other
    problems are found too; a syntax error or an unreadable file is one problem and ends the file.
    """
    try:
        return read_yaml(path), frozenset()
    except ConfigError as exc:
        try:
            doc, found = tolerant_doc(path.read_text(encoding="utf-8"), path)
        except (OSError, UnicodeError, yaml.YAMLError):
            found = []
        if not found:
            problems.add_error(exc, path)
            return None, frozenset()
        for kp in found:
            item = kp.loc[:2] if len(kp.loc) >= 2 and isinstance(kp.loc[1], int) else kp.loc
            outer = doc.pos(item) if item != kp.loc else kp.pos  # in file order by list item, as validation's
            order = (outer.line, outer.col, 0, kp.pos.line, kp.pos.col)
            problems.add(Problem(str(path), kp.pos.line, kp.pos.col, kp.message, order))
        return doc, frozenset(kp.loc for kp in found if kp.not_text)


def _parse_file(path: Path, problems: ProblemList) -> tuple[YamlDoc | None, ConstitutionFile | None]:
    """Read and validate one file, adding every problem found; the model is None if it is invalid."""
    doc, skip = _read(path, problems)
    if doc is None:
        return None, None
    if doc.data is None:
        problems.add(Problem(str(path), 1, 1, "the file is empty; write at least `name:` and a `principles:` list"))
        return doc, None
    if not isinstance(doc.data, dict):
        problems.add(Problem.at(doc, (), (
            f"the top level must be a mapping (name:, principles:, ...), got a "
            f"{type(doc.data).__name__}; start the file with `name: ...`"
        )))
        return doc, None
    version = doc.data.get("version")
    if isinstance(version, (int, float)) and not isinstance(version, bool) and ("version",) in doc.raw:
        doc.data["version"] = doc.raw[("version",)]  # `version: 1.10` means "1.10", not the float 1.1
    parsed: ConstitutionFile | None = None
    try:
        parsed = ConstitutionFile.model_validate(doc.data)
    except ValidationError as exc:
        swallowed: list[SwallowedKey] = []
        if any(e["type"] == "missing" for e in exc.errors(include_url=False)):
            swallowed = swallowed_keys(path.read_text(encoding="utf-8"), schema_keys)
        for problem in validation_problems(exc, doc, ConstitutionFile, skip=skip, swallowed=swallowed):
            problems.add(problem)
    items = doc.data.get("principles")
    seen: dict[str, int] = {}
    for index, item in enumerate(items if isinstance(items, list) else []):
        pid = item.get("id") if isinstance(item, dict) else None
        if not isinstance(pid, str):
            continue
        if pid in seen:
            first_line = doc.pos(("principles", seen[pid])).line
            problems.add(Problem.at(doc, ("principles", index, "id"), (
                f"duplicate principle id {pid!r} (first at line {first_line}); give each principle a unique id"
            )))
        else:
            seen[pid] = index
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


def _resolve(path: Path, stack: tuple[Path, ...], problems: ProblemList) -> _Merged:
    doc, parsed = _parse_file(path, problems)
    if doc is None or not isinstance(doc.data, dict):
        return _Merged(root=doc, chain_ok=False)
    target = doc.data.get("extends")
    merged: _Merged | None = None
    if isinstance(target, str):
        try:
            parent_path = _resolve_extends(target, doc)
        except ConfigError as exc:
            problems.add_error(exc, path)
            merged = _Merged(root=doc, chain_ok=False)
        else:
            key = parent_path.resolve()
            chain = [*stack, path.resolve()]
            if key in chain:
                loop = " -> ".join(p.name for p in chain[chain.index(key):] + [key])
                problems.add(Problem.at(doc, ("extends",), (
                    f"extends cycle {loop}; remove the `extends` that closes the loop"
                )))
                merged = _Merged(root=doc, chain_ok=False)
            else:
                merged = _resolve(parent_path, tuple(chain), problems)
                merged.root = doc
    elif "extends" in doc.data:  # not text: validation reported it; the parent is unknown
        merged = _Merged(root=doc, chain_ok=False)
    merged = merged or _Merged(root=doc)
    _merge_into(merged, doc, parsed)
    return merged


def _merge_into(merged: _Merged, doc: YamlDoc, parsed: ConstitutionFile | None) -> None:
    """Apply one file on top of its parents: from the model if the file is valid, else from its data."""
    data: dict[str, Any] = doc.data
    fields = [k for k in ConstitutionFile.model_fields]
    # A misspelt top-level key (reported as unknown) most likely meant this one: don't also call it missing.
    meant = {c for k in data if k not in fields for c in difflib.get_close_matches(str(k), fields, n=1, cutoff=0.5)}
    merged.name_guessed |= "name" in meant
    if "principles" in meant:
        merged.ids_known = False
    for name in _SCALARS:
        if name in data:
            merged.scalars[name] = (getattr(parsed, name) if parsed else data[name], (doc, (name,), False))
    if "principles" in data:
        merged.principles_at = (doc, ("principles",), True)
        items = data["principles"]
        if not isinstance(items, list):
            merged.ids_known = False
        for index, item in enumerate(items if isinstance(items, list) else []):
            pid = item.get("id") if isinstance(item, dict) else None
            if not isinstance(pid, str):
                merged.ids_known = False
                continue
            # dict keeps the parent's position for a replaced id and appends new ids
            merged.principles[pid] = (parsed.principles[index] if parsed and parsed.principles else None,
                                      (doc, ("principles", index), False))
    sampling = data.get("sampling")
    if isinstance(sampling, dict):
        for name in SamplingConfig.model_fields:
            if name not in sampling:
                continue
            value = getattr(parsed.sampling, name) if parsed and parsed.sampling else sampling[name]
            if isinstance(value, int) and not isinstance(value, bool):
                merged.sampling[name] = (value, (doc, ("sampling", name), False))
    shots = data.get("few_shot")
    for index, item in enumerate(shots if isinstance(shots, list) else []):
        ex = parsed.few_shot[index] if parsed and parsed.few_shot else None
        ref = ex.principle if ex else (item.get("principle") if isinstance(item, dict) else None)
        merged.few_shot.append((ex, ref if isinstance(ref, str) else None, (doc, ("few_shot", index, "principle"), False)))


def _lost_key(doc: YamlDoc, key: str) -> str | None:
    """``what; fix`` when a top-level ``key:`` line was indented into a block scalar above it."""
    try:
        text = doc.path.read_text(encoding="utf-8")
    except (OSError, UnicodeError):
        return None
    for found in swallowed_keys(text, schema_keys):
        if found.map_loc == () and found.key == key and not found.present and not found.item:
            return f"{found.describe()}; {found.hint()}"
    return None


def _check_chain(merged: _Merged, problems: ProblemList) -> None:
    """Checks that need the whole ``extends`` chain, pointing at the file and line that set the value."""
    root = merged.root
    if root is None or not merged.chain_ok:
        return
    if "name" not in merged.scalars and not merged.name_guessed:
        fix = _lost_key(root, "name") or "add `name: my-constitution` at the top level"
        problems.add(Problem.at(root, (), f"missing required key 'name'; {fix}"))
    if not merged.ids_known:
        return  # a principle without a readable id: counts and references would mislead
    if not merged.principles:
        doc, loc, key = merged.principles_at or (root, (), False)
        fix = (merged.principles_at is None and _lost_key(root, "principles")) or (
            "add a `principles:` list with at least one principle (id, critique, revision)"
        )
        problems.add(Problem.at(doc, loc, f"the constitution has no principles; {fix}", key=key))
        return
    n = len(merged.principles)
    for name in ("principles_per_round", "principles_per_judgment"):
        if name in merged.sampling and merged.sampling[name][0] > n:
            k, (doc, loc, key) = merged.sampling[name]
            problems.add(Problem.at(doc, loc, (
                f"sampling.{name} is {k} but the constitution has only {n} principle{'s' * (n != 1)}; "
                f"set it to at most {n} or add principles"
            ), key=key))
    for _, ref, (doc, loc, key) in merged.few_shot:
        if ref is not None and ref not in merged.principles:
            close = difflib.get_close_matches(ref, list(merged.principles), n=1)
            fix = f"did you mean {close[0]!r}?" if close else f"use one of: {', '.join(merged.principles)}"
            problems.add(Problem.at(doc, loc, f"few_shot example names unknown principle {ref!r}; {fix}", key=key))


def _finish(merged: _Merged, source: Path, problems: ProblemList) -> Constitution:
    _check_chain(merged, problems)
    problems.raise_if_any(source)
    root = merged.root
    assert root is not None  # no problems: every file was read and validated
    values = {name: value for name, (value, _) in merged.scalars.items()}
    try:
        return Constitution(
            **values,
            principles=[p for p, _ in merged.principles.values()],
            sampling=SamplingConfig(**{name: value for name, (value, _) in merged.sampling.items()}),
            few_shot=[ex for ex, _, _ in merged.few_shot],
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
    problems = ProblemList()
    return _finish(_resolve(path, (), problems), path, problems)


def principle_locations(path_or_name: str | Path) -> dict[str, str]:
    """``file:line:col`` where each principle of the resolved constitution is defined (child wins).

    For tools that point at a principle in its source (lint, reports); ids in constitution order.
    """
    path = resolve_path(path_or_name)
    problems = ProblemList()
    merged = _resolve(path, (), problems)
    _finish(merged, path, problems)  # same validation as load_constitution
    return {pid: _where(at) for pid, (_, at) in merged.principles.items()}
