"""A pipeline run as data (:class:`Job`) and the executor that runs it in process (:class:`LocalExecutor`)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, ContextManager, Generic, Iterable, Protocol, Sequence, TypeVar

from cai_engine.engine.engine import Engine
from cai_engine.engine.records import RecordStore
from cai_engine.engine.runner import RunSummary, run_items
from cai_engine.models.base import ModelConfig

T = TypeVar("T")
Worker = Callable[[T, str], Awaitable[dict[str, Any]]]


@dataclass
class Job(Generic[T]):
    """What a pipeline does per item, in a form that can travel to a Ray worker (pickled by value).

    ``models``: the configs of the engines the work needs, in order (a worker builds one engine per
    config; in process they are the session's engines). ``setup(engines)``: the per-item function
    ``work(item, id) -> record`` over those engines (the pipeline's own ``revise_one``,
    ``judge_pair``...). ``failure_base(item)``: the fields of a ``failed`` record for the item.
    Both must not hold engines or other live objects of the driver: module-level functions under
    :func:`functools.partial` are the safe form.
    """

    models: Sequence[ModelConfig]
    setup: Callable[[list[Engine]], Worker[T]]
    failure_base: Callable[[T], dict[str, Any]]


class Executor(Protocol):
    """Runs a job over an item stream into a store with the resume rule of :func:`run_items`."""

    def held(self) -> ContextManager[None]:
        """Keep what the executor connects to (a Ray cluster) open across several :meth:`run` calls
        of one command (the phases of an eval), instead of connecting once per run."""
        ...

    async def run(self, items: Iterable[T], *, job: Job[T], engines: list[Engine], record_id: Callable[[T], str],
                  store: RecordStore, concurrency: int, retry_failed: bool = False,
                  on_record: Callable[[dict[str, Any]], None] | None = None,
                  on_skip: Callable[[int], None] | None = None,
                  shard: tuple[int, int] | None = None) -> RunSummary: ...


class LocalExecutor:
    """The default: the items run on this event loop with the session's engines."""

    def held(self) -> ContextManager[None]:
        return contextlib.nullcontext()

    async def run(self, items: Iterable[T], *, job: Job[T], engines: list[Engine], record_id: Callable[[T], str],
                  store: RecordStore, concurrency: int, retry_failed: bool = False,
                  on_record: Callable[[dict[str, Any]], None] | None = None,
                  on_skip: Callable[[int], None] | None = None,
                  shard: tuple[int, int] | None = None) -> RunSummary:
        return await run_items(items, record_id=record_id, worker=job.setup(engines), store=store,
                               concurrency=concurrency, retry_failed=retry_failed, failure_base=job.failure_base,
                               on_record=on_record, on_skip=on_skip, shard=shard)
