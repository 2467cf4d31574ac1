"""Prompt sources: JSONL, CSV, parquet, or a ``datasets`` dataset saved on disk, streamed.

Prompts are read lazily (parquet by record batch, datasets by row) so 100k prompts do not sit
in memory; :func:`count_prompts` gives the total for progress bars without keeping rows.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from cai_engine.errors import CaiError

DEFAULT_COLUMNS = ("prompt", "instruction", "question", "input", "text")


@dataclass(frozen=True)
class PromptItem:
    """One prompt and where it came from (row index in its source)."""

    text: str
    row: int


def _kind(path: Path) -> str:
    if path.is_dir():
        return "hf"
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".json", ".ndjson"}:
        return "jsonl"
    if suffix in {".csv", ".tsv"}:
        return "csv"
    if suffix == ".parquet":
        return "parquet"
    if suffix == ".txt":
        return "txt"
    raise CaiError(f"{path}: unknown prompt file type {suffix!r}; use .jsonl, .csv, .tsv, .parquet, .txt or a datasets dir")


def pick_prompt(row: dict[str, object], column: str | None, path: Path, index: int) -> str:
    """The prompt text of one row (``column`` or the first default column present)."""
    if column is not None:
        if column not in row:
            raise CaiError(f"{path}: row {index} has no column {column!r} (columns: {', '.join(map(str, row))}); pass --column NAME")
        value = row[column]
    else:
        found = next((c for c in DEFAULT_COLUMNS if c in row), None)
        if found is None:
            raise CaiError(
                f"{path}: no prompt column found (looked for {', '.join(DEFAULT_COLUMNS)}; "
                f"columns: {', '.join(map(str, row))}); pass --column NAME"
            )
        value = row[found]
    if isinstance(value, list):  # a conversational prompt: take the last user message
        users = [m.get("content", "") for m in value if isinstance(m, dict) and m.get("role") == "user"]
        value = users[-1] if users else ""
    return str(value) if value is not None else ""


def _rows(path: Path, kind: str) -> Iterator[dict[str, object]]:
    if kind == "jsonl":
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise CaiError(f"{path}:{lineno}: invalid JSON ({exc.msg}); each line must be one JSON object") from None
                yield obj if isinstance(obj, dict) else {"prompt": obj}
    elif kind == "csv":
        with path.open(encoding="utf-8", newline="") as fh:
            yield from csv.DictReader(fh, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
    elif kind == "txt":
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield {"prompt": line.rstrip("\n")}
    elif kind == "parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            yield from batch.to_pylist()
    else:
        import datasets

        try:
            loaded = datasets.load_from_disk(str(path))
        except Exception as exc:  # noqa: BLE001 - datasets raises several types here
            raise CaiError(f"{path}: not a datasets dir saved with save_to_disk ({exc})") from None
        if isinstance(loaded, datasets.DatasetDict):
            split = "train" if "train" in loaded else next(iter(loaded))
            loaded = loaded[split]
        for row in loaded:
            yield row


def iter_prompts(path: Path | str, column: str | None = None, limit: int | None = None) -> Iterator[PromptItem]:
    """Stream prompts from ``path``; empty prompts are skipped (they cannot be answered)."""
    path = Path(path)
    if not path.exists():
        raise CaiError(f"prompt file {path} not found")
    kind = _kind(path)
    produced = 0
    for index, row in enumerate(_rows(path, kind)):
        if limit is not None and produced >= limit:
            return
        text = pick_prompt(row, column, path, index).strip()
        if not text:
            continue
        produced += 1
        yield PromptItem(text=text, row=index)


def count_prompts(path: Path | str, column: str | None = None, limit: int | None = None) -> int:
    return sum(1 for _ in iter_prompts(path, column, limit))
