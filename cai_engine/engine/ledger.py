"""The budget ledger of one output folder: what every command on it has spent, across reruns.

Why per OUT and persisted: ``--max-cost 5`` means "this dataset may cost 5 USD", not "this process
may". A rerun of a stopped job continues from what was spent: the same budget sends nothing, a
higher one continues. The policy, the judge and any other engine of a command charge one ledger.

What is counted and when. Each paid request is charged at once (the budget check sees it before the
next request goes out) to the item it belongs to (a context variable set by the runner), and the
item's total is written into its record as ``cost_usd``. The persisted figure is the sum over the
records on disk plus the spend that belongs to no record (requests outside any item, or items cut
off by a stop). ``OUT/ledger.json`` keeps, per record file, the byte offset up to which its records
were summed; on load the lines after that offset (written after the last save, e.g. before a
kill -9) are added, so the ledger always equals the records' costs plus the outside spend.
"""

from __future__ import annotations

import contextvars
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cai_engine.atomic import write_json_atomic
from cai_engine.errors import BudgetExceeded

LEDGER_FILE = "ledger.json"
_SAVE_EVERY_S = 0.5


Spend = dict[str, float]  # model spec -> USD


def _add(into: Spend, spend: Spend) -> None:
    for spec, usd in spend.items():
        into[spec] = into.get(spec, 0.0) + usd


def _sub(a: Spend, b: Spend) -> Spend:
    return {spec: a.get(spec, 0.0) - b.get(spec, 0.0) for spec in set(a) | set(b)}


@dataclass
class ItemCost:
    """The spend of one item (a prompt, a pair) while it runs, by model; the runner writes it into
    the record (``cost_usd``, ``cost_by_model``)."""

    by_model: Spend = field(default_factory=dict)

    @property
    def usd(self) -> float:
        return sum(self.by_model.values())


#: The item the current task works on; engines charge it. Tasks spawned inside an item inherit it.
CURRENT_ITEM: contextvars.ContextVar[ItemCost | None] = contextvars.ContextVar("cai_current_item", default=None)


def record_spend(record: dict[str, Any]) -> Spend:
    """What a record line says it cost, by model (older lines: ``cost_usd`` under the record's model)."""
    by_model = record.get("cost_by_model")
    if isinstance(by_model, dict):
        return {str(k): float(v) for k, v in by_model.items()}
    usd = float(record.get("cost_usd") or 0.0)
    return {str(record.get("model") or record.get("judge_model") or "?"): usd} if usd else {}


def _tail_spend(path: Path, offset: int) -> tuple[int, Spend]:
    """(end offset, summed spend) of the complete lines of ``path`` after ``offset``."""
    if not path.exists():
        return 0, {}
    total: Spend = {}
    end = offset
    with path.open("rb") as fh:
        fh.seek(offset)
        for raw in fh:
            if not raw.endswith(b"\n"):
                break
            end += len(raw)
            if b'"cost_usd"' in raw:
                _add(total, record_spend(json.loads(raw)))
    return end, total


@dataclass
class _FileEntry:
    offset: int = 0
    by_model: Spend = field(default_factory=dict)


class BudgetLedger:
    """Spend of one OUT (or of one command when there is no OUT) and the budget it is held to."""

    def __init__(self, out_dir: Path | None, max_cost_usd: float | None = None):
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.max_cost_usd = max_cost_usd
        self._lock = threading.Lock()
        self._files: dict[str, _FileEntry] = {}  # record file (relative to OUT) -> what its lines cost
        self._outside: Spend = {}  # spend that belongs to no record on disk
        self._charged: Spend = {}  # charged by this command
        self._recorded: Spend = {}  # ... of which written into records by this command
        self._charged_outside: Spend = {}  # ... of which charged with no item
        self.session_usd = 0.0
        self._last_save = 0.0
        if self.out_dir is not None:
            self._load()
        self.spent_before = self.total_on_disk()

    # ---- persistence -------------------------------------------------------------------------
    @property
    def path(self) -> Path | None:
        return None if self.out_dir is None else self.out_dir / LEDGER_FILE

    def _load(self) -> None:
        assert self.path is not None and self.out_dir is not None
        if not self.path.exists():
            return
        data = json.loads(self.path.read_text())
        self._outside = {k: float(v) for k, v in data.get("outside_records_by_model", {}).items()}
        for name, entry in data.get("files", {}).items():
            offset = int(entry.get("offset", 0))
            by_model = {k: float(v) for k, v in entry.get("by_model", {}).items()}
            path = self.out_dir / name
            size = path.stat().st_size if path.exists() else 0
            if size < offset:  # the file was replaced or truncated by hand: count it again
                offset, by_model = 0, {}
            end, extra = _tail_spend(path, offset)  # lines written after the last save (kill -9)
            _add(by_model, extra)
            self._files[name] = _FileEntry(offset=max(end, offset), by_model=by_model)

    def by_model(self) -> Spend:
        with self._lock:
            total: Spend = dict(self._outside)
            for entry in self._files.values():
                _add(total, entry.by_model)
            return total

    def total_on_disk(self) -> float:
        return sum(self.by_model().values())

    def snapshot(self) -> dict[str, Any]:
        by_model = self.by_model()
        with self._lock:
            files = {name: {"offset": e.offset, "usd": round(sum(e.by_model.values()), 8),
                            "by_model": {k: round(v, 10) for k, v in e.by_model.items()}}
                     for name, e in self._files.items()}
            records = sum(sum(e.by_model.values()) for e in self._files.values())
            outside = dict(self._outside)
        return {
            "spent_usd": round(records + sum(outside.values()), 8),
            "records_usd": round(records, 8),
            "outside_records_usd": round(sum(outside.values()), 8),
            "by_model": {k: round(v, 8) for k, v in sorted(by_model.items())},
            "outside_records_by_model": {k: round(v, 10) for k, v in sorted(outside.items())},
            "max_cost_usd": self.max_cost_usd,
            "files": files,
            "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }

    def save(self) -> None:
        """Atomic write of ``ledger.json`` (runs on the writer thread, or at close)."""
        if self.path is None:
            return
        write_json_atomic(self.path, self.snapshot(), indent=1)
        self._last_save = time.monotonic()

    def track(self, records_file: Path) -> None:
        """Start counting a record file of this OUT (its existing lines were counted by ``_load``
        or, for a file from before ledgers existed, are taken as already accounted)."""
        name = self._name(records_file)
        if name is None:
            return
        with self._lock:
            if name in self._files:
                return
            size = records_file.stat().st_size if records_file.exists() else 0
            self._files[name] = _FileEntry(offset=size)
        self.save()

    def _name(self, records_file: Path) -> str | None:
        if self.out_dir is None:
            return None
        try:
            return str(Path(records_file).resolve().relative_to(self.out_dir.resolve()))
        except ValueError:
            return None  # a record file outside OUT (tests, scripts): counted as outside spend

    # ---- charging ----------------------------------------------------------------------------
    @property
    def spent_usd(self) -> float:
        """Everything spent on this OUT so far, this command's in-flight items included."""
        return self.spent_before + self.session_usd

    def check(self, spec: str) -> None:
        if self.max_cost_usd is not None and self.spent_usd >= self.max_cost_usd:
            earlier = f" ({self.spent_before:.4f} USD by earlier runs on this output)" if self.spent_before else ""
            raise BudgetExceeded(
                f"{spec}: --max-cost {self.max_cost_usd:g} USD reached (spent {self.spent_usd:.4f} USD{earlier}); "
                "finished records are saved, rerun with a higher --max-cost to continue"
            )

    def charge(self, spec: str, usd: float) -> None:
        """Count ``usd`` for the current item (or as outside spend when there is none)."""
        if usd <= 0:
            return
        self.session_usd += usd
        item = CURRENT_ITEM.get()
        with self._lock:
            _add(self._charged, {spec: usd})
            if item is not None:
                _add(item.by_model, {spec: usd})
            else:
                _add(self._outside, {spec: usd})
                _add(self._charged_outside, {spec: usd})

    def record_written(self, records_file: Path, end_offset: int, spend: Spend) -> None:
        """A record line is on disk (writer thread): its cost moves from in flight to the file."""
        name = self._name(records_file)
        with self._lock:
            _add(self._recorded, spend)
            if name is None:
                _add(self._outside, spend)
            else:
                entry = self._files.setdefault(name, _FileEntry())
                entry.offset = end_offset
                _add(entry.by_model, spend)
        if time.monotonic() - self._last_save >= _SAVE_EVERY_S:
            self.save()

    def close(self) -> None:
        """Count spend of items that never became records (cut off by a stop) and save."""
        with self._lock:
            unrecorded = _sub(_sub(self._charged, self._recorded), self._charged_outside)
            leftover = {spec: usd for spec, usd in unrecorded.items() if usd > 1e-12}
            _add(self._outside, leftover)
            _add(self._charged_outside, leftover)
        self.save()
