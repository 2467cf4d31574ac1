"""Constitution problems as ``file:line:col: what; how to fix`` lines, every one of them.

A file can have several problems; the loader collects them all (:class:`ProblemList`) and raises
one :class:`ConstitutionError` that keeps the list: ``cai constitution validate`` prints every
line, any other command shows the first (in file order) and says how many more there are.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from pydantic import BaseModel, ValidationError

from cai_engine.constitution.schema import FewShotExample, Principle, SamplingConfig
from cai_engine.constitution.yaml_nodes import SwallowedKey
from cai_engine.errors import ConfigError
from cai_engine.yamlfile import Loc, Pos, YamlDoc

_LOCATED = re.compile(r"^(?P<path>.+?):(?P<line>\d+):(?P<col>\d+): (?P<text>.*)$", re.DOTALL)


@dataclass(frozen=True)
class Problem:
    """One problem of a constitution file: where (1-based line and column) and what (``what; fix``)."""

    path: str
    line: int  # 0 when the problem has no position (e.g. an unreadable file)
    col: int
    text: str
    order: tuple[int, ...] = field(default=(), compare=False)  # file order, within one file

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.text}" if self.line else f"{self.path}: {self.text}"

    @classmethod
    def at(cls, doc: YamlDoc, loc: Loc, text: str, *, key: bool = False, rank: int = 1) -> Problem:
        """A problem at ``loc`` (its key with ``key``), ordered by the list item it is in, then ``rank``."""
        loc = tuple(loc)
        pos = doc.pos(loc, key=key)
        item = loc[:2] if len(loc) >= 2 and isinstance(loc[1], int) else loc
        outer = doc.pos(item, key=key and item == loc)
        return cls(str(doc.path), pos.line, pos.col, text, (outer.line, outer.col, rank, pos.line, pos.col))

    @classmethod
    def from_message(cls, message: str, path: str | Path) -> Problem:
        """A problem from a ready ``file:line:col: text`` message (e.g. a YAML syntax error)."""
        found = _LOCATED.match(message)
        if found is None:
            text = message.removeprefix(f"{path}: ")
            return cls(str(path), 0, 0, text, (0, 0, 0, 0, 0))
        line, col = int(found["line"]), int(found["col"])
        return cls(found["path"], line, col, found["text"], (line, col, 1, line, col))


class ConstitutionError(ConfigError):
    """A constitution with one or more problems; ``problems`` lists them all, in file order.

    ``str()`` is the first problem, plus how many more there are and how to list them, so every
    command still prints one line.
    """

    def __init__(self, problems: list[Problem], source: str | Path | None = None) -> None:
        if not problems:
            raise ValueError("ConstitutionError needs at least one problem")
        self.problems = list(problems)
        more = len(self.problems) - 1
        tail = ""
        if more:
            where = f" {source}" if source is not None else ""
            tail = (f" ({more} more problem{'s' * (more != 1)} after this one; "
                    f"`cai constitution validate{where}` lists every one)")
        super().__init__(f"{self.problems[0]}{tail}")


class ProblemList:
    """Problems collected while loading a constitution and its ``extends`` chain.

    Sorted by file (in the order the loader first read them: the named file, then its parents),
    then by position; a problem already reported is not repeated.
    """

    def __init__(self) -> None:
        self._items: list[tuple[tuple[int, ...], Problem]] = []
        self._files: dict[str, int] = {}

    def __bool__(self) -> bool:
        return bool(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def add(self, problem: Problem) -> None:
        if any(p == problem for _, p in self._items):
            return
        index = self._files.setdefault(problem.path, len(self._files))
        self._items.append(((index, *problem.order, len(self._items)), problem))

    def add_error(self, exc: ConfigError, path: str | Path) -> None:
        """Add a :class:`ConfigError` raised by a helper (its problems, or its one message)."""
        if isinstance(exc, ConstitutionError):
            for problem in exc.problems:
                self.add(problem)
        else:
            self.add(Problem.from_message(str(exc), path))

    def problems(self) -> list[Problem]:
        return [p for _, p in sorted(self._items, key=lambda item: item[0])]

    def raise_if_any(self, source: str | Path | None = None) -> None:
        if self._items:
            raise ConstitutionError(self.problems(), source)

# What to write when a required key is missing, by key name.
_ADD_HINTS = {
    "name": "add `name: my-constitution` at the top level",
    "principles": "add a `principles:` list with at least one principle (id, critique, revision)",
    "id": "add `id: short_name` (lowercase letters, digits, '_' and '-')",
    "critique": 'add `critique: "Identify specific ways the response ..."`',
    "revision": 'add `revision: "Rewrite the response to ..."`',
    "prompt": "add `prompt:` with the user's request",
    "response": "add `response:` with the flawed first response",
}

# How to fix an invalid value, by key name (for checks without a more specific message).
_FIX_HINTS = {
    "weight": "use a positive number such as 1.0 or 2.0",
    "critique": "write the critique request text",
    "revision": "write the revision request text",
    "judge": "write a question like 'Which response is more honest?' or delete the key",
}

_KIND = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "list_type": "a list",
    "dict_type": "a mapping (key: value lines)",
    "model_type": "a mapping (key: value lines)",
    "model_attributes_type": "a mapping (key: value lines)",
    "bool_type": "true or false",
}


def _closest(word: str, options: list[str]) -> list[str]:
    """The valid key a misspelt one most likely meant (empty if none is close)."""
    return difflib.get_close_matches(word, options, n=1, cutoff=0.5)


def _describe_value(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return f"{type(value).__name__} {text[:40] + '...' if len(text) > 40 else text}"


def model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The pydantic model whose fields live at ``loc`` (None inside a scalar or list of scalars)."""
    if not loc:
        return root
    head = loc[0]
    if head == "principles" and len(loc) >= 2 and isinstance(loc[1], int):
        return Principle if len(loc) == 2 else None
    if head == "few_shot" and len(loc) >= 2 and isinstance(loc[1], int):
        return FewShotExample if len(loc) == 2 else None
    if head == "sampling" and len(loc) == 1:
        return SamplingConfig
    return None


def describe_loc(loc: Loc, data: Any) -> str:
    """Human name of a place in the file: ``principle 'honesty'``, ``few_shot[1]``, ``principle 'a' tags[0]``."""
    if not loc:
        return "the top level"
    rest = loc
    head = ""
    if loc[0] == "principles" and len(loc) >= 2 and isinstance(loc[1], int):
        item = _value_at(data, loc[:2])
        pid = item.get("id") if isinstance(item, dict) else None
        if isinstance(pid, str):
            head, rest = f"principle {pid!r}", loc[2:]
    parts = [head] if head else []
    for part in rest:
        if isinstance(part, int) and parts:
            parts[-1] += f"[{part}]"
        else:
            parts.append(str(part))
    return " ".join(parts[:1] + [".".join(parts[1:])]) if head and len(parts) > 1 else ".".join(parts)


def _value_at(data: Any, loc: Loc) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _message(err: dict[str, Any], doc: YamlDoc, root: type[BaseModel]) -> tuple[Pos, str, str]:
    """(position, what is wrong, how to fix) for one pydantic error."""
    loc: Loc = tuple(err["loc"])
    kind = err["type"]
    parent, last = loc[:-1], (loc[-1] if loc else None)
    place = describe_loc(parent, doc.data)
    field = str(last)

    if kind == "extra_forbidden":
        model = model_at(root, parent)
        valid = list(model.model_fields) if model else []
        valid = [v for v in valid if v != "source_path"]
        close = _closest(field, valid)
        fix = f"did you mean {close[0]!r}?" if close else f"valid keys are: {', '.join(valid)}"
        return doc.pos(loc, key=True), f"unknown key {field!r} in {place}", fix
    if kind == "missing":
        hint = _ADD_HINTS.get(field, f"add `{field}:`")
        return doc.pos(parent), f"{place} is missing required key {field!r}", hint
    if kind == "null_value":
        return doc.pos(loc), f"{field!r} in {place} is empty", f"give it a value or delete the `{field}:` line"

    value = _value_at(doc.data, loc)
    if isinstance(last, int):  # a list item, e.g. principles[2] or principle 'a' tags[0]
        name = describe_loc(loc, doc.data)
    else:
        name = f"{field!r} in {place}" if parent else f"{field!r}"
    if kind in _KIND:
        want = _KIND[kind]
        fix = "quote it to make it text" if want == "text" and value is not None else f"write {want}"
        if want.startswith("a mapping"):
            fix = "write it as indented `key: value` lines"
        return doc.pos(loc), f"{name} must be {want}, got {_describe_value(value)}", fix
    if kind == "string_pattern_mismatch" and field == "id":
        suggestion = "".join(c if c.isalnum() or c in "_-" else "_" for c in str(value).lower()).strip("_") or "p1"
        return (
            doc.pos(loc),
            f"principle id {value!r} is not valid (only lowercase letters, digits, '_' and '-')",
            f"rename it, e.g. {suggestion!r}",
        )
    if kind == "string_too_short":
        return doc.pos(loc), f"{name} is empty", "write the text or delete the key"
    if kind in ("greater_than", "greater_than_equal"):
        bound = err.get("ctx", {}).get("gt", err.get("ctx", {}).get("ge"))
        op = ">" if kind == "greater_than" else ">="
        return doc.pos(loc), f"{name} must be {op} {bound}, got {value!r}", f"use a number {op} {bound}"
    if kind == "too_short":
        return doc.pos(loc, key=True), f"{name} is empty", "add at least one item"
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    fix = _FIX_HINTS.get(field, "fix the value")
    return doc.pos(loc), f"{name} {msg[:1].lower()}{msg[1:]}", fix


def validation_problems(
    exc: ValidationError,
    doc: YamlDoc,
    root: type[BaseModel],
    *,
    skip: set[Loc] | frozenset[Loc] = frozenset(),
    swallowed: Iterable[SwallowedKey] = (),
) -> list[Problem]:
    """Every pydantic error as a :class:`Problem`, in file order.

    Within one list item a misspelt key comes before the "missing" it causes, and that "missing" is
    dropped (a misspelt required key is one problem, not two). Errors at a ``loc`` in ``skip`` (keys
    already reported, e.g. a key that is not text) are left out. A required key that is missing
    because its line was indented into the block scalar above (``swallowed``) says so.
    """
    lost = {s.map_loc + (s.key,): s for s in swallowed if not s.present and not s.item}
    errors = [e for e in exc.errors(include_url=False) if tuple(e["loc"]) not in skip]
    misspelt = set()
    for err in errors:
        if err["type"] == "extra_forbidden":
            loc = tuple(err["loc"])
            model = model_at(root, loc[:-1])
            for guess in _closest(str(loc[-1]), list(model.model_fields) if model else []):
                misspelt.add(loc[:-1] + (guess,))
    errors = [e for e in errors if not (e["type"] == "missing" and tuple(e["loc"]) in misspelt)]
    problems = []
    for err in errors:
        loc = tuple(err["loc"])
        item = loc[:2] if len(loc) >= 2 and isinstance(loc[1], int) else loc
        outer = doc.pos(item, key=item == loc and err["type"] == "extra_forbidden")
        inner = doc.pos(loc, key=err["type"] == "extra_forbidden")
        rank = {"extra_forbidden": 0, "missing": 2}.get(err["type"], 1)
        pos, what, fix = _message(err, doc, root)
        if err["type"] == "missing" and loc in lost:
            fix = f"{lost[loc].describe()}; {lost[loc].hint()}"
        problems.append(Problem(str(doc.path), pos.line, pos.col, f"{what}; {fix}",
                                (outer.line, outer.col, rank, inner.line, inner.col)))
    return sorted(problems, key=lambda p: p.order)
