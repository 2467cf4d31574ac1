"""Provider Batch APIs behind ``Engine.generate``: pipelines do not know a batch is involved.

In batch mode each request is queued; a batch is submitted when ``max_items`` have gathered or no
new request came for ``idle_s``. Before any waiting, the batch id and the ``custom_id`` of every
request it covers are written to ``batch_dir/batch-ID.json`` (atomic write + fsync). A restarted
command that sends the same requests (custom_id = the request's content hash) finds them there and
resumes polling that batch instead of paying for it again. Items a batch did not return or
returned as errors come back to the engine as error strings and are retried one by one through
the normal path. The only unguarded window is a kill between the provider accepting the batch
and the state file's fsync (milliseconds).

Callers must keep many requests in flight for batching to pay off: use
:attr:`Engine.suggested_concurrency` as the runner's concurrency.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from cai_engine.atomic import write_json_atomic
from cai_engine.engine.retry import one_line
from cai_engine.errors import BudgetExceeded, FatalBackendError
from cai_engine.models.base import ChatRequest, ChatResponse
from cai_engine.models.batch_adapter import BatchAdapter, BatchResults, BatchStatus

T = TypeVar("T")
Retry = Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]]


class BatchSettings(BaseModel):
    """How requests are grouped into provider batches and how often a batch is polled."""

    model_config = ConfigDict(extra="forbid")

    max_items: int = Field(2000, ge=1, le=50_000, description="Requests per batch at most (OpenAI allows 50k).")
    idle_s: float = Field(2.0, ge=0, description="Submit what has gathered after this long without a new request.")
    poll_s: float = Field(15.0, gt=0, description="First poll interval; grows 1.5x per poll.")
    poll_max_s: float = Field(120.0, gt=0, description="Longest poll interval.")


class BatchCoordinator:
    """Queues requests into provider batches for one model and resolves each caller's future."""

    def __init__(self, adapter: BatchAdapter, batch_dir: Path, spec: str, retry: Retry,
                 settings: BatchSettings | None = None):
        self.adapter = adapter
        self.batch_dir = Path(batch_dir)
        self.spec = spec
        self.retry = retry
        self.settings = settings or BatchSettings()
        self.submitted = 0  # batches created by this process
        self.resumed = 0  # batches found in batch_dir and polled again
        self.status: dict[str, BatchStatus] = {}
        self._known: dict[str, str] | None = None  # custom_id -> batch id, from batch_dir
        self._collect: dict[str, asyncio.Task[BatchResults]] = {}
        self._pending: list[tuple[str, ChatRequest, asyncio.Future[ChatResponse | str]]] = []
        self._futures: dict[str, asyncio.Future[ChatResponse | str]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._flusher: asyncio.Task[None] | None = None
        self._last_enqueue = 0.0
        self._created: set[str] = set()

    # ---- persisted state -------------------------------------------------------------------
    def known(self) -> dict[str, str]:
        if self._known is None:
            self._known = {}
            self.batch_dir.mkdir(parents=True, exist_ok=True)
            for path in sorted(self.batch_dir.glob("batch-*.json")):
                data = json.loads(path.read_text(encoding="utf-8"))
                if data.get("spec") != self.spec:
                    continue
                for cid in data["custom_ids"]:
                    self._known[cid] = data["batch_id"]
        return self._known

    def _persist(self, batch_id: str, custom_ids: list[str]) -> None:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", batch_id)
        write_json_atomic(self.batch_dir / f"batch-{safe}.json", {
            "batch_id": batch_id, "provider": self.adapter.provider, "spec": self.spec,
            "submitted_at": time.time(), "custom_ids": custom_ids,
        }, indent=None, durable=True)
        known = self.known()
        for cid in custom_ids:
            known[cid] = batch_id

    # ---- the caller's side -----------------------------------------------------------------
    async def generate(self, custom_id: str, request: ChatRequest) -> ChatResponse | str:
        """The batch result for this request, or an error string (the engine then retries it alone)."""
        batch_id = self.known().get(custom_id)
        if batch_id is not None:
            try:
                results = await asyncio.shield(self._results(batch_id))
            except (FatalBackendError, BudgetExceeded):
                raise
            except Exception as exc:
                return f"batch {batch_id} could not be read: {one_line(exc)}"
            return results.get(custom_id, "request missing from the batch results")
        fut = self._futures.get(custom_id)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._futures[custom_id] = fut
            self._pending.append((custom_id, request, fut))
            self._last_enqueue = time.monotonic()
            if len(self._pending) >= self.settings.max_items:
                self._flush()
            elif self._flusher is None or self._flusher.done():
                self._flusher = asyncio.create_task(self._idle_flush())
        return await asyncio.shield(fut)

    def _flush(self) -> None:
        items, self._pending = self._pending, []
        if items:
            task = asyncio.create_task(self._run_batch(items))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _idle_flush(self) -> None:
        while self._pending:
            wait = self._last_enqueue + self.settings.idle_s - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            self._flush()

    # ---- the provider's side ---------------------------------------------------------------
    async def _run_batch(self, items: list[tuple[str, ChatRequest, asyncio.Future[ChatResponse | str]]]) -> None:
        ids = [cid for cid, _, _ in items]
        try:
            batch_id = await self.retry(lambda: self.adapter.submit([(cid, req) for cid, req, _ in items]))
            self.submitted += 1
            self._created.add(batch_id)
            self._persist(batch_id, ids)  # before any waiting: a restart resumes this batch
            results = await self._results(batch_id)
            for cid, _, fut in items:
                if not fut.done():
                    fut.set_result(results.get(cid, "request missing from the batch results"))
        except (FatalBackendError, BudgetExceeded) as exc:
            for _, _, fut in items:
                if not fut.done():
                    fut.set_exception(exc)
        except Exception as exc:  # the batch as a whole failed: every item goes the normal way
            reason = f"batch failed: {one_line(exc)}"
            for _, _, fut in items:
                if not fut.done():
                    fut.set_result(reason)
        finally:
            for cid in ids:
                self._futures.pop(cid, None)

    def _results(self, batch_id: str) -> asyncio.Task[BatchResults]:
        """One poll-and-download task per batch, shared by all its callers."""
        task = self._collect.get(batch_id)
        if task is None:
            if batch_id not in self._created:
                self.resumed += 1
            task = self._collect[batch_id] = asyncio.create_task(self._poll_and_fetch(batch_id))
        return task

    async def _poll_and_fetch(self, batch_id: str) -> BatchResults:
        delay = self.settings.poll_s
        while True:
            status = await self.retry(lambda: self.adapter.status(batch_id))
            self.status[batch_id] = status
            if status.done:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, self.settings.poll_max_s)
        results: BatchResults = await self.retry(lambda: self.adapter.results(batch_id))
        return results

    async def aclose(self) -> None:
        tasks = [*self._tasks, *self._collect.values()]
        if self._flusher is not None:
            tasks.append(self._flusher)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
