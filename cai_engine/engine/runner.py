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
    # Ids started by this run and not written yet (a duplicate input row waits for nothing), and,
    # with retry_failed, the failed ids already retried once. Finished ids live in the store's
    # index only, so memory does not grow with the number of records.
    in_flight: set[str] = set()
    retried: set[str] = set()

    async def one(item: T, rid: str) -> None:
        cost = ItemCost()
        token = CURRENT_ITEM.set(cost)
        try:
            record = await worker(item, rid)
            record["id"] = rid
        except (FatalBackendError, BudgetExceeded) as exc:
            fatal.append(exc)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a failed item is a record, never a crash
            record = failure_record(rid, failure_base(item), exc)
        finally:
            CURRENT_ITEM.reset(token)
        record["cost_usd"] = round(cost.usd, 10)
        if cost.by_model:
            record["cost_by_model"] = {spec: round(usd, 10) for spec, usd in cost.by_model.items()}
        store.append(record, spend=cost.by_model)
        if record.get("status") == "failed":
            summary.failed += 1
            if len(summary.failures) < MAX_FAILURES_KEPT:  # a million failures must not fill memory
                summary.failures.append(record.get("error", ""))
        else:
            summary.done += 1
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
            if shard is not None and not in_shard(rid, shard):
                continue
            status = store.status(rid)
            if rid in in_flight or rid in retried or (status is not None and not (retry_failed and status == "failed")):
                summary.skipped += 1
                if on_skip is not None:
                    on_skip(1)
                continue
            if status == "failed":
                retried.add(rid)
            in_flight.add(rid)
            try:
                await one(item, rid)
            finally:
                in_flight.discard(rid)
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
