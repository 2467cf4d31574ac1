"""Every YAML file the engine reads (constitutions, run configs, training and model configs) goes
through here, so each one reports errors the same way: one ``file:line:col: what; fix`` line.

Pydantic reports errors by ``loc`` (``("principles", 3, "critique")``); to tell the user
``file:line:col`` we compose PyYAML's node tree (which carries marks), record the position of
every mapping key and every value under its path, and construct the plain data from the same
tree. Duplicate keys, which PyYAML silently lets the last one win, are reported here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from cai_engine.errors import ConfigError

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Pos:
    """1-based line and column."""

    line: int
    col: int

    @classmethod
    def of(cls, mark: yaml.Mark | None) -> Pos:
        return cls(mark.line + 1, mark.column + 1) if mark is not None else cls(1, 1)


@dataclass
class YamlDoc:
    """Parsed data plus the position of each path in it."""

    path: Path
    data: Any
    keys: dict[Loc, Pos] = field(default_factory=dict)
    values: dict[Loc, Pos] = field(default_factory=dict)
    raw: dict[Loc, str] = field(default_factory=dict)  # source text of plain scalars, e.g. `1.10`

    def pos(self, loc: Loc, *, key: bool = False) -> Pos:
        """Position of ``loc`` (its key if ``key`` and it is a mapping entry), else of its nearest ancestor."""
        loc = tuple(loc)
        while loc:
            if key and loc in self.keys:
                return self.keys[loc]
            if loc in self.values:
                return self.values[loc]
            loc = loc[:-1]
            key = False
        return self.values.get((), Pos(1, 1))

    def where(self, loc: Loc = (), *, key: bool = False) -> str:
        """``path:line:col`` of ``loc``, ready to prefix an error message."""
        p = self.pos(loc, key=key)
        return f"{self.path}:{p.line}:{p.col}"

    def has(self, loc: Loc) -> bool:
        return tuple(loc) in self.values


_TAG_NAMES = {
    "tag:yaml.org,2002:int": "a number",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:bool": "a boolean",
    "tag:yaml.org,2002:null": "null",
    "tag:yaml.org,2002:timestamp": "a date",
}


def _syntax_error(path: Path, exc: yaml.YAMLError) -> ConfigError:
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    context_mark = getattr(exc, "context_mark", None)
    mark = getattr(exc, "problem_mark", None) or context_mark
    unclosed = "end of stream" in problem and context_mark is not None
    if unclosed:  # the end of the file is useless as a position; point at what was left open
        mark = context_mark
    pos = Pos.of(mark)
    what = f"invalid YAML: {problem}" + (f" ({context})" if context else "")
    if unclosed and context and "quoted" in context:
        fix = "close the quote that starts here"
    elif unclosed:
        fix = "close what was opened here (bracket, brace or quote)"
    elif "\\t" in problem or "\t" in problem:
        fix = "indent with spaces; YAML does not allow tabs here"
    elif "mapping values are not allowed" in problem:
        fix = "quote text that contains ': ' (e.g. critique: \"...\") or fix the indentation"
    elif "could not find expected ':'" in problem or "expected <block end>" in problem:
        fix = "check the indentation of this line against the one above, and close any open quote"
    else:
        fix = "fix the YAML syntax at this position (indentation, quotes, brackets)"
    return ConfigError(f"{path}:{pos.line}:{pos.col}: {what}; {fix}")


def _walk(node: yaml.Node, loc: Loc, doc: YamlDoc, path: Path, seen: set[int]) -> None:
    doc.values.setdefault(loc, Pos.of(node.start_mark))
    if id(node) in seen:  # an alias to a node already walked: no new positions, no infinite loop
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[Any, Pos] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                pos = Pos.of(key_node.start_mark)
                raise ConfigError(
                    f"{path}:{pos.line}:{pos.col}: a mapping key must be plain text; write `key: value`"
                )
            key = key_node.value
            if key_node.tag != "tag:yaml.org,2002:str" and key != "<<":
                pos = Pos.of(key_node.start_mark)
                raise ConfigError(
                    f"{path}:{pos.line}:{pos.col}: key {key!r} is read as {_TAG_NAMES.get(key_node.tag, 'non-text')}, "
                    f"not text; quote it (\"{key}\":) or use a name"
                )
            if key == "<<":  # merge key: its items are checked where the anchor was defined
                continue
            kpos = Pos.of(key_node.start_mark)
            if key in first:
                raise ConfigError(
                    f"{path}:{kpos.line}:{kpos.col}: duplicate key {key!r} (first at line {first[key].line}); "
                    "keep only one of them"
                )
            first[key] = kpos
            doc.keys[loc + (key,)] = kpos
            _walk(value_node, loc + (key,), doc, path, seen)
    elif isinstance(node, yaml.ScalarNode):
        if node.style is None:
            doc.raw.setdefault(loc, node.value)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, loc + (index,), doc, path, seen)


def parse_yaml(text: str, path: Path) -> YamlDoc:
    """Parse one YAML document, recording positions; syntax errors become one-line :class:`ConfigError`."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        doc = YamlDoc(path=path, data=None)
        if node is None:
            return doc
        _walk(node, (), doc, path, set())
        doc.data = loader.construct_document(node)
        return doc
    except yaml.YAMLError as exc:
        raise _syntax_error(path, exc) from None
    finally:
        loader.dispose()


def read_yaml(path: Path) -> YamlDoc:
    """Read and parse ``path``; unreadable files become :class:`ConfigError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}:1:1: not UTF-8 text ({exc.reason}); save the file as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror}); check the path and its permissions") from None
    return parse_yaml(text, path)


def read_mapping(path: Path, what: str) -> YamlDoc:
    """Read a config file whose top level is a mapping of fields (an empty file is an empty mapping).

    ``what`` names the file in messages, e.g. ``"run config"``: a missing file is
    ``PATH: run config not found``; a list or a scalar at the top is one line saying so.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {what} not found" + (" (it is a folder)" if path.is_dir() else ""))
    doc = read_yaml(path)
    if doc.data is None:
        doc.data = {}
    if not isinstance(doc.data, dict):
        raise ConfigError(f"{doc.where()}: a {what} must be a mapping of `field: value` lines, "
                          f"got {type(doc.data).__name__}")
    return doc


def validation_error(exc: ValidationError, doc: YamlDoc | None = None, source: str | None = None,
                     *, column: bool = False) -> ConfigError:
    """The first pydantic error as one line: ``FILE:LINE: a.b: message`` (``FILE:LINE:COL`` with
    ``column``); the line is that of the field in ``doc`` when the value came from the file, else
    ``source`` (e.g. ``--set``) names where it came from."""
    first = exc.errors(include_url=False)[0]
    loc: Loc = tuple(first["loc"])
    field = ".".join(str(part) for part in loc) or "(top level)"
    where = source or (str(doc.path) if doc is not None else "config")
    if doc is not None and (source is None or source == str(doc.path)):
        known = [loc[:i] for i in range(len(loc), 0, -1) if loc[:i] in doc.values]
        if known:
            pos = doc.pos(known[0], key=first["type"] == "extra_forbidden")
            where = f"{doc.path}:{pos.line}" + (f":{pos.col}" if column else "")
    return ConfigError(f"{where}: {field}: {first['msg']}")
