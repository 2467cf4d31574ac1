"""Append-only JSONL record store: the unit of resume.

Every finished item is one JSON line with a deterministic ``id`` (hash of its inputs and config),
written and flushed to the OS as soon as it completes (fsync'ed at most every 0.5 s, so a
process crash or kill -9 loses nothing; only a power cut could lose that last half second). On restart the store reads the file, drops a torn
last line left by a kill, and reports which ids are done, so a rerun skips them: no finished
record is lost and none is written twice. A record whose ``status`` is ``"failed"`` keeps its
reason; ``--retry-failed`` redoes it and the newer line supersedes the old one (last line wins).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Iterator


def stable_hash(payload: Any, length: int = 16) -> str:
    """Hex digest of the canonical JSON of ``payload`` (sorted keys), stable across runs and machines."""
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:length]


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Yield the complete JSON lines of ``path``; a torn final line (no newline) is skipped."""
    if not path.exists():
        return
    with path.open("rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                break
            line = raw.strip()
            if line:
                yield json.loads(line)


class RecordStore:
    """One JSONL file of records keyed by ``id``.

    Not safe across processes; one run owns its output file. Within a process, writes happen
    on the event loop thread, one complete line at a time.
    """

    def __init__(self, path: Path | str, fsync_every_s: float = 0.5):
        """Every line is written and flushed to the OS at once (a kill -9 loses nothing); fsync runs
        at most every ``fsync_every_s`` (a power cut may lose that window; 0 = fsync every record).
        An fsync per record blocks the event loop ~1-10 ms, which capped a fast hosted run at about
        a third of the raw SDK's throughput (benchmarks/engine_overhead.py)."""
        self.path = Path(path)
        self.fsync_every_s = fsync_every_s
        self._last_sync = 0.0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair_torn_tail()
        self._latest: dict[str, dict[str, Any]] = {}
        for record in read_jsonl(self.path):
            self._latest[record["id"]] = record
        self._fh = self.path.open("a", encoding="utf-8")

    def _repair_torn_tail(self) -> None:
        """Cut a partial last line (a kill mid-write) so the next append starts on a fresh line."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with self.path.open("rb+") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 1))
            if fh.read(1) == b"\n":
                return
            # Walk back to the last newline and truncate after it.
            pos = size
            chunk = 4096
            while pos > 0:
                start = max(0, pos - chunk)
                fh.seek(start)
                data = fh.read(pos - start)
                idx = data.rfind(b"\n")
                if idx >= 0:
                    fh.truncate(start + idx + 1)
                    return
                pos = start
            fh.truncate(0)

    def __contains__(self, record_id: str) -> bool:
        return record_id in self._latest

    def __len__(self) -> int:
        return len(self._latest)

    def get(self, record_id: str) -> dict[str, Any] | None:
        return self._latest.get(record_id)

    def is_done(self, record_id: str, retry_failed: bool = False) -> bool:
        """True when the id needs no more work: finished, or failed and failures are not retried."""
        record = self._latest.get(record_id)
        if record is None:
            return False
        return not (retry_failed and record.get("status") == "failed")

    def append(self, record: dict[str, Any]) -> None:
        """Write one record durably. ``record`` must carry ``id``."""
        line = json.dumps(record, ensure_ascii=False, default=str)
        self._fh.write(line + "\n")
        self._fh.flush()
        now = time.monotonic()
        if self.fsync_every_s <= 0 or now - self._last_sync >= self.fsync_every_s:
            os.fsync(self._fh.fileno())
            self._last_sync = now
        self._latest[record["id"]] = record

    def records(self, status: str | None = None) -> list[dict[str, Any]]:
        """Latest record per id, in first-written order; optionally only one status."""
        return [r for r in self._latest.values() if status is None or r.get("status") == status]

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()

    def __enter__(self) -> "RecordStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def latest_records(path: Path | str, status: str | None = None) -> list[dict[str, Any]]:
    """Read a record file without opening it for writing (exports, reports)."""
    latest: dict[str, dict[str, Any]] = {}
    for record in read_jsonl(Path(path)):
        latest[record["id"]] = record
    return [r for r in latest.values() if status is None or r.get("status") == status]
