"""The per-command :class:`Session`: what every engine and record store of one command shares.

Built once at the CLI edge (``cai run`` builds one per stage; the Python API one per call):

* **one budget ledger** (:class:`~cai_engine.engine.ledger.BudgetLedger`) for the policy, the judge
  and anything else the command calls, persisted in OUT so reruns continue from what was spent;
* **one response cache**, keyed by each backend's ``fingerprint()`` (weights for local/vLLM models,
  model + host for hosted ones), so a retrained checkpoint at the same path never gets old answers;
* **one writer thread** (:class:`~cai_engine.engine.writer.Writer`) for record lines, fsync, the
  cache and the ledger, so the event loop never waits on disk;
* **the OUT lock**, so a second process on the same ``--out`` is refused in one line;
* **the graceful stop** on Ctrl-C / SIGTERM.

Code below the CLI finds the active session through :data:`CURRENT_SESSION` (record stores opened
with :func:`open_store` and the runner's stop check use it), so pipelines keep plain signatures.
"""

from __future__ import annotations

import asyncio
import contextvars
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

from cai_engine.engine.cache import ResponseCache
from cai_engine.engine.engine import Engine, EngineOptions
from cai_engine.engine.ledger import BudgetLedger
from cai_engine.engine.outlock import OutLock
from cai_engine.engine.records import RecordStore
from cai_engine.engine.stopping import GracefulStop, Stopped
from cai_engine.engine.writer import Writer
from cai_engine.errors import ConfigError
from cai_engine.models.base import ModelConfig
from cai_engine.models.registry import create_model

T = TypeVar("T")

LOG_FILE = "log.txt"

CURRENT_SESSION: contextvars.ContextVar["Session | None"] = contextvars.ContextVar("cai_session", default=None)


class Session:
    """Budget, cache, writer, lock and stop handling of one command on one output folder."""

    def __init__(
        self,
        out_dir: Path | str | None = None,
        *,
        max_cost_usd: float | None = None,
        use_cache: bool = True,
        cache_path: Path | None = None,
        grace_s: float = 30.0,
        lock: bool = True,
        options: EngineOptions | None = None,
        notify: Callable[[str], None] | None = None,
    ):
        if max_cost_usd is not None and max_cost_usd <= 0:
            raise ConfigError(f"--max-cost must be > 0 USD, got {max_cost_usd}")
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self._created_out = self.out_dir is not None and not self.out_dir.exists()
        self.use_cache = use_cache
        self.cache_path = cache_path
        self.options = options
        self.lock = OutLock(self.out_dir).acquire() if self.out_dir is not None and lock else None
        if self.out_dir is not None:
            from cai_engine.logs import log_to

            log_to(self.out_dir / LOG_FILE)  # library warnings and logs of this command
        self.writer = Writer()
        self.ledger = BudgetLedger(self.out_dir, max_cost_usd)
        self.stop = GracefulStop(grace_s, notify)
        self.engines: list[Engine] = []
        self.stores: list[RecordStore] = []
        self.records_written = 0
        self.stamp: dict[str, Any] = {}  # fields every record of this command carries (settings_id)
        self._cache: ResponseCache | None = None
        self._closed = False

    def notify(self, text: str) -> None:
        """One line to the user (stderr on the CLI; the caller's ``notify`` in the API)."""
        self.stop._notify(text)

    # ---- parts -------------------------------------------------------------------------------
    @property
    def cache(self) -> ResponseCache | None:
        if not self.use_cache:
            return None
        if self._cache is None:
            self._cache = self.writer.call(ResponseCache, self.cache_path)
        return self._cache

    def engine(self, config: ModelConfig | str, *, batch_dir: Path | None = None,
               options: EngineOptions | None = None, use_cache: bool | None = None) -> Engine:
        """An engine for one model of this command, charging this session's ledger.

        ``mock/`` models are not cached unless the session has an explicit ``cache_path``: they
        exist for tests, which must not fill the user's cache."""
        config = config if isinstance(config, ModelConfig) else ModelConfig(spec=config)
        cacheable = (self.use_cache if use_cache is None else use_cache) and (
            config.provider != "mock" or self.cache_path is not None)
        engine = Engine(create_model(config), config, cache=self.cache if cacheable else None, ledger=self.ledger,
                        io=self.writer, batch_dir=batch_dir, options=options or self.options)
        self.engines.append(engine)
        return engine

    def store(self, path: Path | str) -> RecordStore:
        """A record store written on the session's writer thread and counted by its ledger."""
        path = Path(path)
        self.ledger.track(path)

        def written(file: Path, end: int, spend: dict[str, float]) -> None:
            self.records_written += 1
            self.ledger.record_written(file, end, spend)

        store = RecordStore(path, writer=self.writer, on_written=written, stamp=self.stamp)
        self.stores.append(store)
        return store

    # ---- life cycle --------------------------------------------------------------------------
    async def aclose(self) -> None:
        if self._closed:
            return
        for engine in self.engines:
            await engine.aclose()
        self.close()

    def close(self) -> None:
        """Flush and close everything (idempotent). Engines must have been closed by ``aclose``."""
        if self._closed:
            return
        self._closed = True
        try:
            for store in self.stores:
                store.close()
            self.writer.flush()
            self.ledger.close()
            if self._cache is not None:
                self.writer.call(self._cache.close)
        finally:
            self.writer.close()
            if self.lock is not None:
                self.lock.release()
            self._remove_if_unused()

    def _remove_if_unused(self) -> None:
        """A command that failed before doing anything (a bad model spec, a missing key) leaves no
        output folder behind: remove the folder this session created if it holds only its own
        bookkeeping files (also the settings and manifest a pipeline wrote before it failed, e.g. on
        joining a Ray cluster, and its still empty record files)."""
        if not self._created_out or self.out_dir is None or not self.out_dir.is_dir():
            return
        own = {".cai.lock", "ledger.json", "ledger.json.tmp", LOG_FILE, "settings.json", "manifest.json"}

        def bookkeeping(p: Path) -> bool:
            return p.name in own or (p.suffix == ".jsonl" and p.is_file() and p.stat().st_size == 0)

        if self.records_written or not all(bookkeeping(p) for p in self.out_dir.iterdir()):
            return
        for p in self.out_dir.iterdir():
            p.unlink(missing_ok=True)
        try:
            self.out_dir.rmdir()
        except OSError:
            pass

    async def __aenter__(self) -> "Session":
        self._token = CURRENT_SESSION.set(self)
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.aclose()
        finally:
            CURRENT_SESSION.reset(self._token)

    def run(self, main: Callable[["Session"], Awaitable[T]]) -> T:
        """Run ``main(session)`` to completion in a fresh event loop with the graceful stop installed,
        then close the session. Raises :class:`~cai_engine.engine.stopping.Stopped` after a signal."""

        async def runner() -> T:
            task = asyncio.current_task()
            assert task is not None
            self.stop.install(asyncio.get_running_loop(), task)
            try:
                async with self:
                    return await main(self)
            finally:
                self.stop.uninstall()

        try:
            result = asyncio.run(runner())
        except Stopped:
            self.close()  # counted after the writer drained, so the figure is final
            raise self.stop.stopped_error(self.records_written) from None
        except (asyncio.CancelledError, KeyboardInterrupt):
            self.close()
            if self.stop.requested:
                raise self.stop.stopped_error(self.records_written) from None
            raise
        finally:
            self.close()
        if self.stop.requested:
            raise self.stop.stopped_error(self.records_written)
        return result


def current_session() -> Session | None:
    return CURRENT_SESSION.get()


def open_store(path: Path | str) -> RecordStore:
    """The record store for ``path``: the active session's (writer thread + ledger) or a plain one."""
    session = CURRENT_SESSION.get()
    return session.store(path) if session is not None else RecordStore(path)


def stop_requested() -> bool:
    session = CURRENT_SESSION.get()
    return session is not None and session.stop.requested


def run_in_session(main: Callable[[Session], Awaitable[T]], **session_args: Any) -> T:
    """``Session(**session_args).run(main)``: the one way a command runs its async body."""
    return Session(**session_args).run(main)
