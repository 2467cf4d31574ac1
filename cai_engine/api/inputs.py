"""What the Python API accepts as prompts: a list, a file path, or a ``datasets.Dataset``.

The CLI passes a path; a notebook passes whatever it holds. Every shape becomes the same stream of
:class:`~cai_engine.sources.PromptItem`, so the pipelines see no difference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator

from cai_engine.errors import CaiError
from cai_engine.sources import PromptItem, count_prompts, iter_prompts, pick_prompt

#: A list of prompts (strings, ``messages`` lists or rows with a prompt column), a prompt file /
#: datasets dir, or a ``datasets.Dataset``.
Prompts = Any


def _is_dataset(value: Any) -> bool:
    return type(value).__name__ in ("Dataset", "IterableDataset") and hasattr(value, "column_names")


def iter_prompt_items(prompts: Prompts, column: str | None = None, limit: int | None = None) -> Iterator[PromptItem]:
    """Stream ``prompts`` as PromptItems (empty prompts are skipped, as from a file)."""
    if isinstance(prompts, (str, Path)):
        yield from iter_prompts(prompts, column, limit)
        return
    rows: Iterable[Any]
    if _is_dataset(prompts) or isinstance(prompts, (list, tuple)):
        rows = prompts
    else:
        raise CaiError(f"prompts must be a list, a file path or a datasets.Dataset, not {type(prompts).__name__}")
    produced = 0
    source = Path("<prompts>")
    for index, row in enumerate(rows):
        if limit is not None and produced >= limit:
            return
        if isinstance(row, str):
            text = row
        elif isinstance(row, list):
            text = pick_prompt({"messages": row}, "messages", source, index)
        elif isinstance(row, dict):
            text = pick_prompt(row, column, source, index)
        else:
            raise CaiError(f"prompts[{index}] is a {type(row).__name__}; give a string, a messages list or a dict row")
        text = text.strip()
        if text:
            produced += 1
            yield PromptItem(text=text, row=index)


def count_prompt_items(prompts: Prompts, column: str | None = None, limit: int | None = None) -> int:
    if isinstance(prompts, (str, Path)):
        return count_prompts(prompts, column, limit)
    return sum(1 for _ in iter_prompt_items(prompts, column, limit))


def source_of(prompts: Prompts) -> str:
    """The prompt source as the folder's settings record it: the path, or the kind of object (a
    list that grows between calls is still the same source)."""
    if isinstance(prompts, (str, Path)):
        return str(prompts)
    return "datasets.Dataset" if _is_dataset(prompts) else "python list"


def describe(prompts: Prompts) -> str:
    """What the manifest says the prompts were."""
    if isinstance(prompts, (str, Path)):
        return str(prompts)
    if _is_dataset(prompts):
        return f"datasets.Dataset ({len(prompts)} rows)"
    return f"python list ({len(prompts)} prompts)"
