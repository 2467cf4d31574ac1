"""One thread for every disk write of a command: record lines, fsync, the response cache, the ledger.

Why a thread and not ``asyncio.to_thread`` per write: a single FIFO worker keeps writes in the
order they were issued (a record line before the ledger snapshot that counts it), serialises
SQLite access without a busy timeout, and costs one queue put on the event loop per write. A write
that fails (disk full) is remembered and raised by the next :meth:`Writer.submit`, so the run
stops instead of silently dropping records.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, TypeVar

T = TypeVar("T")


class WriterError(RuntimeError):
    """A background write failed; the command must stop (what was written before is intact)."""


class Writer:
    """A single background thread that runs disk work in submission order."""

    def __init__(self, name: str = "cai-writer"):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._last: Future[Any] | None = None

    def _remember(self, future: Future[Any]) -> None:
        exc = future.exception()
        if exc is not None:
            with self._lock:
                if self._error is None:
                    self._error = exc

    def raise_if_failed(self) -> None:
        if self._error is not None:
            raise WriterError(f"a background write failed: {type(self._error).__name__}: {self._error}") from self._error

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Queue ``fn(*args)``; returns at once. Raises a previous write's failure."""
        self.raise_if_failed()
        if self._closed:
            raise WriterError("the writer is closed")
        future = self._pool.submit(fn, *args)
        future.add_done_callback(self._remember)
        self._last = future
        return future

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the writer thread and await its result (reads that must see every
        earlier write, e.g. a cache lookup after a put)."""
        return await asyncio.wrap_future(self.submit(fn, *args))

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the writer thread and wait (for code outside the event loop)."""
        if threading.current_thread().name.startswith(self._pool._thread_name_prefix):  # already on it
            return fn(*args)
        return self.submit(fn, *args).result()

    def flush(self) -> None:
        """Block until everything submitted so far is done."""
        if self._closed:
            return
        self._pool.submit(lambda: None).result()
        self.raise_if_failed()

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            self._pool.shutdown(wait=True)

