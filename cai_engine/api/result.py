"""What an API call returns: the records as a ``datasets.Dataset``, plus the run's figures.

:class:`Result` behaves like the dataset (``len``, indexing, iteration and every ``Dataset``
attribute pass through), so notebook code can treat it as one, and keeps the summary, the engines'
token and cost counters and the budget ledger beside it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from cai_engine.engine.records import iter_latest
from cai_engine.engine.runner import RunSummary


@dataclass
class Result:
    """``dataset``: one row per record of the call's output; ``summary``: done/skipped/failed;
    ``stats``: token and cost counters per model; ``budget``: the output folder's ledger."""

    dataset: Any
    out: Path
    summary: RunSummary
    stats: list[dict[str, Any]] = field(default_factory=list)
    budget: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Any) -> Any:
        return self.dataset[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.dataset)

    def __getattr__(self, name: str) -> Any:  # column_names, to_pandas, filter, ...
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __repr__(self) -> str:
        s = self.summary
        return (f"Result({len(self.dataset)} rows from {self.out}: {s.done} new, {s.skipped} already done, "
                f"{s.failed} failed)")


def records_dataset(records_file: Path, ids: set[str] | None = None) -> Any:
    """The latest records of ``records_file`` as a Dataset (optionally only ``ids``), streamed.

    Nested fields are kept as JSON-able values; a record whose fields vary (failed vs ok) is
    normalised to the union of columns by ``datasets``' generator writer."""
    import datasets

    def rows() -> Iterator[dict[str, Any]]:
        for record in iter_latest(records_file):
            if ids is None or record["id"] in ids:
                yield _flat(record)

    first = next(rows(), None)
    if first is None:
        return datasets.Dataset.from_list([])
    return datasets.Dataset.from_generator(rows, cache_dir=str(records_file.parent / ".api-cache"))


def _flat(record: dict[str, Any]) -> dict[str, Any]:
    """Top-level scalars as they are; nested values as JSON text, so rows of any shape share one schema."""
    return {k: v if v is None or isinstance(v, (str, int, float, bool)) else json.dumps(v, ensure_ascii=False)
            for k, v in record.items()}
