"""Interop: import the JSON constitutions of public CAI recipes, and write our YAML.

The recipe shape is ``{"constitutions": [{"critic": ..., "revision": ...}, ...], "system_chat": [...]}``
where each ``system_chat`` entry is one worked example as six chat messages: user prompt,
assistant response, user critique request, assistant critique, user revision request, assistant
revision. A flat list of messages (all examples concatenated) is accepted too. What does not fit
our schema is skipped with a warning rather than guessed.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import yaml

from cai_engine.constitution.schema import Constitution, FewShotExample, Principle
from cai_engine.errors import ConfigError

Warn = Callable[[str], None]


class CaiImportWarning(UserWarning):
    """Part of a recipe file could not be mapped and was skipped."""


def _default_warn(message: str) -> None:
    warnings.warn(message, CaiImportWarning, stacklevel=3)


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


def _examples(system_chat: Any, warn: Warn) -> list[list[Any]]:
    """Split ``system_chat`` into per-example message lists."""
    if system_chat is None:
        return []
    if not isinstance(system_chat, list):
        warn(f"system_chat is a {type(system_chat).__name__}, not a list; skipped all few-shot examples")
        return []
    if system_chat and all(isinstance(m, dict) for m in system_chat):
        if len(system_chat) % 6:
            warn(f"system_chat is a flat list of {len(system_chat)} messages, not a multiple of 6; "
                 "the incomplete tail was skipped")
        return [system_chat[i : i + 6] for i in range(0, len(system_chat) - len(system_chat) % 6, 6)]
    return list(system_chat)


def _few_shot(index: int, messages: Any, by_critique: dict[str, str], warn: Warn) -> FewShotExample | None:
    where = f"system_chat[{index}]"
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        warn(f"{where} is not a list of {{role, content}} messages; skipped")
        return None
    if len(messages) < 6:
        warn(f"{where} has {len(messages)} messages, a critique/revision example needs 6; skipped")
        return None
    if len(messages) > 6:
        warn(f"{where} has {len(messages)} messages; only the first 6 (one critique/revision round) were used")
    roles = [m.get("role") for m in messages[:6]]
    if roles != ["user", "assistant"] * 3:
        warn(f"{where} roles are {roles}, expected user/assistant alternating from user; skipped")
        return None
    texts = [m.get("content") for m in messages[:6]]
    if not all(isinstance(t, str) and t.strip() for t in texts):
        warn(f"{where} has an empty or non-text message; skipped")
        return None
    prompt, response, critique_request, critique, _revision_request, revision = texts
    principle = by_critique.get(_norm(critique_request))
    if principle is None:
        warn(f"{where} critique request matches no principle; imported without a principle id")
    return FewShotExample(prompt=prompt, response=response, principle=principle, critique=critique, revision=revision)


def constitution_from_cai_json(data: dict[str, Any], name: str, *, warn: Warn | None = None) -> Constitution:
    """Build a :class:`Constitution` from a public CAI recipe JSON object.

    Principles get ids ``p01``, ``p02``, ... in file order; a few-shot example is tied to the
    principle whose critique request it repeats verbatim (whitespace and case ignored).
    """
    warn = warn or _default_warn
    if not isinstance(data, dict) or not isinstance(data.get("constitutions"), list):
        raise ConfigError(
            "not a CAI recipe constitution: expected a JSON object with a \"constitutions\" list of "
            "{\"critic\", \"revision\"} objects; check the file"
        )
    for key in data:
        if key not in ("constitutions", "system_chat"):
            warn(f"unknown top-level key {key!r}; ignored")
    width = max(2, len(str(len(data["constitutions"]))))
    principles: list[Principle] = []
    by_critique: dict[str, str] = {}
    for index, item in enumerate(data["constitutions"]):
        critic = item.get("critic", item.get("critique")) if isinstance(item, dict) else None
        revision = item.get("revision") if isinstance(item, dict) else None
        if not (isinstance(critic, str) and critic.strip() and isinstance(revision, str) and revision.strip()):
            warn(f"constitutions[{index}] lacks a non-empty \"critic\" and \"revision\" text; skipped")
            continue
        pid = f"p{index + 1:0{width}d}"
        principles.append(Principle(id=pid, critique=critic, revision=revision))
        by_critique.setdefault(_norm(critic), pid)
    if not principles:
        raise ConfigError("the recipe's \"constitutions\" list has no usable {\"critic\", \"revision\"} entry; "
                          "add at least one")
    few_shot = [
        ex
        for i, messages in enumerate(_examples(data.get("system_chat"), warn))
        if (ex := _few_shot(i, messages, by_critique, warn)) is not None
    ]
    return Constitution(
        name=name,
        description="Imported from a CAI recipe JSON file.",
        principles=principles,
        few_shot=few_shot,
    )


# -- YAML writing ------------------------------------------------------------------------


class _BlockDumper(yaml.SafeDumper):
    """Literal blocks for multi-line text, plain or quoted scalars otherwise; no aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        # indent list items under their key (`principles:\n  - id: ...`), as people write it
        super().increase_indent(flow, False)


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    lines = value.split("\n")
    # Block styles cannot carry trailing spaces or leading-space first lines faithfully; the
    # emitter falls back to quoting by itself when a style is not possible, so this only asks.
    awkward = any(line != line.rstrip() for line in lines) or value[:1].isspace() or "\t" in value
    if "\n" in value and not awkward:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    if len(value) > 80 and not awkward:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=">")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_BlockDumper.add_representer(str, _str_representer)


def constitution_to_dict(constitution: Constitution) -> dict[str, Any]:
    """A compact, readable mapping for YAML: defaults are left out so files stay short."""
    out: dict[str, Any] = {"name": constitution.name, "version": constitution.version}
    if constitution.description:
        out["description"] = constitution.description
    if constitution.system_prompt is not None:
        out["system_prompt"] = constitution.system_prompt
    out["sampling"] = constitution.sampling.model_dump()
    principles = []
    for p in constitution.principles:
        item: dict[str, Any] = {"id": p.id, "critique": p.critique, "revision": p.revision}
        if p.judge is not None:
            item["judge"] = p.judge
        if p.weight != 1.0:
            item["weight"] = p.weight
        if p.tags:
            item["tags"] = list(p.tags)
        if p.metadata:
            item["metadata"] = dict(p.metadata)
        principles.append(item)
    out["principles"] = principles
    if constitution.few_shot:
        order = ("principle", "prompt", "response", "critique", "revision")
        out["few_shot"] = [
            {k: v for k in order if (v := getattr(ex, k)) is not None} for ex in constitution.few_shot
        ]
    return out


def constitution_to_yaml(constitution: Constitution) -> str:
    """Our YAML format, block style, keys in schema order; loading it back gives the same hash."""
    return yaml.dump(
        constitution_to_dict(constitution),
        Dumper=_BlockDumper,
        sort_keys=False,
        allow_unicode=True,
        width=100,
        default_flow_style=False,
    )
