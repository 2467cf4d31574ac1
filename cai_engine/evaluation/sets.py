"""The four eval prompt sets, their shipped defaults, and strict loading with one-line errors.

* ``heldout`` - ordinary requests (``prompt``): the trained model against its base under the judge.
* ``redteam`` - harmful requests (``prompt``, ``category``): harmful-answer and refusal rates.
* ``benign_risky`` - harmless requests that merely sound risky (``prompt``, ``category``): over-refusal.
* ``sycophancy`` - questions with one correct short answer (``prompt``, ``answer``, ``pushback``,
  optional ``aliases``): does the model drop a correct answer when the user pushes back?

In ``heldout``, ``redteam`` and ``benign_risky`` a prompt may be a conversation: ``prompt`` (or
``messages``) holds a string, a ``messages`` list or an HH transcript, read as ``cai revise`` reads
prompts (a final assistant answer is cut); the models answer its last user turn with every earlier
turn as context. Sycophancy probes are single-turn (the pushback is their second turn).

The shipped sets are small and original (written for this project); pass your own files with the
same fields for a real evaluation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cai_engine.errors import CaiError
from cai_engine.paths import data_path
from cai_engine.sources import Turn, to_conversation

SHIPPED_DIR = data_path("eval")
SET_NAMES: tuple[str, ...] = ("heldout", "redteam", "benign_risky", "sycophancy")
_REQUIRED = {"heldout": ("prompt",), "redteam": ("prompt",), "benign_risky": ("prompt",), "sycophancy": ("prompt", "answer", "pushback")}


@dataclass(frozen=True)
class EvalItem:
    """One prompt of one set, with the fields its metric needs.

    ``prompt`` is the (last) user turn; ``messages`` the whole prompt conversation when it has more
    than that one turn (empty otherwise)."""

    set: str
    index: int
    prompt: str
    category: str | None = None
    answer: str | None = None
    aliases: tuple[str, ...] = ()
    pushback: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    messages: tuple[Turn, ...] = ()

    @property
    def conversation(self) -> tuple[Turn, ...]:
        return self.messages or (Turn("user", self.prompt),)

    def prompt_key(self) -> Any:
        """The prompt as record ids hash it: the string for a single-turn prompt, else every turn."""
        return [t._asdict() for t in self.messages] if self.messages else self.prompt


def _conversation(name: str, row: dict[str, Any], path: Path, lineno: int) -> tuple[Turn, ...] | None:
    """A conversational prompt of a non-sycophancy row (None when the row's prompt is a plain string)."""
    value = row.get("prompt", row.get("messages"))
    if value is None or (isinstance(value, str) and not value.lstrip().startswith("Human:")):
        return None
    try:
        return to_conversation(value)
    except ValueError as exc:
        raise CaiError(f"{path}:{lineno}: {name} prompt: {exc}") from None


def shipped_path(name: str) -> Path:
    return SHIPPED_DIR / f"{name}.jsonl"


def load_set(name: str, path: Path | None = None, limit: int | None = None) -> list[EvalItem]:
    """Items of set ``name`` from ``path`` (default: the shipped file), at most ``limit``."""
    if name not in _REQUIRED:
        raise CaiError(f"unknown eval set {name!r}; use one of {', '.join(SET_NAMES)}")
    path = path or shipped_path(name)
    if not path.is_file():
        raise CaiError(f"{name} prompt set {path} not found; pass an existing JSONL file (fields: {', '.join(_REQUIRED[name])})")
    items: list[EvalItem] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            if limit is not None and len(items) >= limit:
                break
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CaiError(f"{path}:{lineno}: invalid JSON ({exc.msg}); each line must be one JSON object") from None
            if not isinstance(row, dict):
                raise CaiError(f"{path}:{lineno}: each line must be a JSON object with {', '.join(_REQUIRED[name])}")
            conversation = _conversation(name, row, path, lineno) if name != "sycophancy" else None
            if conversation is not None:
                row = {**row, "prompt": conversation[-1].content}
                row.pop("messages", None)
            for key in _REQUIRED[name]:
                value = row.get(key)
                if not isinstance(value, str) or not value.strip():
                    raise CaiError(f"{path}:{lineno}: {name} rows need a non-empty string {key!r} (fields: {', '.join(_REQUIRED[name])})")
            aliases = row.get("aliases", [])
            if not isinstance(aliases, list) or not all(isinstance(a, str) and a.strip() for a in aliases):
                raise CaiError(f"{path}:{lineno}: 'aliases' must be a list of non-empty strings, e.g. [\"7\", \"seven\"]")
            items.append(EvalItem(
                set=name, index=len(items), prompt=row["prompt"].strip(), category=row.get("category"),
                answer=row.get("answer"), aliases=tuple(aliases), pushback=row.get("pushback"),
                meta={k: v for k, v in row.items() if k not in ("prompt", "category", "answer", "aliases", "pushback")},
                messages=conversation if conversation is not None and len(conversation) > 1 else (),
            ))
    if not items:
        raise CaiError(f"{path}: no {name} prompts found; the file needs JSON lines with {', '.join(_REQUIRED[name])}")
    return items
