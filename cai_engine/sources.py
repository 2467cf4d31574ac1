"""Prompt sources: every row becomes a conversation, streamed from a file or a ``datasets`` dataset.

Accepted sources: JSONL (``.jsonl``/``.ndjson``/``.json``, or a JSON array in ``.json``), CSV/TSV,
parquet, ``.txt`` (one prompt a line), a folder saved with ``save_to_disk``, and ``hf:NAME_OR_DIR
[:CONFIG]``: a Hub dataset id (``hf:Anthropic/hh-rlhf``; a third path part is the repo's data dir,
``hf:Anthropic/hh-rlhf/harmless-base``), a local folder of parquet/JSON/CSV files or one such file,
loaded with ``datasets.load_dataset`` (``split``, default ``train``; ``streaming``).

A row's prompt is read from ``column`` or the first of :data:`DEFAULT_COLUMNS` it has, and may be

* a string: one user turn;
* a ``messages`` list of ``{"role", "content"}`` turns (``system``/``user``/``assistant``; ShareGPT
  ``{"from": "human"|"gpt"|"system", "value"}`` is read too);
* an HH transcript, a string that starts with ``Human:`` (``"\\n\\nHuman: ... \\n\\nAssistant: ..."``).

The kind is detected per row, or forced with ``format`` (``text``, ``messages``, ``hh``). A
conversation that ends with an assistant answer is cut before it (the answer is dropped: the
policy answers anew); what is left must end with the user's turn. Inside, a prompt is a tuple of
:class:`Turn` (role, content); :class:`PromptItem.text` is the last user turn.

Bad input is one line naming the source and the 1-based row (:class:`BadRow`), raised before any
model call when the caller checks the source first (:func:`check_prompts` counts the prompts for
the progress total and validates every row in the same pass). With ``skip_bad_rows`` a bad row is
a warning (the first :data:`MAX_WARNINGS` are logged) and is counted instead.

Prompts are read lazily (parquet by record batch, datasets by batch or stream) so 1M prompts do
not sit in memory.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple

from cai_engine.errors import CaiError

DEFAULT_COLUMNS = ("prompt", "messages", "conversations", "instruction", "question", "input", "text")
FORMATS = ("auto", "text", "messages", "hh")
ROLES = ("system", "user", "assistant")
MAX_WARNINGS = 20
HF_PREFIX = "hf:"

log = logging.getLogger(__name__)

_ROLE_ALIASES = {"system": "system", "user": "user", "assistant": "assistant", "human": "user", "gpt": "assistant"}
_HH_START = re.compile(r"\s*Human:")
_HH_MARK = re.compile(r"\n\n(Human|Assistant):[ \t]?")
_BATCH = 1024


class Turn(NamedTuple):
    """One turn of a prompt conversation (the role/content of :class:`cai_engine.models.base.Message`;
    this module sits below ``models`` in the layers, so it has its own small type)."""

    role: str
    content: str


Conversation = tuple[Turn, ...]


class BadRow(CaiError):
    """One unusable input row: ``"SOURCE: row N: problem"`` (N is 1-based)."""

    def __init__(self, where: str, row: int, problem: str):
        super().__init__(f"{where}: row {row}: {problem}")
        self.where, self.row, self.problem = where, row, problem


class _Problem(ValueError):
    """What is wrong with one row; the caller adds where it is."""


@dataclass(frozen=True)
class PromptItem:
    """One prompt conversation (ends with the user's turn) and its row index (0-based) in its source."""

    messages: Conversation
    row: int

    @property
    def text(self) -> str:
        """The last user turn: the short label of the prompt (and the whole prompt when single-turn)."""
        return self.messages[-1].content

    @property
    def context(self) -> Conversation:
        """Every turn before the last user turn (a leading system turn included)."""
        return self.messages[:-1]

    @property
    def key(self) -> str | list[dict[str, str]]:
        """What a record id hashes: see :func:`conversation_key`."""
        return conversation_key(self.messages)


def conversation_key(messages: Iterable[Any]) -> str | list[dict[str, str]]:
    """The prompt as record ids hash it: the plain string for one user turn (so ids of single-turn
    prompts are those of plain string prompts, and old output folders keep resuming), else every
    turn as ``{"role", "content"}``."""
    turns = as_dicts(messages)
    if len(turns) == 1 and turns[0]["role"] == "user":
        return turns[0]["content"]
    return turns


def as_dicts(messages: Iterable[Any]) -> list[dict[str, str]]:
    """Turns (``Turn``, ``Message`` or dicts) as ``{"role", "content"}`` dicts."""
    out = []
    for m in messages:
        if isinstance(m, dict):
            out.append({"role": str(m["role"]), "content": str(m["content"])})
        else:
            out.append({"role": str(m.role), "content": str(m.content)})
    return out


def from_record(record: dict[str, Any]) -> Conversation:
    """The prompt conversation of a record: its ``messages``, or (records written before
    conversations) the one user turn of its ``prompt``."""
    messages = record.get("messages")
    if messages:
        return tuple(Turn(m["role"], m["content"]) for m in messages)
    return (Turn("user", str(record.get("prompt", ""))),)


def split_system(messages: Iterable[Any]) -> tuple[str | None, list[dict[str, str]]]:
    """``(the conversation's own system message or None, the other turns)``."""
    turns = as_dicts(messages)
    if turns and turns[0]["role"] == "system":
        return turns[0]["content"], turns[1:]
    return None, turns


def combined_system(constitution_system: str | None, conversation_system: str | None) -> str | None:
    """The one system message a model sees: the constitution's system prompt, then the
    conversation's own system message, separated by a blank line (either may be absent)."""
    parts = [p for p in (constitution_system, conversation_system) if p and p.strip()]
    if len(parts) < 2:
        return parts[0] if parts else None  # one of them: as it is written
    return parts[0].rstrip() + "\n\n" + parts[1].strip()


# --------------------------------------------------------------------------- one value -> conversation


def looks_like_transcript(text: str) -> bool:
    """An HH transcript starts with a ``Human:`` turn (``"\\n\\nHuman: ..."`` as in ``hh-rlhf``)."""
    return bool(_HH_START.match(text))


def parse_transcript(text: str) -> list[Turn]:
    """``"\\n\\nHuman: a\\n\\nAssistant: b ..."`` -> turns; text before the first turn is a system turn."""
    body = "\n\n" + text.lstrip()
    marks = list(_HH_MARK.finditer(body))
    if not any(m.group(1) == "Human" for m in marks):
        raise _Problem("transcript has no 'Human:' turn (HH format: '\\n\\nHuman: ...\\n\\nAssistant: ...'); "
                       "pass --format text to take the string as one prompt")
    turns: list[Turn] = []
    preamble = body[: marks[0].start()].strip()
    if preamble:
        turns.append(Turn("system", preamble))
    for n, mark in enumerate(marks):
        end = marks[n + 1].start() if n + 1 < len(marks) else len(body)
        turns.append(Turn("user" if mark.group(1) == "Human" else "assistant", body[mark.end(): end].strip()))
    return turns


def _content(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # OpenAI-style content parts: keep the text parts
        texts = [p.get("text") for p in value if isinstance(p, dict) and p.get("type", "text") == "text"]
        if texts and all(isinstance(t, str) for t in texts) and len(texts) == len(value):
            return "\n".join(texts)
    if value is None:
        return ""
    raise _Problem(f"{where} content is a {type(value).__name__}, not text")


def _turn(value: Any, n: int) -> Turn:
    where = f"turn {n}"
    if isinstance(value, dict):
        if "role" in value:
            role, content = value.get("role"), value.get("content")
        elif "from" in value:  # ShareGPT
            role, content = value.get("from"), value.get("value")
        else:
            raise _Problem(f"{where} is a dict without 'role'/'content' (keys: {', '.join(map(str, value)) or 'none'})")
    elif hasattr(value, "role") and hasattr(value, "content"):
        role, content = value.role, value.content
    else:
        raise _Problem(f"{where} is a {type(value).__name__}, not a {{role, content}} message")
    known = _ROLE_ALIASES.get(str(role).strip().lower()) if isinstance(role, str) else None
    if known is None:
        raise _Problem(f"{where} has unknown role {role!r}; use system, user or assistant")
    return Turn(known, _content(content, where))


def finish(turns: list[Turn], *, keep_answer: bool = False) -> Conversation:
    """Checked, stripped turns. Without ``keep_answer`` a final assistant answer is cut and the rest
    must end with the user's turn (a prompt); with it the turns are returned whole (a transcript
    whose last turn is an answer, for pairs)."""
    if turns and turns[-1].role == "assistant" and not turns[-1].content.strip():
        turns = turns[:-1]  # "...\n\nAssistant:" with nothing after it: the prompt form of HH
    if not turns:
        raise _Problem("empty conversation (no turns)")
    out = []
    for n, turn in enumerate(turns, 1):
        content = turn.content.strip()
        if not content:
            raise _Problem(f"turn {n} ({turn.role}) has empty content" if len(turns) > 1 else "empty prompt")
        if turn.role == "system" and n != 1:
            raise _Problem(f"turn {n} is a system turn; only the first turn may be the system's")
        out.append(Turn(turn.role, content))
    if keep_answer:
        return tuple(out)
    if out[-1].role == "assistant":
        out.pop()  # the old answer is dropped: the policy answers anew
    if not out or out[-1].role != "user":
        last = out[-1].role if out else "none"
        raise _Problem(f"the last turn is the {last}'s, not the user's (after cutting a final assistant answer); "
                       "a prompt must end with the user's turn")
    return tuple(out)


def to_turns(value: Any, fmt: str = "auto") -> list[Turn]:
    """One prompt value (string, messages list or HH transcript) as unchecked turns."""
    if fmt not in FORMATS:
        raise CaiError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    if value is None:
        raise _Problem("empty prompt (null)")
    if isinstance(value, str):
        if fmt == "messages":
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise _Problem("--format messages expects a list of {role, content} messages, got a plain string") from None
            if not isinstance(value, list):
                raise _Problem("--format messages expects a list of {role, content} messages")
        elif fmt == "hh" or (fmt == "auto" and looks_like_transcript(value)):
            return parse_transcript(value)
        else:
            return [Turn("user", value)]
    if isinstance(value, (list, tuple)):
        if fmt == "text":
            raise _Problem("--format text expects a string, got a list of messages")
        if fmt == "hh":
            raise _Problem("--format hh expects a transcript string, got a list")
        return [_turn(m, n) for n, m in enumerate(value, 1)]
    if isinstance(value, (int, float)) and not isinstance(value, bool) and fmt in ("auto", "text"):
        return [Turn("user", str(value))]
    raise _Problem(f"the prompt is a {type(value).__name__}, not a string or a list of messages")


def to_conversation(value: Any, fmt: str = "auto", *, keep_answer: bool = False) -> Conversation:
    """One prompt value as a checked conversation (raises ``ValueError`` with what is wrong)."""
    return finish(to_turns(value, fmt), keep_answer=keep_answer)


def pick_value(row: Any, column: str | None) -> Any:
    """The prompt value of one row: ``column`` or the first default column; a bare value is itself."""
    if not isinstance(row, dict):
        return row
    if column is not None:
        if column not in row:
            raise _Problem(f"no column {column!r} (columns: {', '.join(map(str, row))}); pass --column NAME")
        return row[column]
    found = next((c for c in DEFAULT_COLUMNS if c in row), None)
    if found is None:
        raise _Problem(f"no prompt column (looked for {', '.join(DEFAULT_COLUMNS)}; columns: {', '.join(map(str, row))}); "
                       "pass --column NAME")
    return row[found]


# --------------------------------------------------------------------------- sources -> rows


def is_hf_spec(source: Any) -> bool:
    return isinstance(source, str) and source.startswith(HF_PREFIX)


def source_name(source: Path | str) -> str:
    return str(source)


def _kind(path: Path) -> str:
    if path.is_dir():
        return "dir"
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".json", ".ndjson"}:
        return "jsonl"
    if suffix in {".csv", ".tsv"}:
        return "csv"
    if suffix == ".parquet":
        return "parquet"
    if suffix == ".txt":
        return "txt"
    raise CaiError(f"{path}: unknown prompt file type {suffix!r}; use .jsonl, .csv, .tsv, .parquet, .txt, a datasets dir "
                   "or hf:NAME_OR_DIR")


def _check_text_file(path: Path) -> None:
    """One line for a file that is empty or binary, before any row is read."""
    with path.open("rb") as fh:
        head = fh.read(8192)
    if not head.strip():
        raise CaiError(f"{path}: empty file; it needs one prompt per row")
    if b"\x00" in head:
        raise CaiError(f"{path}: binary file (it holds NUL bytes), not UTF-8 text; pass a .jsonl/.csv/.txt text file, "
                       ".parquet or a datasets dir")


def _decoding(path: Path, rows: Iterator[tuple[int, Any]]) -> Iterator[tuple[int, Any]]:
    last = 0
    try:
        for last, row in rows:
            yield last, row
    except UnicodeDecodeError as exc:
        raise CaiError(f"{path}: not UTF-8 text (undecodable byte after row {last}: {exc.reason}); "
                       "save the file as UTF-8") from None


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open(encoding="utf-8-sig") as fh:
        first = ""
        for line in fh:
            if line.strip():
                first = line.lstrip()
                break
        fh.seek(0)
        if path.suffix.lower() == ".json" and first.startswith("["):
            try:  # a JSON array file: small by nature, read whole
                data = json.load(fh)
            except json.JSONDecodeError as exc:
                raise CaiError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
            if not isinstance(data, list):
                raise CaiError(f"{path}: a .json file must be one JSON array of rows or JSON lines")
            for n, obj in enumerate(data, 1):
                yield n, obj if isinstance(obj, dict) else {"prompt": obj}
            return
        n = 0
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            n += 1
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                yield n, _Problem(f"invalid JSON on line {lineno} ({exc.msg}); each line must be one JSON object")
                continue
            yield n, obj if isinstance(obj, dict) else {"prompt": obj}


def _csv_rows(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        yield from enumerate(csv.DictReader(fh, delimiter="\t" if path.suffix.lower() == ".tsv" else ","), 1)


def _txt_rows(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open(encoding="utf-8-sig") as fh:
        n = 0
        for line in fh:
            if line.strip():
                n += 1
                yield n, {"prompt": line.rstrip("\n")}


def _parquet_rows(path: Path) -> Iterator[tuple[int, Any]]:
    import pyarrow.parquet as pq

    try:
        reader = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise CaiError(f"{path}: not a readable parquet file ({(str(exc).splitlines() or [''])[0][:160]})") from None
    n = 0
    for batch in reader.iter_batches(batch_size=_BATCH):
        for row in batch.to_pylist():
            n += 1
            yield n, row


def _saved_to_disk(path: Path) -> bool:
    return any((path / name).is_file() for name in ("dataset_info.json", "state.json", "dataset_dict.json"))


def _pick_split(loaded: Any, split: str | None, where: str) -> Any:
    import datasets

    if isinstance(loaded, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        if split is not None:
            if split not in loaded:
                raise CaiError(f"{where}: no split {split!r} (splits: {', '.join(loaded)}); pass --split NAME")
            return loaded[split]
        return loaded["train" if "train" in loaded else next(iter(loaded))]
    return loaded


def parse_hf_spec(spec: str) -> tuple[str, str | None]:
    """``hf:NAME_OR_DIR[:CONFIG]`` -> ``(NAME_OR_DIR, CONFIG or None)``."""
    rest = spec[len(HF_PREFIX):] if spec.startswith(HF_PREFIX) else spec
    name, _, config = rest.partition(":")
    if not name:
        raise CaiError(f"{spec!r}: write hf:NAME_OR_DIR[:CONFIG], e.g. hf:Anthropic/hh-rlhf or hf:data/my_prompts")
    return name, config or None


def load_hf(spec: str, *, split: str | None = None, streaming: bool = False) -> Any:
    """The ``datasets`` dataset an ``hf:`` spec (or a datasets folder) names, one split of it."""
    import datasets

    name, config = parse_hf_spec(spec)
    path = Path(name)
    try:
        if path.is_dir() and _saved_to_disk(path):
            loaded = datasets.load_from_disk(str(path))
            return _pick_split(loaded, split, spec)
        kwargs: dict[str, Any] = {"split": split or "train", "streaming": streaming}
        if path.is_file():
            builder = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv"}.get(path.suffix.lower())
            if builder is None:
                raise CaiError(f"{spec}: hf: takes a dataset id, a folder or a .parquet/.json/.jsonl/.csv file")
            return datasets.load_dataset(builder, data_files=str(path), **kwargs)
        if path.is_dir():
            return datasets.load_dataset(str(path), config, **kwargs)
        if path.is_absolute() or name.startswith("."):
            raise CaiError(f"{spec}: folder {path} not found")
        parts = name.split("/")
        data_dir = "/".join(parts[2:]) or None
        return datasets.load_dataset("/".join(parts[:2]), config, data_dir=data_dir, **kwargs)
    except CaiError:
        raise
    except Exception as exc:  # noqa: BLE001 - datasets raises many types (network, schema, split)
        first = (str(exc).splitlines() or [""])[0][:240]
        hint = "" if path.exists() else (
            "; without network use a local folder (hf:DIR) or a dataset already in the HF cache (HF_DATASETS_OFFLINE=1)")
        raise CaiError(f"{spec}: could not load the dataset ({type(exc).__name__}: {first}){hint}") from None


def dataset_rows(ds: Any) -> Iterator[tuple[int, Any]]:
    """Rows of a ``Dataset`` (read by batch) or an ``IterableDataset`` (streamed), numbered from 1."""
    n = 0
    if hasattr(ds, "iter") and hasattr(ds, "__len__"):
        for batch in ds.iter(batch_size=_BATCH):
            columns = list(batch)
            for values in zip(*(batch[c] for c in columns)):
                n += 1
                yield n, dict(zip(columns, values))
        return
    for row in ds:
        n += 1
        yield n, row


def iter_rows(source: Path | str, *, split: str | None = None, streaming: bool = False) -> Iterator[tuple[int, Any]]:
    """``(row number from 1, row)`` of a source; a row that cannot be parsed comes as a ``ValueError``.

    File-level problems (missing, empty, binary, not UTF-8, not parquet) raise :class:`CaiError`.
    """
    if is_hf_spec(source):
        yield from dataset_rows(load_hf(str(source), split=split, streaming=streaming))
        return
    path = Path(source)
    if not path.exists():
        raise CaiError(f"prompt file {path} not found")
    kind = _kind(path)
    if kind == "dir":
        if not _saved_to_disk(path) and not any(path.iterdir()):
            raise CaiError(f"{path}: empty folder; it needs parquet/JSON files or a dataset saved with save_to_disk")
        yield from dataset_rows(load_hf(HF_PREFIX + str(path), split=split, streaming=streaming))
        return
    if kind == "parquet":
        yield from _parquet_rows(path)
        return
    _check_text_file(path)
    reader = {"jsonl": _jsonl_rows, "csv": _csv_rows, "txt": _txt_rows}[kind]
    yield from _decoding(path, reader(path))


# --------------------------------------------------------------------------- rows -> prompts


@dataclass
class BadRows:
    """Bad rows seen while checking a source with ``skip_bad_rows``: counted, the first few logged."""

    count: int = 0
    first: str | None = None
    shown: int = 0
    max_shown: int = MAX_WARNINGS
    _log: Callable[[str], None] = field(default=lambda message: log.warning("%s", message), repr=False)

    def add(self, bad: BadRow) -> None:
        self.count += 1
        if self.first is None:
            self.first = str(bad)
        if self.shown < self.max_shown:
            self.shown += 1
            self._log(f"warning: skipped {bad}")

    def close(self) -> None:
        if self.count > self.shown:
            self._log(f"warning: ... and {self.count - self.shown} more bad rows skipped (not shown)")


def prompts_from_rows(
    rows: Iterable[tuple[int, Any]], where: str, column: str | None = None, limit: int | None = None, *,
    format: str = "auto", skip_bad_rows: bool = False, on_bad_row: Callable[[BadRow], None] | None = None,
) -> Iterator[PromptItem]:
    """PromptItems of numbered rows; a bad row raises :class:`BadRow` (or is passed to ``on_bad_row``
    and skipped with ``skip_bad_rows``). ``limit`` counts usable prompts."""
    if format not in FORMATS:
        raise CaiError(f"--format {format!r} is not one of {', '.join(FORMATS)}")
    produced = 0
    for n, row in rows:
        if limit is not None and produced >= limit:
            return
        try:
            if isinstance(row, ValueError):
                raise row
            messages = to_conversation(pick_value(row, column), format)
        except ValueError as exc:
            bad = BadRow(where, n, str(exc))
            if not skip_bad_rows:
                raise bad from None
            if on_bad_row is not None:
                on_bad_row(bad)
            continue
        produced += 1
        yield PromptItem(messages=messages, row=n - 1)


def iter_prompts(
    path: Path | str, column: str | None = None, limit: int | None = None, *, format: str = "auto",
    split: str | None = None, streaming: bool = False, skip_bad_rows: bool = False,
    on_bad_row: Callable[[BadRow], None] | None = None,
) -> Iterator[PromptItem]:
    """Stream prompt conversations from a file, a datasets folder or an ``hf:`` spec."""
    source = str(path) if is_hf_spec(str(path)) else Path(path)
    yield from prompts_from_rows(iter_rows(source, split=split, streaming=streaming), source_name(source), column, limit,
                                 format=format, skip_bad_rows=skip_bad_rows, on_bad_row=on_bad_row)


@dataclass
class PromptCheck:
    """What a pre-pass over a prompt source found: usable prompts and skipped bad rows."""

    count: int
    bad_rows: int = 0
    first_bad: str | None = None


def check_items(items: Iterable[Any], where: str, tally: BadRows, what: str = "prompt") -> PromptCheck:
    """Count ``items`` (consuming them); none usable at all is an error."""
    count = sum(1 for _ in items)
    tally.close()
    if count == 0:
        detail = f"; {tally.count} bad rows skipped, the first: {tally.first}" if tally.count else ""
        raise CaiError(f"{where}: no usable {what}{detail}")
    return PromptCheck(count=count, bad_rows=tally.count, first_bad=tally.first)


def check_pairs(make: Callable[[Callable[[BadRow], None]], Iterable[Any]], where: str) -> PromptCheck:
    """:func:`check_prompts` for a pairs reader: ``make(on_bad_row)`` returns the pair stream."""
    tally = BadRows()
    return check_items(make(tally.add), where, tally, what="pair")


def check_prompts(
    path: Path | str, column: str | None = None, limit: int | None = None, *, format: str = "auto",
    split: str | None = None, streaming: bool = False, skip_bad_rows: bool = False,
) -> PromptCheck:
    """Read the whole source once: every row checked (the first bad one raises unless
    ``skip_bad_rows``), the usable prompts counted. Call it before the first model request."""
    tally = BadRows()
    items = iter_prompts(path, column, limit, format=format, split=split, streaming=streaming,
                         skip_bad_rows=skip_bad_rows, on_bad_row=tally.add)
    return check_items(items, source_name(path), tally)


def count_prompts(path: Path | str, column: str | None = None, limit: int | None = None, **options: Any) -> int:
    """Usable prompts of a source (every row checked on the way; see :func:`check_prompts`)."""
    return check_prompts(path, column, limit, **options).count
