"""The Ray worker: one replica of the job's models, running the pipeline's per-item function.

:class:`Worker` becomes a Ray actor in :mod:`cai_engine.executors.ray_driver` (this module does not
import Ray). It builds its engines from the job's model configs on first use (the same
:class:`~cai_engine.engine.engine.Engine`: retries, limits, response cache, budget checks), with a
:class:`~cai_engine.executors.quota.GrantedLedger` for the job's one budget and, for hosted models,
a :class:`~cai_engine.executors.quota.QuotaShare` of the job's one quota. ``run(batch)`` is a
streaming generator: every item runs through :func:`~cai_engine.engine.runner.run_item` (the one
place records are made) under the worker's concurrency, and finished records are yielded at once,
a few at a time, so a worker that dies has only its unreturned items to redo.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any, AsyncIterator

from cai_engine.engine.engine import Engine, EngineOptions
from cai_engine.engine.ledger import ItemCost
from cai_engine.engine.runner import run_item
from cai_engine.engine.writer import Writer
from cai_engine.errors import BudgetExceeded, FatalBackendError
from cai_engine.executors.job import Job
from cai_engine.executors.quota import GrantedLedger, QuotaShare
from cai_engine.models.registry import create_model

#: How long a worker lets finished records gather before yielding them (one message, not many).
LINGER_S = 0.005


class Worker:
    """One worker process of a Ray job (see the module docstring)."""

    def __init__(self, job: Job[Any], index: int, concurrency: int, service: str, metered: list[str],
                 max_cost_usd: float | None, spent_before: float, options: EngineOptions | None,
                 cache_path: str | None, cache_mock: bool, env: dict[str, str]):
        # The driver's CAI_HOME, offline switches and the models' key variables (an actor-level
        # runtime_env would do the same but keeps Ray from using its pre-started worker processes).
        os.environ.update(env)
        self.job, self.index, self.concurrency = job, index, max(1, concurrency)
        self.incarnation = f"{index}-{uuid.uuid4().hex[:10]}"  # a restarted process is a new incarnation
        self.service_name, self.metered = service, set(metered)  # the QuotaService actor's name (a handle
        # among the constructor's arguments would keep Ray from restarting this actor safely)
        self.max_cost_usd, self.spent_before = max_cost_usd, spent_before
        self.options, self.cache_path, self.cache_mock = options, cache_path, cache_mock
        self.engines: list[Engine] | None = None
        self.stopping = False
        self.fatal: BaseException | None = None
        self._writer: Writer | None = None
        self._cache: Any = None

    async def pid(self) -> int:
        return os.getpid()

    async def stop(self) -> None:
        """No new item starts (those of queued batches come back as unstarted); running ones finish."""
        self.stopping = True

    async def _setup(self) -> None:
        if self.engines is not None:
            return
        import ray

        from cai_engine.executors.settings import NAMESPACE

        self.service = ray.get_actor(self.service_name, namespace=NAMESPACE)
        self.slots = asyncio.Semaphore(self.concurrency)
        self.ledger = GrantedLedger(self.service, self.incarnation, self.index, self.max_cost_usd, self.spent_before)
        self._writer = Writer()
        if self.cache_path is not None:
            from cai_engine.engine.cache import ResponseCache

            self._cache = self._writer.call(ResponseCache, Path(self.cache_path))
        engines = []
        for config in self.job.models:
            cacheable = self._cache is not None and (config.provider != "mock" or self.cache_mock)
            engine = Engine(create_model(config), config, cache=self._cache if cacheable else None, ledger=self.ledger,
                            io=self._writer, options=self.options)
            engine.runner_concurrency(self.concurrency)  # this worker's share raises a lower cap, as --concurrency does
            if config.spec in self.metered and engine.retry is not None:
                engine.limits.share(QuotaShare(self.service, config.spec))
            engines.append(engine)
        self.work = self.job.setup(engines)
        self.engines = engines

    async def run(self, batch: list[tuple[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        """Run ``[(id, item), ...]``; yield messages of finished records as they come."""
        await self._setup()
        done: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        tasks = [asyncio.create_task(self._one(rid, item, done)) for rid, item in batch]
        left = len(tasks)
        try:
            while left:
                results = [await done.get()]
                await asyncio.sleep(LINGER_S)
                while not done.empty():
                    results.append(done.get_nowait())
                left -= len(results)
                yield self._message(results)
        finally:
            for task in tasks:
                task.cancel()

    async def run_all(self, batch: list[tuple[str, Any]]) -> list[dict[str, Any]]:
        """:meth:`run` without streaming, for a driver on Ray Client (``ray://``), which cannot take
        streamed returns: the batch's messages all at once (a dead worker then costs its whole
        batch again, which ``batch_size`` keeps small)."""
        return [message async for message in self.run(batch)]

    async def _one(self, rid: str, item: Any, done: asyncio.Queue[tuple[str, Any]]) -> None:
        async with self.slots:
            if self.stopping or self.fatal is not None:
                done.put_nowait(("unstarted", rid))
                return
            cost = ItemCost()
            try:
                await self.ledger.ready(self.job.models[0].spec)
                record = await run_item(item, rid, self.work, self.job.failure_base, cost)
            except (FatalBackendError, BudgetExceeded) as exc:
                self.fatal = self.fatal or exc
                done.put_nowait(("fatal", (rid, exc, dict(cost.by_model))))
                return
            except BaseException as exc:  # not a failed item (run_item makes those records): cancelled
                done.put_nowait(("error", (rid, exc, dict(cost.by_model))))
                raise
            done.put_nowait(("record", record))

    def _message(self, results: list[tuple[str, Any]]) -> dict[str, Any]:
        records, unstarted, outside = [], [], {}
        fatal: BaseException | None = None
        for kind, value in results:
            if kind == "record":
                records.append(value)
            elif kind == "unstarted":
                unstarted.append(value)
            else:  # an item cut off by a fatal error: not a record, its spend is still spent
                rid, exc, spend = value
                unstarted.append(rid)
                fatal = fatal or (exc if kind == "fatal" else None)
                for spec, usd in spend.items():
                    outside[spec] = outside.get(spec, 0.0) + usd
        assert self.engines is not None
        return {
            "incarnation": self.incarnation, "records": records, "unstarted": unstarted, "outside": outside,
            "fatal": fatal, "spent": dict(self.ledger.charged_by_model),
            "stats": [engine.stats.model_dump() for engine in self.engines],
            # per-minute use and known limits of the hosted models, for the driver's progress line
            "quota": [engine.limits.usage_snapshot() if engine.retry is not None else None for engine in self.engines],
        }

    async def close(self) -> None:
        for engine in self.engines or []:
            await engine.aclose()
        if self._writer is not None:
            if self._cache is not None:
                self._writer.call(self._cache.close)
            self._writer.close()
