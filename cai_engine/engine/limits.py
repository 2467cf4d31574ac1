"""Per-model limits: concurrency that halves on 429 bursts and recovers, requests/min, tokens/min.

RPM and TPM are token buckets from ``aiolimiter``. RPM is smoothed to about one second's worth of
burst (providers enforce per-minute limits over shorter windows too); TPM takes a request's
estimate (prompt chars / 4 + max_tokens x n) in chunks no larger than the bucket, so a large
request waits its fair time instead of being refused.

Concurrency is AIMD: a 429 halves the allowed in-flight requests (at most once per second, so one
burst counts once) and a ``Retry-After`` pauses new requests; each window of successes adds one
slot back up to ``max_concurrency``. Limits are shared by every engine of the same
(provider, endpoints, model) on one event loop, since they share the provider's quota.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
import weakref
from contextlib import asynccontextmanager
from typing import AsyncIterator

from aiolimiter import AsyncLimiter

from cai_engine.models.base import ChatRequest, ModelConfig


class AdaptiveConcurrency:
    """A semaphore whose size shrinks on rate limiting and grows back with successes."""

    def __init__(self, max_limit: int, cut_interval_s: float = 1.0):
        self.max_limit = max_limit
        self.limit = max_limit
        self.in_flight = 0
        self.cuts = 0
        self._cut_interval_s = cut_interval_s
        self._last_cut = -math.inf
        self._successes = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self) -> None:
        if self.in_flight < self.limit and not self._waiters:
            self.in_flight += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # granted and cancelled at once: hand the slot on
            else:
                try:
                    self._waiters.remove(fut)
                except ValueError:
                    pass
            raise

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < self.limit:
            fut = self._waiters.popleft()
            if not fut.done():
                self.in_flight += 1
                fut.set_result(None)

    def on_rate_limited(self) -> None:
        now = time.monotonic()
        if now - self._last_cut >= self._cut_interval_s and self.limit > 1:
            self.limit = max(1, self.limit // 2)
            self._last_cut = now
            self._successes = 0
            self.cuts += 1

    def on_success(self) -> None:
        if self.limit >= self.max_limit:
            return
        self._successes += 1
        if self._successes >= self.limit:
            self._successes = 0
            self.limit += 1
            self._wake()


class Limits:
    """Concurrency + RPM + TPM + a pause that a ``Retry-After`` on a 429 sets."""

    def __init__(self, config: ModelConfig):
        self.concurrency = AdaptiveConcurrency(config.max_concurrency)
        self.rpm: AsyncLimiter | None = None
        self.tpm: AsyncLimiter | None = None
        if config.rpm:
            burst = max(1, round(config.rpm / 60))
            self.rpm = AsyncLimiter(burst, burst * 60.0 / config.rpm)
        if config.tpm:
            per_s = max(1.0, config.tpm / 60)
            self.tpm = AsyncLimiter(per_s, 1.0)
        self.paused_until = 0.0

    @staticmethod
    def estimate_tokens(request: ChatRequest) -> int:
        chars = sum(len(m.content) for m in request.messages)
        return chars // 4 + request.params.max_tokens * request.params.n

    @asynccontextmanager
    async def slot(self, request: ChatRequest) -> AsyncIterator[None]:
        """Hold one request's place: waits for a pause, a concurrency slot, then RPM/TPM budget."""
        while (delay := self.paused_until - time.monotonic()) > 0:
            await asyncio.sleep(delay)
        await self.concurrency.acquire()
        try:
            if self.rpm is not None:
                await self.rpm.acquire()
            if self.tpm is not None:
                remaining = float(self.estimate_tokens(request))
                while remaining > 0:
                    chunk = min(remaining, self.tpm.max_rate)
                    await self.tpm.acquire(chunk)
                    remaining -= chunk
            yield
        finally:
            self.concurrency.release()

    def on_rate_limited(self, retry_after_s: float | None) -> None:
        self.concurrency.on_rate_limited()
        if retry_after_s:
            self.paused_until = max(self.paused_until, time.monotonic() + min(retry_after_s, 60.0))

    def on_success(self) -> None:
        self.concurrency.on_success()


_SHARED: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[object, ...], Limits]]" = (
    weakref.WeakKeyDictionary()
)


def limits_for(config: ModelConfig) -> Limits:
    """The :class:`Limits` of this (provider, endpoints, model) on the running loop."""
    loop = asyncio.get_running_loop()
    per_loop = _SHARED.setdefault(loop, {})
    key = (config.provider, tuple(config.base_urls), config.model_name)
    limits = per_loop.get(key)
    if limits is None:
        limits = per_loop[key] = Limits(config)
    return limits
