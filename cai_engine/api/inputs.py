"""What the Python API accepts as prompts: a list, a file path, an ``hf:`` spec or a ``datasets`` dataset.

The CLI passes a path or an ``hf:NAME_OR_DIR[:CONFIG]`` spec; a notebook passes whatever it holds.
Every shape becomes the same stream of :class:`~cai_engine.sources.PromptItem` (a conversation
that ends with the user's turn), so the pipelines see no difference. A list may hold strings (an
HH transcript is detected), ``messages`` lists (of dicts or :class:`~cai_engine.models.base.Message`)
or dict rows with a prompt column.

:func:`check_prompt_items` is the pre-pass every command runs before its first model request: it
counts the prompts for the progress total and checks every row on the way, so a bad row is one
line (source and 1-based row) before anything is paid for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from cai_engine.errors import CaiError
from cai_engine.sources import (
    BadRow, BadRows, PromptCheck, PromptItem, check_items, dataset_rows, is_hf_spec, iter_prompts, prompts_from_rows,
)

#: A list of prompts (strings, ``messages`` lists or rows with a prompt column), a prompt file /
#: datasets dir / ``hf:`` spec, or a ``datasets.Dataset`` / ``IterableDataset``.
Prompts = Any


@dataclass(frozen=True)
class PromptOptions:
    """How prompts are read: the CLI's ``--column``, ``--format``, ``--split``, ``--streaming``, ``--skip-bad-rows``."""

    column: str | None = None
    format: str = "auto"
    split: str | None = None
    streaming: bool = False
    skip_bad_rows: bool = False

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`iter_prompt_items` / :func:`check_prompt_items` (column included)."""
        return {"column": self.column, "format": self.format, "split": self.split, "streaming": self.streaming,
                "skip_bad_rows": self.skip_bad_rows}


def _is_dataset(value: Any) -> bool:
    return type(value).__name__ in ("Dataset", "IterableDataset") and hasattr(value, "column_names")


def _where(prompts: Prompts) -> str:
    if isinstance(prompts, (str, Path)):
        return str(prompts)
    return f"<{type(prompts).__name__}>" if _is_dataset(prompts) else "prompts"


def iter_prompt_items(prompts: Prompts, column: str | None = None, limit: int | None = None, *, format: str = "auto",
                      split: str | None = None, streaming: bool = False, skip_bad_rows: bool = False,
                      on_bad_row: Callable[[BadRow], None] | None = None) -> Iterator[PromptItem]:
    """Stream ``prompts`` as PromptItems; a bad row raises one-line :class:`BadRow` unless ``skip_bad_rows``."""
    if isinstance(prompts, (str, Path)):
        yield from iter_prompts(prompts, column, limit, format=format, split=split, streaming=streaming,
                                skip_bad_rows=skip_bad_rows, on_bad_row=on_bad_row)
        return
    if _is_dataset(prompts):
        rows: Any = dataset_rows(prompts)
    elif isinstance(prompts, (list, tuple)):
        rows = enumerate(prompts, 1)
    else:
        raise CaiError(f"prompts must be a list, a file path, an hf: spec or a datasets.Dataset, not {type(prompts).__name__}")
    yield from prompts_from_rows(rows, _where(prompts), column, limit, format=format, skip_bad_rows=skip_bad_rows,
                                 on_bad_row=on_bad_row)


def check_prompt_items(prompts: Prompts, column: str | None = None, limit: int | None = None, *, format: str = "auto",
                       split: str | None = None, streaming: bool = False, skip_bad_rows: bool = False) -> PromptCheck:
    """The pre-pass: every row checked, usable prompts counted; no usable prompt is an error."""
    tally = BadRows()
    items = iter_prompt_items(prompts, column, limit, format=format, split=split, streaming=streaming,
                              skip_bad_rows=skip_bad_rows, on_bad_row=tally.add)
    return check_items(items, _where(prompts), tally)


def count_prompt_items(prompts: Prompts, column: str | None = None, limit: int | None = None, **options: Any) -> int:
    return check_prompt_items(prompts, column, limit, **options).count


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
        try:
            return f"datasets.{type(prompts).__name__} ({len(prompts)} rows)"
        except TypeError:  # an IterableDataset has no length
            return f"datasets.{type(prompts).__name__} (streamed)"
    return f"python list ({len(prompts)} prompts)"


__all__ = ["PromptOptions", "Prompts", "check_prompt_items", "count_prompt_items", "describe", "is_hf_spec",
           "iter_prompt_items", "source_of"]
