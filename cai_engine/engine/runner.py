"""Run a per-item async worker over a stream of items with bounded concurrency and resume.

Items flow independently (no stage barrier): item 7 may be revising while item 40 is still being
answered. Only ``concurrency`` items are in flight, and the input is consumed lazily, so memory
stays flat however many prompts there are. Each finished item is appended to the store at once.
A worker exception becomes a ``failed`` record with its reason; a :class:`FatalBackendError` or
:class:`BudgetExceeded` stops the run cleanly after saving what is done.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable, TypeVar

from cai_engine.engine.ledger import CURRENT_ITEM, ItemCost
from cai_engine.engine.records import RecordStore
from cai_engine.engine.stopping import GracefulStop
from cai_engine.errors import BudgetExceeded, FatalBackendError
from cai_engine.models.keys import scrub

T = TypeVar("T")
MAX_FAILURES_KEPT = 20


@dataclass
class RunSummary:
    done: int = 0
    failed: int = 0
    skipped: int = 0
    stopped_reason: str | None = None
    failures: list[str] = field(default_factory=list)  # the first MAX_FAILURES_KEPT reasons only

    def add(self, record: dict[str, Any]) -> None:
        """Count one record written by this run."""
        if record.get("status") == "failed":
            self.failed += 1
            if len(self.failures) < MAX_FAILURES_KEPT:  # a million failures must not fill memory
                self.failures.append(record.get("error", ""))
        else:
            self.done += 1


def parse_shard(value: str | None) -> tuple[int, int] | None:
    """``"i/N"`` (0-based i) -> ``(i, N)``; None passes through."""
    from cai_engine.errors import CaiError

    if value is None:
        return None
    try:
        index, count = (int(part) for part in value.split("/"))
    except ValueError:
        raise CaiError(f"--shard {value!r} is not i/N; write e.g. --shard 0/4 for the first of four shards") from None
    if count < 1 or not 0 <= index < count:
        raise CaiError(f"--shard {value!r}: need 0 <= i < N, e.g. 0/4 .. 3/4")
    return index, count


def in_shard(record_id: str, shard: tuple[int, int]) -> bool:
    return int(record_id[:12], 16) % shard[1] == shard[0]


def failure_record(record_id: str, base: dict[str, Any], error: BaseException) -> dict[str, Any]:
    """A ``failed`` record; its reason passes through the key scrubbing that logs get (SDK error
    texts can quote the key)."""
    reason = scrub(f"{type(error).__name__}: {error}".strip())
    return {**base, "id": record_id, "status": "failed", "error": reason[:2000]}


class Pending:
    """The resume rule: which ids of an item stream need work now. Shared by :func:`run_items` and
    the Ray executor's driver, so both skip exactly the same items.

    ``admit(rid)`` is False for an id outside the shard (not counted), one the store holds (done,
    or failed without ``retry_failed``; counted as skipped), one already in flight (a duplicate
    input row) or a failed id already retried once by this run. Finished ids live in the store's
    index only, so memory does not grow with the number of records."""

    def __init__(self, store: RecordStore, summary: RunSummary, *, retry_failed: bool = False,
                 shard: tuple[int, int] | None = None, on_skip: Callable[[int], None] | None = None):
        self.store, self.summary, self.retry_failed, self.shard, self.on_skip = store, summary, retry_failed, shard, on_skip
        self.in_flight: set[str] = set()  # admitted and not written yet
        self.retried: set[str] = set()

    def __call__(self, rid: str) -> bool:
        if self.shard is not None and not in_shard(rid, self.shard):
            return False
        status = self.store.status(rid)
        if rid in self.in_flight or rid in self.retried or (
                status is not None and not (self.retry_failed and status == "failed")):
            self.summary.skipped += 1
            if self.on_skip is not None:
                self.on_skip(1)
            return False
        if status == "failed":
            self.retried.add(rid)
        self.in_flight.add(rid)
        return True


async def run_item(
    item: T,
    rid: str,
    worker: Callable[[T, str], Awaitable[dict[str, Any]]],
    failure_base: Callable[[T], dict[str, Any]],
    cost: ItemCost,
) -> dict[str, Any]:
    """One item's record: ``worker(item, rid)`` with its requests charged to ``cost``, a failure as
    a ``failed`` record, ``cost_usd``/``cost_by_model`` filled in. Raises :class:`FatalBackendError`
    and :class:`BudgetExceeded` (the run must stop; ``cost`` still says what the item spent).
    The one place a record is made, whether the item runs here or on a Ray worker."""
    token = CURRENT_ITEM.set(cost)
    try:
        record = await worker(item, rid)
        record["id"] = rid
    except (FatalBackendError, BudgetExceeded):
        raise
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a failed item is a record, never a crash
        record = failure_record(rid, failure_base(item), exc)
    finally:
        CURRENT_ITEM.reset(token)
    record["cost_usd"] = round(cost.usd, 10)
    if cost.by_model:
        record["cost_by_model"] = {spec: round(usd, 10) for spec, usd in cost.by_model.items()}
    return record


async def run_items(
    items: Iterable[T],
    *,
    record_id: Callable[[T], str],
    worker: Callable[[T, str], Awaitable[dict[str, Any]]],
    store: RecordStore,
    concurrency: int,
    retry_failed: bool = False,
    failure_base: Callable[[T], dict[str, Any]] = lambda item: {},
    on_record: Callable[[dict[str, Any]], None] | None = None,
    on_skip: Callable[[int], None] | None = None,
    shard: tuple[int, int] | None = None,
    stop: GracefulStop | None = None,
) -> RunSummary:
    """Run ``worker(item, id)`` for every item whose id the store does not hold yet.

    ``shard=(i, n)`` keeps only items whose id falls in shard ``i`` of ``n`` (by id, so the split
    is deterministic across machines and reruns); the others are not counted at all. ``stop``
    (default: the active session's): once requested, no new item starts, the items in flight
    finish and are saved, and :class:`~cai_engine.engine.stopping.Stopped` is raised.
    Each record carries ``cost_usd``, what its item's requests cost (the ledger sums them).
    """
    if stop is None:
        from cai_engine.engine.session import current_session

        session = current_session()
        stop = session.stop if session is not None else None
    summary = RunSummary()
    fatal: list[BaseException] = []
    pending = iter(items)  # shared by the workers: each pulls the next item when it is free
    admit = Pending(store, summary, retry_failed=retry_failed, shard=shard, on_skip=on_skip)

    async def one(item: T, rid: str) -> None:
        cost = ItemCost()
        try:
            record = await run_item(item, rid, worker, failure_base, cost)
        except (FatalBackendError, BudgetExceeded) as exc:
            fatal.append(exc)
            return
        store.append(record, spend=cost.by_model)
        summary.add(record)
        if on_record is not None:
            on_record(record)

    async def pull_and_run() -> None:
        # A fixed pool of `concurrency` workers instead of a task per item: no semaphore hand-off
        # and task creation between one item finishing and the next starting, which on a fast
        # API is a measurable share of the loop's time.
        for item in pending:
            if fatal or (stop is not None and stop.requested):
                return
            rid = record_id(item)
            if not admit(rid):
                continue
            try:
                await one(item, rid)
            finally:
                admit.in_flight.discard(rid)
        # After a fatal error (budget reached, auth failing) no worker starts a new item; requests
        # already in flight finish and are saved, since they are paid for whatever happens.

    workers = [asyncio.create_task(pull_and_run()) for _ in range(max(1, concurrency))]
    try:
        results = await asyncio.gather(*workers, return_exceptions=True)
    except BaseException:  # cancelled from outside (Ctrl-C): cancel the workers, then re-raise
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise
    if not fatal:
        # An exception from the item stream (a bad input row) ends the run after the items in
        # flight have finished and been saved.
        errors = [r for r in results if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)]
        if errors:
            raise errors[0]
    if fatal:
        summary.stopped_reason = str(fatal[0])
        raise fatal[0]
    if stop is not None and stop.requested:
        raise stop.stopped_error(summary.done + summary.failed)
    return summary
