"""The engine: every model call of a pipeline goes through :meth:`Engine.generate`.

Layers, outside in: budget check (the command's shared ledger) -> response cache (keyed by the
backend's fingerprint, read and written on the session's writer thread) -> (Batch API queue | retry policy -> limits ->
backend). Backends that can tell retryable failures apart (hosted ones expose ``classify``) get the
retry policy, rate limits and adaptive concurrency (fed by the rate-limit headers of every reply
when the backend has them: :mod:`cai_engine.engine.limits`); in-process backends (local, mock,
vllm) get plain bounded concurrency, since retrying a local crash would only repeat it. Pipelines
stay plain async functions and backends stay thin.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cai_engine.engine.accounting import ModelStats
from cai_engine.engine.batch_api import BatchCoordinator, BatchSettings
from cai_engine.engine.cache import ResponseCache, cache_key
from cai_engine.engine.limits import Limits, limits_for
from cai_engine.engine.retry import RetryPolicy
from cai_engine.engine.ledger import BudgetLedger
from cai_engine.engine.writer import Writer
from cai_engine.errors import ConfigError, ModelError
from cai_engine.models.base import ChatModel, ChatRequest, ChatResponse, ModelConfig
from cai_engine.models.prices import BATCH_DISCOUNT, prices_for
from cai_engine.models.ratelimits import ADAPTIVE_CEILING, QuotaReading
from cai_engine.models.registry import create_model
from cai_engine.models.retryable import RetryDecision


class EngineOptions(BaseModel):
    """Engine knobs that are not part of the model config (tests shorten the waits)."""

    model_config = ConfigDict(extra="forbid")

    retry_base_s: float = Field(1.0, gt=0, description="Backoff multiplier for jittered exponential waits.")
    retry_max_wait_s: float = Field(60.0, gt=0, description="Longest single wait between attempts.")
    refusals_to_stop: int = Field(3, ge=1, description="403/404 failures in a row that stop the run (401 stops at once).")
    batch: BatchSettings = Field(default_factory=BatchSettings)


class Engine:
    """Wraps one backend with limits, retries, cache, budget, batch mode and counters."""

    def __init__(
        self,
        model: ChatModel,
        config: ModelConfig,
        *,
        cache: ResponseCache | None = None,
        max_cost_usd: float | None = None,
        ledger: BudgetLedger | None = None,
        io: Writer | None = None,
        owns_cache: bool = False,
        batch_dir: Path | None = None,
        options: EngineOptions | None = None,
    ):
        """``ledger``: the command's shared budget (a private one holding ``max_cost_usd`` when
        absent). ``io``: the session's writer thread, where cache reads and writes run (inline
        when absent). ``owns_cache``: close the cache with the engine (engines built outside a
        session); a session closes its shared cache itself."""
        self.model = model
        self.config = config
        self.options = options or EngineOptions()
        self.stats = ModelStats(spec=config.spec)
        self.prices = prices_for(config)
        self.stats.price_known = self.prices is not None
        self.cache = cache
        self.ledger = ledger if ledger is not None else BudgetLedger(None, max_cost_usd)
        if self.ledger.max_cost_usd is not None and self.prices is None:
            # An unknown price would count as $0 and the budget would never fire.
            raise ConfigError(
                f"--max-cost needs the price of {config.spec}, which is not in the price table; set "
                "`prices: {input_per_mtok: ..., output_per_mtok: ...}` in the --model-config file"
            )
        self._io = io
        self.owns_cache = owns_cache
        self.fingerprint = model.fingerprint()
        self._slots = asyncio.Semaphore(config.max_concurrency)
        classify = model.retry_classifier()
        self.retry: RetryPolicy | None = None
        if classify is not None:
            env = config.api_key_env or {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}.get(
                config.provider, "the API key variable")
            self.retry = RetryPolicy(
                config.spec, classify, max_retries=config.max_retries, base_s=self.options.retry_base_s,
                max_wait_s=self.options.retry_max_wait_s, refusals_to_stop=self.options.refusals_to_stop,
                key_hint=f"check the key in {config.api_key_file or '$' + env}", on_retry=self._on_retry,
            )
        self.batch: BatchCoordinator | None = None
        if batch_dir is not None:
            adapter = model.batch_adapter()
            if adapter is None or self.retry is None:
                raise ModelError(f"{config.spec}: --batch needs a provider with a Batch API (openai or anthropic)")
            self.batch = BatchCoordinator(adapter, Path(batch_dir), config.spec, self.retry.call,
                                          self.options.batch)
        self._limits: Limits | None = None
        self._cap: int | None = None  # --concurrency above the model's cap
        self.concurrency_note: str | None = None
        watch = getattr(model, "watch_quota", None)
        if self.retry is not None and callable(watch):
            watch(self._on_quota)
        self._closed = False

    @property
    def max_cost_usd(self) -> float | None:
        return self.ledger.max_cost_usd

    @classmethod
    def from_config(cls, spec_or_config: str | ModelConfig, **kwargs: Any) -> "Engine":
        config = spec_or_config if isinstance(spec_or_config, ModelConfig) else ModelConfig(spec=spec_or_config)
        kwargs.setdefault("owns_cache", True)
        return cls(create_model(config), config, **kwargs)

    @property
    def spec(self) -> str:
        return self.config.spec

    @property
    def suggested_concurrency(self) -> int:
        """How many items a runner should keep in flight. Batch mode needs several batches' worth
        queued (each waits hours for its batch), so it is far above the online concurrency."""
        if self.batch is not None:
            return max(10_000, 4 * self.options.batch.max_items)
        if self.adaptive:
            return max(ADAPTIVE_CEILING, self._cap or 0)
        return max(self.config.max_concurrency, self._cap or 0)

    @property
    def adaptive(self) -> bool:
        """Hosted model with no explicit ``max_concurrency``: in-flight requests follow the quota."""
        return self.retry is not None and "max_concurrency" not in self.config.model_fields_set

    def runner_concurrency(self, requested: int | None = None) -> int:
        """Items a runner should keep in flight: ``requested`` (``--concurrency``) or the suggestion.

        A request above the model's cap raises the cap to it (an explicit ``max_concurrency``
        included: the command line is the later, more specific choice; :attr:`concurrency_note`
        says so in one line). Batch mode keeps its own, larger figure when none is requested.
        """
        if requested is None:
            return self.suggested_concurrency
        cap = ADAPTIVE_CEILING if self.adaptive else self.config.max_concurrency
        if requested > cap and self.batch is None:
            self._cap = max(self._cap or 0, requested)
            if not self.adaptive:
                self.concurrency_note = (f"--concurrency {requested} raises {self.spec}'s max_concurrency "
                                         f"{self.config.max_concurrency} for this run")
            if self.retry is None:
                self._slots = asyncio.Semaphore(self._cap)
            elif self._limits is not None:
                self._limits.raise_cap(requested)
        return requested

    @property
    def limits(self) -> Limits:
        if self._limits is None:
            self._limits = limits_for(self.config, self._cap)
        return self._limits

    def _on_quota(self, reading: QuotaReading) -> None:
        self.limits.observe(reading)

    def quota_text(self) -> str:
        """The provider quota in use for the progress line, e.g. ``rpm 2,940/3,000 tpm 410k/2M``
        ('' before any request, for local backends, or when no limit is known)."""
        return self._limits.quota_text() if self._limits is not None else ""

    # ---- the one entry point ---------------------------------------------------------------
    async def generate(self, request: ChatRequest) -> ChatResponse:
        if self.retry is not None and self.retry.fatal is not None:
            raise self.retry.fatal
        self.ledger.check(self.spec)
        key = cache_key(self.fingerprint, request) if (self.cache is not None or self.batch is not None) else ""
        if self.cache is not None:
            hit = await self._io.run(self.cache.get, key) if self._io is not None else self.cache.get(key)
            if hit is not None:
                self.stats.cached += 1
                return hit
        response: ChatResponse | None = None
        if self.batch is not None and self.batch.adapter.supports(request):
            result = await self.batch.generate(key, request)
            self.stats.batches_submitted = self.batch.submitted
            self.stats.batches_resumed = self.batch.resumed
            if isinstance(result, ChatResponse):
                response = result
                self.stats.requests += 1
                self.stats.batched += 1
                self.ledger.charge(self.spec, self.stats.add_usage(response.usage, self.prices, BATCH_DISCOUNT))
            else:
                self.stats.note_fault("batch_item")
        if response is None:
            response = await self._call(request)
        if self.cache is not None:
            if self._io is not None:
                self._io.submit(self.cache.put, key, response)
            else:
                self.cache.put(key, response)
        return response

    async def _call(self, request: ChatRequest) -> ChatResponse:
        """One request straight to the backend, with retries and limits where the backend allows."""
        if self.retry is None:
            async with self._slots:
                response = await self._timed(request)
        else:
            response = await self._retried(request)
        self.stats.requests += 1
        self.ledger.charge(self.spec, self.stats.add_usage(response.usage, self.prices))
        return response

    async def _timed(self, request: ChatRequest) -> ChatResponse:
        started = time.perf_counter()
        try:
            return await self.model.generate(request)
        except Exception:
            self.stats.errors += 1
            raise
        finally:
            self.stats.busy_s += time.perf_counter() - started

    async def _retried(self, request: ChatRequest) -> ChatResponse:
        assert self.retry is not None
        limits = self.limits

        async def attempt() -> ChatResponse:
            async with limits.slot(request):
                started = time.perf_counter()
                try:
                    # The SDK enforces timeout_s per request; this guard catches a hung body read.
                    async with asyncio.timeout(self.config.timeout_s + 5.0):
                        response = await self.model.generate(request)
                finally:
                    self.stats.busy_s += time.perf_counter() - started
            limits.on_success(response.usage)
            return response

        try:
            return await self.retry.call(attempt)
        except Exception as exc:
            self.stats.errors += 1
            decision = getattr(exc, "decision", None)
            if isinstance(decision, RetryDecision):
                self.stats.note_fault(decision.kind)
            raise

    def _on_retry(self, decision: RetryDecision) -> None:
        self.stats.retries += 1
        self.stats.note_fault(decision.kind)
        if decision.kind == "rate_limit":
            self.limits.on_rate_limited(decision.retry_after_s)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.batch is not None:
            await self.batch.aclose()
        await self.model.aclose()
        if self.cache is not None and self.owns_cache:
            self.cache.close()

    async def __aenter__(self) -> "Engine":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
