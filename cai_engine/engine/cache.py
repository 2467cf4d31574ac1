"""Content-addressed response cache in SQLite (WAL), so a rerun of the same requests costs nothing.

Key: sha256 of the canonical JSON of (the model's fingerprint, messages, every sampling parameter
incl. seed and n). Keys are never part of the key or the value; for hosted models the fingerprint
holds the model name and the endpoint host (no credentials), so nothing secret is written.

Reads and writes run on the session's writer thread (one connection, FIFO), so the event loop
never waits on SQLite and a read always sees the writes queued before it.

Choice: a request with temperature > 0 and no seed is cached too. The same request then yields
the same record on a rerun, which is what resume needs (a rerun must not silently change data
already paid for). To draw fresh samples, vary the seed per sample (the pipelines do) or pass
``--no-cache``.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path

from cai_engine.models.base import ChatRequest, ChatResponse
from cai_engine.paths import cai_home


def cache_key(fingerprint: str, request: ChatRequest) -> str:
    """Hex sha256 of what determines a response. Also the Batch API ``custom_id`` (64 chars).

    ``fingerprint`` is the backend's ``fingerprint()``: for local and vLLM models it covers the
    weight and adapter files, so a checkpoint retrained at the same path is a cache miss."""
    payload = {
        "model": fingerprint,
        "messages": [[m.role, m.content] for m in request.messages],
        "params": request.params.model_dump(mode="json"),
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def default_cache_path() -> Path:
    return cai_home() / "cache.sqlite"


class ResponseCache:
    """A key -> ChatResponse table; use it from one thread at a time (the session's writer)."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path is not None else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS responses ("
            " key TEXT PRIMARY KEY, spec TEXT NOT NULL, created REAL NOT NULL, response TEXT NOT NULL)"
        )
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> ChatResponse | None:
        with self._lock:
            row = self._db.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        response = ChatResponse.model_validate_json(row[0])
        return response.model_copy(update={"cached": True, "latency_s": 0.0})

    def put(self, key: str, response: ChatResponse) -> None:
        value = response.model_dump_json(exclude={"cached", "latency_s"})
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses (key, spec, created, response) VALUES (?, ?, ?, ?)",
                (key, response.model, time.time(), value),
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
