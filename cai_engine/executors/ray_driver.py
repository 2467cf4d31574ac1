"""``--ray``: the driver side. Pending items go to Ray worker actors in small batches; records come
back as they finish and only this process writes OUT.

Why actors fed by the driver and not a Ray Data dataset (``docs/scaling.md`` says it for users):
the pending items are decided here, lazily, against the record store's index (the resume rule of
:class:`~cai_engine.engine.runner.Pending`), so memory stays flat however many prompts there are
and a dataset would have to be materialised or re-derive that rule elsewhere; the driver must
know which items a dead worker held to redo exactly those; and Ray Data's executor reserves CPUs
for its own read and map tasks, which on a small machine compete with the workers. Batches are
method calls on an actor pool with a bounded window per worker, so the driver never queues more
than ``workers x (concurrency per worker + batch_size)`` items.

Faults: a worker actor that dies is restarted by Ray (``max_restarts=-1``); the items of its
batches that had not come back are sent again (to any worker). A record that arrives twice (a
worker that was only unreachable for a while) is written once: the driver writes an id only
while it is in flight. A paid request is repeated only for an item the dead worker had started
and not returned, so the most a death costs again is that worker's concurrency (items in flight)
times the requests of one item, and nothing with the response cache on (finished requests of the
redone items are cache hits).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import math
import os
import time
import uuid
from typing import Any, Callable, Iterable, Iterator, TypeVar

from cai_engine.engine.engine import Engine
from cai_engine.engine.ledger import CURRENT_ITEM, BudgetLedger, ItemCost, Spend
from cai_engine.engine.records import RecordStore
from cai_engine.engine.runner import Pending, RunSummary, failure_record
from cai_engine.errors import CaiError
from cai_engine.executors.job import Job
from cai_engine.executors.settings import NAMESPACE, RaySettings

T = TypeVar("T")
INSTALL_HINT = "pip install 'cai-engine[ray]'"
#: Environment variables a worker needs from the driver (besides the models' API key variables).
_ENV = ("CAI_HOME", "HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "TOKENIZERS_PARALLELISM",
        "VLLM_CPU_KVCACHE_SPACE")


#: How long a dead worker may take to be restarted by Ray before the driver stops waiting for it.
RESTART_TIMEOUT_S = 120.0


class WorkerDied(CaiError):
    """The items of a batch whose worker died ``max_batch_attempts`` times (the reason of their failed records)."""


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise CaiError(f"--ray needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


def connect(ray: Any, settings: RaySettings) -> bool:
    """Join the cluster of ``settings.address`` / ``$RAY_ADDRESS``, or start a local Ray. True when
    this call started Ray (the caller shuts it down after); a Ray this process already runs is reused."""
    if ray.is_initialized():
        return False
    import logging

    address = settings.address or os.environ.get("RAY_ADDRESS") or None
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:  # local: enough CPUs for the workers asked for, even on a small machine (they mostly wait on I/O)
            need = math.ceil(settings.workers * settings.num_cpus_per_worker)
            ray.init(num_cpus=max(os.cpu_count() or 1, need), **kwargs)
    except ConnectionError as exc:
        hint = ""
        if str(address).startswith("ray://") and not os.environ.get("RAY_AUTH_MODE"):
            # Ray >= 2.59 clusters require token authentication, which a Ray Client only sends when told to
            hint = ("; if the cluster uses token authentication (Ray's default since 2.59), set RAY_AUTH_MODE=token "
                    "(and RAY_AUTH_TOKEN, or the token in ~/.ray/auth_token)")
        raise CaiError(f"--ray-address {address}: cannot join the Ray cluster ({exc}){hint}; start one with "
                       "`ray start --head` or leave the address out for a local Ray") from None
    return True


def _worker_env(job: Job[Any]) -> dict[str, str]:
    from cai_engine.paths import cai_home

    names = set(_ENV)
    for config in job.models:
        names.add(config.api_key_env or {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}.get(config.provider, ""))
    env = {name: os.environ[name] for name in names if name and name in os.environ}
    env["CAI_HOME"] = str(cai_home())
    return env


class RayExecutor:
    """Runs a :class:`~cai_engine.executors.job.Job` on Ray workers (see the module docstring).

    After a run, :attr:`report` says what happened on the cluster: batches sent and redone, items
    redone, duplicates dropped, worker processes seen (:attr:`reports`: one per run, in the order
    they ended, for a command with several phases)."""

    def __init__(self, settings: RaySettings | None = None):
        self.settings = settings or RaySettings()
        self.report: dict[str, Any] = {}
        self.reports: list[dict[str, Any]] = []
        self.run_id = uuid.uuid4().hex[:8]
        self._holders = 0
        self.runs_started = 0
        self._started = False  # this executor started the Ray it uses (and shuts it down after)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Connected to Ray (joined or started) while inside; the last one out shuts down a Ray this
        executor started, so the phases of one command share one local Ray."""
        ray = import_ray()
        if self._holders == 0:
            self._started = connect(ray, self.settings)
        self._holders += 1
        try:
            yield
        finally:
            self._holders -= 1
            if self._holders == 0 and self._started:
                self._started = False
                ray.shutdown()

    async def run(self, items: Iterable[T], *, job: Job[T], engines: list[Engine], record_id: Callable[[T], str],
                  store: RecordStore, concurrency: int, retry_failed: bool = False,
                  on_record: Callable[[dict[str, Any]], None] | None = None,
                  on_skip: Callable[[int], None] | None = None,
                  shard: tuple[int, int] | None = None) -> RunSummary:
        from cai_engine.engine.session import current_session

        if any(e.batch is not None for e in engines):
            raise CaiError("--batch and --ray do not go together: a Batch API job already runs at the provider")
        ray = import_ray()
        session = current_session()
        ledger = session.ledger if session is not None else None
        if ledger is not None and ledger.max_cost_usd is not None:
            ledger.check(engines[0].spec)  # a budget spent by earlier runs sends nothing, as in one process
        with self.held():
            run: _Run | None = None
            try:
                run = _Run(ray, self, job, engines, store, ledger, concurrency)
                return await run.feed(items, record_id, Pending(store, run.summary, retry_failed=retry_failed, shard=shard,
                                                                on_skip=on_skip), on_record,
                                      session.stop if session is not None else None)
            finally:
                if run is not None:
                    await run.close()
                    self.report = run.report()
                    self.reports.append(self.report)


class _Run:
    """One run's actors and bookkeeping."""

    def __init__(self, ray: Any, executor: RayExecutor, job: Job[Any], engines: list[Engine], store: RecordStore,
                 ledger: BudgetLedger | None, concurrency: int):
        from cai_engine.executors.quota import QuotaService
        from cai_engine.executors.ray_worker import Worker

        self.ray, self.settings, self.job, self.engines = ray, executor.settings, job, engines
        self.client = bool(ray.util.client.ray.is_connected())  # a driver on Ray Client (ray://HOST:10001)
        self.store, self.ledger = store, ledger
        self.summary = RunSummary()
        workers = self.settings.workers
        self.per_worker = max(1, math.ceil(concurrency / workers))
        self.window = self.per_worker + self.settings.batch_size  # items one worker holds at most
        max_cost = ledger.max_cost_usd if ledger is not None else None
        spent_before = ledger.spent_usd if ledger is not None else 0.0
        metered = [e.config for e in engines if e.retry is not None]
        executor.runs_started += 1  # runs of one command may overlap (an eval's pairs and classifications)
        prefix = f"cai-{executor.run_id}-{executor.runs_started}"
        self.service = ray.remote(QuotaService).options(
            num_cpus=0, name=f"{prefix}-quota", namespace=NAMESPACE).remote(
            metered, workers, None if max_cost is None else max_cost - spent_before)
        cache_path, cache_mock = self._cache()
        actor = ray.remote(Worker)
        self.actors = [
            actor.options(num_cpus=self.settings.num_cpus_per_worker, num_gpus=self.settings.num_gpus_per_worker,
                          max_restarts=-1, max_task_retries=0, name=f"{prefix}-worker-{i}", namespace=NAMESPACE).remote(
                job, i, self.per_worker, f"{prefix}-quota", [c.spec for c in metered], max_cost, spent_before,
                self._options(), cache_path, cache_mock, _worker_env(job))
            for i in range(workers)
        ]
        self.load = [0] * workers  # items sent to each worker and not returned
        self.down = [False] * workers  # died, not answering again yet
        self.lost: set[int] = set()  # died and not back within RESTART_TIMEOUT_S
        self.tasks: set[asyncio.Task[Any]] = set()  # batch streams and health checks
        self.in_flight: set[str] = set()
        self.fatal: BaseException | None = None
        self.stats: dict[str, list[dict[str, Any]]] = {}  # incarnation -> its engines' stats
        self.spent: dict[str, Spend] = {}  # incarnation -> what it said it had spent
        self.received: dict[str, Spend] = {}  # incarnation -> spend that reached this ledger
        self.records_by_process: dict[str, int] = {}  # incarnation -> records it returned
        self.counts = {"batches": 0, "batches_redone": 0, "items_redone": 0, "duplicates_dropped": 0,
                       "restarts": 0}

    @staticmethod
    def _cache() -> tuple[str | None, bool]:
        """The session's response cache file for the workers (None: no cache), and whether ``mock/``
        models are cached too (as in :meth:`Session.engine`: only with an explicit cache path)."""
        from cai_engine.engine.cache import default_cache_path
        from cai_engine.engine.session import current_session

        session = current_session()
        if session is None or not session.use_cache:
            return None, False
        return str(session.cache_path or default_cache_path()), session.cache_path is not None

    @staticmethod
    def _options() -> Any:
        from cai_engine.engine.session import current_session

        session = current_session()
        return session.options if session is not None else None

    # ---- feeding -----------------------------------------------------------------------------
    async def feed(self, items: Iterable[T], record_id: Callable[[T], str], admit: Pending,
                   on_record: Callable[[dict[str, Any]], None] | None, stop: Any) -> RunSummary:
        self.admit, self.on_record = admit, on_record
        self.in_flight = admit.in_flight
        pending: Iterator[T] = iter(items)
        source_done = False
        input_error: BaseException | None = None
        redo: collections.deque[tuple[list[tuple[str, Any]], int]] = collections.deque()
        told_stop = False

        def stopping() -> bool:
            return self.fatal is not None or input_error is not None or (stop is not None and stop.requested)

        def next_batch() -> list[tuple[str, Any]]:
            nonlocal source_done, input_error
            batch: list[tuple[str, Any]] = []
            try:
                while len(batch) < self.settings.batch_size:
                    item = next(pending, _END)
                    if item is _END:
                        source_done = True
                        break
                    rid = record_id(item)
                    if admit(rid):
                        batch.append((rid, item))
            except Exception as exc:  # a bad input row: stop feeding, finish what is in flight, raise
                input_error = exc
            return batch

        try:
            while True:
                while not stopping() and (redo or not source_done) and (index := self._pick()) is not None:
                    batch, attempt = redo.popleft() if redo else (next_batch(), 1)
                    if batch:
                        self.load[index] += len(batch)  # now, not when the task starts: the next pick must see it
                        self.tasks.add(asyncio.create_task(self._stream(index, batch, attempt)))
                if stopping() and not told_stop:
                    told_stop = True
                    for i, actor in enumerate(self.actors):
                        if not self.down[i]:
                            actor.stop.remote()
                if not self.tasks:
                    if not stopping() and (redo or not source_done):  # work left, and no worker came back
                        raise CaiError(f"the Ray workers died and did not come back within {RESTART_TIMEOUT_S:g} s "
                                       "(is the cluster still up?); finished records are saved, rerun to resume")
                    break
                finished, self.tasks = await asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in finished:
                    retry = task.result()  # a bug in a worker is raised here
                    if retry is not None:
                        redo.append(retry)
                if stopping() and not any(not t.get_name().startswith("watch") for t in self.tasks):
                    break  # only health checks of dead workers are left: nothing more will run
        except BaseException:
            for task in self.tasks:
                task.cancel()
            raise
        for task in self.tasks:
            task.cancel()
        await self._settle_lost_spend()
        if self.fatal is not None:
            self.summary.stopped_reason = str(self.fatal)
            raise self.fatal
        if input_error is not None:
            raise input_error
        if stop is not None and stop.requested:
            raise stop.stopped_error(self.summary.done + self.summary.failed)
        return self.summary

    def _pick(self) -> int | None:
        """The least loaded live worker with room in its window (None: all busy or restarting)."""
        open_ = [i for i in range(len(self.actors)) if not self.down[i] and self.load[i] < self.window]
        return min(open_, key=self.load.__getitem__) if open_ else None

    async def _stream(self, index: int, batch: list[tuple[str, Any]], attempt: int) -> tuple[list[tuple[str, Any]], int] | None:
        """Send one batch and write its records as they come. Returns what to send again after the
        worker died (None when the batch is done)."""
        ray = self.ray
        self.counts["batches"] += 1
        try:
            if self.client:  # Ray Client cannot stream a method's returns: the batch comes back in one reply
                for message in await self._get(self.actors[index].run_all.remote(batch)):
                    self._take(message)
                return None
            async for ref in self.actors[index].run.options(num_returns="streaming").remote(batch):
                self._take(await ref)
            return None
        except ray.exceptions.RayTaskError as exc:  # raised by the worker's code (a model that cannot start...)
            cause = getattr(exc, "cause", None)
            raise (cause if isinstance(cause, CaiError) else exc.as_instanceof_cause()) from None
        except ray.exceptions.RayError as exc:
            self._watch(index)
            left = [(rid, item) for rid, item in batch if rid in self.in_flight]
            if not left:
                return None
            if attempt >= self.settings.max_batch_attempts:
                self._give_up(left, exc)
                return None
            self.counts["batches_redone"] += 1
            self.counts["items_redone"] += len(left)
            return left, attempt + 1
        finally:
            self.load[index] -= len(batch)

    def _watch(self, index: int) -> None:
        """Worker ``index`` died: send it nothing until Ray has restarted it and it answers."""
        if self.down[index]:
            return
        self.down[index] = True
        self.service.release.remote(index)

        async def health() -> None:
            deadline = time.monotonic() + RESTART_TIMEOUT_S
            while time.monotonic() < deadline:
                try:
                    await asyncio.wait_for(self._get(self.actors[index].pid.remote()),
                                           timeout=max(1.0, deadline - time.monotonic()))
                    self.down[index] = False
                    self.counts["restarts"] += 1
                    return
                except (self.ray.exceptions.RayError, asyncio.TimeoutError):
                    await asyncio.sleep(0.2)
            self.lost.add(index)  # not back in time: it gets no more work

        self.tasks.add(asyncio.create_task(health(), name=f"watch-{index}"))

    async def _get(self, ref: Any) -> Any:
        """The value of ``ref``: awaited on a cluster node; on Ray Client, fetched in a thread."""
        if self.client:
            return await asyncio.get_running_loop().run_in_executor(None, self.ray.get, ref)
        return await ref

    def _take(self, message: dict[str, Any]) -> None:
        """One message of a worker: write its records, settle its spend, note a fatal error."""
        incarnation = message["incarnation"]
        received = self.received.setdefault(incarnation, {})
        self.records_by_process[incarnation] = self.records_by_process.get(incarnation, 0) + len(message["records"])
        for record in message["records"]:
            rid = record["id"]
            spend: Spend = record.get("cost_by_model") or {}
            for spec, usd in spend.items():
                received[spec] = received.get(spec, 0.0) + usd
            if rid not in self.in_flight:  # sent again after its worker seemed dead, and both came back
                self.counts["duplicates_dropped"] += 1
                self._charge_outside(spend)  # paid all the same
                continue
            self.in_flight.discard(rid)
            self._charge_item(spend)
            self.store.append(record, spend=spend)
            self.summary.add(record)
            if self.on_record is not None:
                self.on_record(record)
        for rid in message["unstarted"]:
            self.in_flight.discard(rid)
        for spec, usd in message["outside"].items():
            received[spec] = received.get(spec, 0.0) + usd
        self._charge_outside(message["outside"])
        if message["fatal"] is not None and self.fatal is None:
            self.fatal = message["fatal"]
        spent = self.spent.setdefault(incarnation, {})  # cumulative figures; streams may deliver them out of order
        for spec, usd in message["spent"].items():
            spent[spec] = max(spent.get(spec, 0.0), usd)
        self.stats[incarnation] = message["stats"]
        self._merge_stats()
        for engine, snapshot in zip(self.engines, message.get("quota") or ()):
            if snapshot is not None and engine.retry is not None:
                engine.limits.show_remote(incarnation, snapshot)  # the progress line's rpm/tpm, all workers together

    def _give_up(self, left: list[tuple[str, Any]], exc: BaseException) -> None:
        reason = WorkerDied(f"its Ray worker died {self.settings.max_batch_attempts} times running this batch: "
                            f"{str(exc).splitlines()[0][:300]}")
        for rid, item in left:
            record = failure_record(rid, self.job.failure_base(item), reason)
            record["cost_usd"] = 0.0
            self.in_flight.discard(rid)
            self.store.append(record)
            self.summary.add(record)
            if self.on_record is not None:
                self.on_record(record)

    # ---- the driver's ledger -------------------------------------------------------------------
    def _charge_item(self, spend: Spend) -> None:
        """The record's spend, charged here as its requests were in the worker (the ledger then
        moves it to the record file when the line is written, exactly as in one process)."""
        if self.ledger is None:
            return
        token = CURRENT_ITEM.set(ItemCost())
        try:
            for spec, usd in spend.items():
                self.ledger.charge(spec, usd)
        finally:
            CURRENT_ITEM.reset(token)

    def _charge_outside(self, spend: Spend) -> None:
        if self.ledger is None:
            return
        token = CURRENT_ITEM.set(None)
        try:
            for spec, usd in spend.items():
                self.ledger.charge(spec, usd)
        finally:
            CURRENT_ITEM.reset(token)

    async def _settle_lost_spend(self) -> None:
        """What dead workers had spent on items that never came back: paid, so it is charged (as
        spend outside any record), from the last figure each worker process reported."""
        try:
            leased = await self._get(self.service.spend_reports.remote())
        except self.ray.exceptions.RayError:
            leased = {}
        for incarnation in set(self.spent) | set(leased):
            said = dict(self.spent.get(incarnation, {}))
            for spec, usd in leased.get(incarnation, {}).items():
                said[spec] = max(said.get(spec, 0.0), usd)
            got = self.received.get(incarnation, {})
            self._charge_outside({spec: usd - got.get(spec, 0.0) for spec, usd in said.items()
                                  if usd - got.get(spec, 0.0) > 1e-12})

    def _merge_stats(self) -> None:
        """The driver's engines show the sum of every worker process's counters (progress line, manifest)."""
        for i, engine in enumerate(self.engines):
            rows = [stats[i] for stats in self.stats.values() if i < len(stats)]
            if not rows:
                continue
            for name, value in rows[0].items():
                if name == "spec":
                    continue
                if isinstance(value, bool):
                    setattr(engine.stats, name, all(r[name] for r in rows))
                elif isinstance(value, (int, float)):
                    setattr(engine.stats, name, sum(r[name] for r in rows))
                elif isinstance(value, dict):
                    merged: dict[str, int] = {}
                    for r in rows:
                        for k, v in r[name].items():
                            merged[k] = merged.get(k, 0) + v
                    setattr(engine.stats, name, merged)

    # ---- the end --------------------------------------------------------------------------------
    async def close(self) -> None:
        ray = self.ray
        closing = [self._get(actor.close.remote()) for actor in self.actors]
        try:
            await asyncio.wait_for(asyncio.gather(*closing, return_exceptions=True), timeout=10)
        except (asyncio.TimeoutError, Exception):
            pass
        try:
            self.quota_report = await asyncio.wait_for(self._get(self.service.report.remote()), timeout=5)
        except (asyncio.TimeoutError, Exception):
            self.quota_report = {}
        for actor in [*self.actors, self.service]:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:
                pass

    def report(self) -> dict[str, Any]:
        return {**self.counts, "workers_lost": len(self.lost), "worker_processes": len(self.stats),
                "records_by_process": dict(self.records_by_process),
                "workers": len(self.actors),
                "per_worker_concurrency": self.per_worker, "batch_size": self.settings.batch_size,
                "quota": getattr(self, "quota_report", {})}


_END = object()
