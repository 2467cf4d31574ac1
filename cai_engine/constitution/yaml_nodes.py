"""What a constitution's YAML node tree shows and its data hides: key problems, swallowed keys.

:mod:`cai_engine.yamlfile` reads a file into data plus positions and stops at its first key
problem. Two things need the node tree itself:

* :func:`key_problems` lists *every* duplicate or non-text key of a file (not just the first), and
  :func:`tolerant_doc` reads such a file anyway, so ``cai constitution validate`` can report them
  all and go on checking the rest;
* :func:`swallowed_keys` finds lines inside a block scalar (``revision: >-`` or ``|``) that look like
  a key of the enclosing mapping, e.g. a ``judge:`` indented two spaces too far, which YAML reads
  as one more line of the revision text: the principle silently loses its judge question.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import yaml

from cai_engine.yamlfile import Loc, Pos, YamlDoc

_TAG_NAMES = {
    "tag:yaml.org,2002:int": "a number",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:bool": "a boolean",
    "tag:yaml.org,2002:null": "null",
    "tag:yaml.org,2002:timestamp": "a date",
}
# `key:` or `- key:` at the start of a line (after indentation), followed by a space or the end.
_KEY_LINE = re.compile(r"^(?P<indent>[ ]*)(?P<dash>-[ ]+)?(?P<key>[A-Za-z_][A-Za-z0-9_-]*)[ ]*:(?:[ \t]|$)")


def compose(text: str) -> yaml.Node | None:
    """The node tree of one YAML document (``yaml.YAMLError`` on a syntax error)."""
    loader = yaml.SafeLoader(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def _mappings(node: yaml.Node, loc: Loc = (), seen: set[int] | None = None) -> Iterable[tuple[Loc, yaml.MappingNode]]:
    """Every mapping node with its path, parents first (aliases are visited once)."""
    seen = set() if seen is None else seen
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        yield loc, node
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value != "<<":
                yield from _mappings(value_node, loc + (key_node.value,), seen)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _mappings(item, loc + (index,), seen)


@dataclass(frozen=True)
class KeyProblem:
    """A mapping key YAML accepts but a constitution cannot: a duplicate, or a key that is not text."""

    pos: Pos
    loc: Loc  # the key's path (for a non-text key, its parent's path plus the key as written)
    message: str  # "what; how to fix"
    not_text: bool = False  # a key that is not text (rather than a duplicate)


def key_problems(node: yaml.Node | None) -> list[KeyProblem]:
    """Every duplicate or non-text key in the tree, in file order (same wording as ``yamlfile``)."""
    found: list[KeyProblem] = []
    if node is None:
        return found
    for loc, mapping in _mappings(node):
        first: dict[str, Pos] = {}
        for key_node, _ in mapping.value:
            pos = Pos.of(key_node.start_mark)
            if not isinstance(key_node, yaml.ScalarNode):
                found.append(KeyProblem(pos, loc, "a mapping key must be plain text; write `key: value`", True))
                continue
            key = key_node.value
            if key == "<<":
                continue
            if key_node.tag != "tag:yaml.org,2002:str":
                found.append(KeyProblem(
                    pos, loc + (key,),
                    f"key {key!r} is read as {_TAG_NAMES.get(key_node.tag, 'non-text')}, not text; "
                    f"quote it (\"{key}\":) or use a name",
                    True,
                ))
            elif key in first:
                found.append(KeyProblem(
                    pos, loc + (key,), f"duplicate key {key!r} (first at line {first[key].line}); keep only one of them"
                ))
            else:
                first[key] = pos
    return sorted(found, key=lambda p: (p.pos.line, p.pos.col))


def tolerant_doc(text: str, path: Path) -> tuple[YamlDoc, list[KeyProblem]]:
    """Data and positions of a file with key problems, and the problems, so checking can go on.

    As PyYAML does, the last of duplicate keys wins; a key that is not text is kept as the text
    written (so the schema reports it as unknown only if the caller does not skip it); a key that
    is not a scalar is dropped. Raises ``yaml.YAMLError`` on a syntax error.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        doc = YamlDoc(path=path, data=None)
        if node is None:
            return doc, []
        found = key_problems(node)
        for _, mapping in list(_mappings(node)):
            last: dict[str, int] = {}
            for index, (key_node, _) in enumerate(mapping.value):
                if isinstance(key_node, yaml.ScalarNode) and key_node.value != "<<":
                    last[key_node.value] = index
            kept = []
            for index, (key_node, value_node) in enumerate(mapping.value):
                if not isinstance(key_node, yaml.ScalarNode):
                    continue
                if key_node.value != "<<":
                    if last[key_node.value] != index:
                        continue
                    key_node.tag = "tag:yaml.org,2002:str"
                kept.append((key_node, value_node))
            mapping.value = kept
        _positions(node, (), doc, set())
        doc.data = loader.construct_document(node)
        return doc, found
    finally:
        loader.dispose()


def _positions(node: yaml.Node, loc: Loc, doc: YamlDoc, seen: set[int]) -> None:
    doc.values.setdefault(loc, Pos.of(node.start_mark))
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if key_node.value == "<<":
                continue
            doc.keys[loc + (key_node.value,)] = Pos.of(key_node.start_mark)
            _positions(value_node, loc + (key_node.value,), doc, seen)
    elif isinstance(node, yaml.ScalarNode):
        if node.style is None:
            doc.raw.setdefault(loc, node.value)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _positions(item, loc + (index,), doc, seen)


@dataclass(frozen=True)
class SwallowedKey:
    """A line inside a block scalar that looks like a key of the mapping holding the scalar."""

    map_loc: Loc  # the enclosing mapping, e.g. ("principles", 2)
    scalar_key: str  # the key whose block scalar holds the line, e.g. "revision"
    indicator: str  # the block indicator as written: ">-", "|", ">+", "|2", ...
    key: str  # the key the line looks like, e.g. "judge"
    line: int  # 1-based line of the look-alike key
    col: int  # 1-based column of the look-alike key
    scalar_col: int  # 1-based column of ``scalar_key``: where a real sibling key starts
    present: bool  # the mapping has that key anyway (so nothing was lost, but the text gained a line)
    item: bool = False  # the line is `- key:`: a new list item, swallowed whole

    def hint(self) -> str:
        """How to fix it: indent the key like its siblings, or make clear it is text."""
        if self.item:
            return (
                f"if it starts a new list item, unindent `- {self.key}:` to the `- ` of the item above; "
                "if it is text, reword the line"
            )
        return (
            f"if `{self.key}:` is meant as a key, start it in column {self.scalar_col} like `{self.scalar_key}:`; "
            f"if it is text, reword the line so it does not start with `{self.key}:`"
        )

    def describe(self) -> str:
        """What YAML made of the line (``line N inside the `revision: >-` block looks like ...``)."""
        block = f"`{self.scalar_key}: {self.indicator}` block"
        if self.item:
            return (
                f"line {self.line} inside the {block} looks like a new item `- {self.key}:` but is part of "
                f"the {self.scalar_key} text; the item it starts is lost"
            )
        lost = "" if self.present else f", so `{self.key}` is not set"
        return f"line {self.line} inside the {block} looks like the key `{self.key}:` but is part of the {self.scalar_key} text{lost}"


def swallowed_keys(text: str, keys_for: Callable[[Loc], Iterable[str]] | None = None) -> list[SwallowedKey]:
    """Lines of block scalars that start like a key of the enclosing mapping.

    A line counts when it starts (after its indentation, and an optional ``- ``) with ``KEY:`` where
    KEY is one of the mapping's own keys or one of ``keys_for(mapping path)`` (the keys the schema
    allows there). Unparseable text gives no findings (the loader reports the syntax error).
    """
    try:
        node = compose(text)
    except yaml.YAMLError:
        return []
    if node is None:
        return []
    lines = text.splitlines()
    found: list[SwallowedKey] = []
    for loc, mapping in _mappings(node):
        siblings = {k.value for k, _ in mapping.value if isinstance(k, yaml.ScalarNode)}
        allowed = siblings | set(keys_for(loc) if keys_for else ())
        for key_node, value_node in mapping.value:
            if not (isinstance(value_node, yaml.ScalarNode) and value_node.style in ("|", ">")):
                continue
            parent_indent = key_node.start_mark.column
            mark = value_node.start_mark
            indicator = (lines[mark.line][mark.column:].split() or [value_node.style])[0] if mark.line < len(lines) else value_node.style
            first, last = value_node.start_mark.line + 1, value_node.end_mark.line
            for number in range(first, min(last + 1, len(lines))):
                match = _KEY_LINE.match(lines[number])
                if match is None or len(match["indent"]) <= parent_indent:
                    continue  # a line at the parent's indentation already ends the block
                key = match["key"]
                if key not in allowed:
                    continue
                col = len(match["indent"]) + len(match["dash"] or "") + 1
                item = bool(match["dash"])  # `- id:`: a whole list item swallowed, not a key of this map
                found.append(SwallowedKey(
                    loc, str(key_node.value), indicator, key, number + 1, col, parent_indent + 1,
                    present=key in siblings and not item, item=item,
                ))
    return sorted(found, key=lambda s: (s.line, s.col))
