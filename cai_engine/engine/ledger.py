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
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cai_engine.errors import BudgetExceeded

LEDGER_FILE = "ledger.json"
_SAVE_EVERY_S = 0.5


@dataclass
class ItemCost:
    """The spend of one item (a prompt, a pair) while it runs; the runner writes it into the record."""

    usd: float = 0.0


#: The item the current task works on; engines charge it. Tasks spawned inside an item inherit it.
CURRENT_ITEM: contextvars.ContextVar[ItemCost | None] = contextvars.ContextVar("cai_current_item", default=None)


def _tail_cost(path: Path, offset: int) -> tuple[int, float]:
    """(end offset, summed ``cost_usd``) of the complete lines of ``path`` after ``offset``."""
    if not path.exists():
        return 0, 0.0
    total = 0.0
    end = offset
    with path.open("rb") as fh:
        fh.seek(offset)
        for raw in fh:
            if not raw.endswith(b"\n"):
                break
            end += len(raw)
            if b'"cost_usd"' in raw:
                total += float(json.loads(raw).get("cost_usd") or 0.0)
    return end, total


class BudgetLedger:
    """Spend of one OUT (or of one command when there is no OUT) and the budget it is held to."""

    def __init__(self, out_dir: Path | None, max_cost_usd: float | None = None):
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.max_cost_usd = max_cost_usd
        self._lock = threading.Lock()
        self._files: dict[str, dict[str, float]] = {}  # file name -> {"offset", "usd"}
        self.outside_usd = 0.0
        self.by_model: dict[str, float] = {}
        self.session_usd = 0.0  # charged by this command
        self._recorded_this_session = 0.0
        self._outside_this_session = 0.0
        self._last_save = 0.0
        if self.out_dir is not None:
            self._load()
        self.spent_before = self.total_on_disk()

    # ---- persistence -------------------------------------------------------------------------
    @property
    def path(self) -> Path | None:
        return None if self.out_dir is None else self.out_dir / LEDGER_FILE

    def _load(self) -> None:
        assert self.path is not None
        if not self.path.exists():
            return
        data = json.loads(self.path.read_text())
        self.outside_usd = float(data.get("outside_records_usd", 0.0))
        self.by_model = {k: float(v) for k, v in data.get("by_model", {}).items()}
        for name, entry in data.get("files", {}).items():
            offset, usd = int(entry.get("offset", 0)), float(entry.get("usd", 0.0))
            path = self.out_dir / name  # type: ignore[operator]
            size = path.stat().st_size if path.exists() else 0
            if size < offset:  # the file was replaced or truncated by hand: count it again
                offset, usd = 0, 0.0
            end, extra = _tail_cost(path, offset)
            self._files[name] = {"offset": max(end, offset), "usd": usd + extra}

    def total_on_disk(self) -> float:
        with self._lock:
            return sum(entry["usd"] for entry in self._files.values()) + self.outside_usd

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            files = {name: {"offset": int(e["offset"]), "usd": round(e["usd"], 8)} for name, e in self._files.items()}
            records = sum(e["usd"] for e in self._files.values())
            return {
                "spent_usd": round(records + self.outside_usd, 8),
                "records_usd": round(records, 8),
                "outside_records_usd": round(self.outside_usd, 8),
                "by_model": {k: round(v, 8) for k, v in self.by_model.items()},
                "max_cost_usd": self.max_cost_usd,
                "files": files,
                "updated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }

    def save(self) -> None:
        """Atomic write of ``ledger.json`` (runs on the writer thread, or at close)."""
        if self.path is None:
            return
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.snapshot(), indent=1))
        os.replace(tmp, self.path)
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
            self._files[name] = {"offset": size, "usd": 0.0}
        self.save()

    def _name(self, records_file: Path) -> str | None:
        if self.out_dir is None:
            return None
        try:
            return str(Path(records_file).resolve().relative_to(self.out_dir.resolve()))
        except ValueError:
            return None  # a record file outside OUT (tests, scripts): charged as outside spend

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
        self.by_model[spec] = self.by_model.get(spec, 0.0) + usd
        item = CURRENT_ITEM.get()
        if item is not None:
            item.usd += usd
        else:
            with self._lock:
                self.outside_usd += usd
                self._outside_this_session += usd

    def record_written(self, records_file: Path, end_offset: int, usd: float) -> None:
        """A record line is on disk (writer thread): move its cost from in flight to the file."""
        name = self._name(records_file)
        with self._lock:
            self._recorded_this_session += usd
            if name is None:
                self.outside_usd += usd
            else:
                entry = self._files.setdefault(name, {"offset": 0, "usd": 0.0})
                entry["offset"] = end_offset
                entry["usd"] += usd
        if time.monotonic() - self._last_save >= _SAVE_EVERY_S:
            self.save()

    def close(self) -> None:
        """Count spend of items that never became records (cut off by a stop) and save."""
        with self._lock:
            unrecorded = self.session_usd - self._recorded_this_session - self._outside_this_session
            if unrecorded > 1e-12:
                self.outside_usd += unrecorded
                self._outside_this_session += unrecorded
        self.save()
