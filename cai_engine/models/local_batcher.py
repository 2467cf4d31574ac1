"""A micro-batcher: gather concurrent async calls and run them together in one worker thread.

Local transformers models are far faster per token when several sequences are decoded together,
but pipelines call ``generate`` one request at a time from many coroutines. The batcher sits
between the two: each call enqueues its item and awaits a future; one collector task takes the
first waiting item, waits up to ``wait_ms`` for more (or until ``max_rows`` rows are gathered),
runs ``process(items)`` in a dedicated thread so the event loop stays free, and routes each
result (or the batch's exception) back to the caller that sent it.

While a batch runs, new calls queue up; the next batch takes them at once, so under load batches
fill without waiting. Items carry a row count (a request with ``n=4`` is four sequences), and a
batch never exceeds ``max_rows`` unless a single item is larger on its own.

The batcher knows nothing about torch; it is tested with the real model through ``local.py``.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Generic, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class BatcherClosed(RuntimeError):
    """The model was closed while this request waited; nothing was generated for it."""


@dataclass
class _Pending(Generic[T, R]):
    item: T
    rows: int
    future: asyncio.Future[R]


@dataclass
class _LoopState(Generic[T, R]):
    """Queue and collector task bound to one event loop (tests may use several loops in turn)."""

    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[_Pending[T, R]] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None


class MicroBatcher(Generic[T, R]):
    """Collect concurrent ``submit`` calls into batches for ``process``.

    ``process`` runs in one worker thread (never two batches at once, which is what a single
    model instance needs) and must return one result per item, in order; an exception fails every
    item of that batch.
    """

    def __init__(
        self,
        process: Callable[[Sequence[T]], Sequence[R]],
        *,
        max_rows: int,
        wait_ms: float,
        thread_name: str = "cai-microbatch",
    ):
        if max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        self._process = process
        self.max_rows = max_rows
        self.wait_s = max(wait_ms, 0.0) / 1000.0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)
        self._state: _LoopState[T, R] | None = None
        self._closed = False
        self.batches_run = 0
        self.rows_run = 0

    async def submit(self, item: T, rows: int = 1) -> R:
        """Queue one item and wait for its result."""
        if self._closed:
            raise BatcherClosed("this local model was closed; create a new one")
        state = self._ensure_state()
        future: asyncio.Future[R] = state.loop.create_future()
        state.queue.put_nowait(_Pending(item, max(rows, 1), future))
        return await future

    def _ensure_state(self) -> _LoopState[T, R]:
        loop = asyncio.get_running_loop()
        state = self._state
        if state is None or state.loop is not loop or state.task is None or state.task.done():
            state = _LoopState(loop=loop)
            state.task = loop.create_task(self._collect(state), name="cai-microbatch-collector")
            self._state = state
        return state

    async def _collect(self, state: _LoopState[T, R]) -> None:
        carry: list[_Pending[T, R]] = []
        try:
            await self._collect_loop(state, carry)
        finally:  # a request held over for the next batch must not be lost on cancellation
            for pending in carry:
                if not pending.future.done():
                    pending.future.set_exception(BatcherClosed("this local model was closed"))

    async def _collect_loop(self, state: _LoopState[T, R], held: list[_Pending[T, R]]) -> None:
        queue = state.queue
        carry: _Pending[T, R] | None = None
        while True:
            held.clear()
            first = carry if carry is not None else await queue.get()
            carry = None
            batch = [first]
            rows = first.rows
            deadline = state.loop.time() + self.wait_s
            while rows < self.max_rows:
                try:
                    if queue.empty():
                        remaining = deadline - state.loop.time()
                        if remaining <= 0:
                            break
                        nxt = await asyncio.wait_for(queue.get(), remaining)
                    else:
                        nxt = queue.get_nowait()
                except (asyncio.TimeoutError, asyncio.QueueEmpty):
                    break
                if rows + nxt.rows > self.max_rows:
                    carry = nxt  # starts the next batch
                    held.append(nxt)
                    break
                batch.append(nxt)
                rows += nxt.rows
            live = [p for p in batch if not p.future.done()]  # callers that gave up (timeout) cost nothing
            if not live:
                continue
            try:
                results = await state.loop.run_in_executor(self._executor, self._process, [p.item for p in live])
            except asyncio.CancelledError:
                for p in live:
                    if not p.future.done():
                        p.future.set_exception(BatcherClosed("this local model was closed mid-batch"))
                raise
            except BaseException as exc:  # the batch failed: every caller in it sees why
                for p in live:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            self.batches_run += 1
            self.rows_run += sum(p.rows for p in live)
            for p, result in zip(live, results, strict=True):
                if not p.future.done():
                    p.future.set_result(result)

    async def aclose(self) -> None:
        """Stop the collector, fail requests still waiting, and let a running batch finish."""
        self._closed = True
        state, self._state = self._state, None
        if state is not None and state.task is not None and not state.task.done():
            if state.loop is asyncio.get_running_loop():
                state.task.cancel()
                try:
                    await state.task
                except (asyncio.CancelledError, Exception):
                    pass
            elif not state.loop.is_closed():
                state.loop.call_soon_threadsafe(state.task.cancel)
        if state is not None:
            while not state.queue.empty():
                pending = state.queue.get_nowait()
                if not pending.future.done():
                    pending.future.set_exception(BatcherClosed("this local model was closed"))
        await asyncio.to_thread(self._executor.shutdown, wait=True)
