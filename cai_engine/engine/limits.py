"""Per-model limits: requests in flight, requests/min and tokens/min, set by the user or by the provider.

**What the user sets wins.** ``rpm``/``tpm`` in the model config are token buckets at that rate
(about one second's worth of burst: providers enforce per-minute limits over shorter windows too;
a request's token estimate is prompt chars / 4 + max_tokens x n, and a request larger than the
bucket waits its fair time instead of being refused). An explicit ``max_concurrency`` is a hard
cap: a 429 halves the allowed in-flight requests (at most once per second, so one burst counts
once) and each window of successes adds one slot back up to the cap (AIMD).

**Unset, hosted models follow the provider.** Every reply's rate-limit headers
(:mod:`cai_engine.models.ratelimits`) feed :meth:`Limits.observe`:

* the first request goes alone (a probe: its headers say what the account allows);
* each per-minute limit the user did not set becomes a bucket paced at :data:`HEADROOM` of it with
  a quarter second of burst, and a reply's ``remaining`` lowers the bucket's level to it (other
  clients share the quota);
* the in-flight cap follows Little's law: the request rate the buckets allow x the measured latency
  (x 1.3, + 2), up to :data:`~cai_engine.models.ratelimits.ADAPTIVE_CEILING` or the
  ``--concurrency`` asked for; without headers (self-hosted servers) it starts at
  :data:`ADAPTIVE_START` and doubles per round trip while requests queue, until the first 429;
* a 429 cuts the paced rate by 30% (and the in-flight cap in half without headers); the rate climbs
  back by 5 points per second without refusals; ``Retry-After`` pauses new requests.

Limits are shared by every engine of the same (provider, endpoints, model) on one event loop,
since they share the provider's quota. :meth:`Limits.quota_text` is the progress line's
``rpm 2,940/3,000 tpm 410k/2M``.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
import weakref
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Protocol

from cai_engine.models.base import ChatRequest, ModelConfig, Usage
from cai_engine.models.ratelimits import ADAPTIVE_CEILING, QuotaReading

#: Share of a provider's limit the paced rate aims at (the rest absorbs clock skew and bursts).
HEADROOM = 0.95
#: Burst of a bucket derived from the headers, in seconds of its rate. Small: requests admitted
#: together reach the provider spread over the time it takes to send them (more under CPU load),
#: and a burst that lands late on top of fresh requests is refused by the provider's own bucket.
DERIVED_BURST_S = 0.25
#: In-flight cap after the probe when the provider sends no rate-limit headers.
ADAPTIVE_START = 16
_MIN_RATE_FACTOR = 0.1
_CUT = 0.7
_RECOVER_PER_S = 0.05
#: How long a Ray worker's usage snapshot counts on its driver's progress line without a newer one.
REMOTE_TTL_S = 30.0
_LABELS = {"requests": "rpm", "tokens": "tpm", "input_tokens": "itpm", "output_tokens": "otpm"}


class AdaptiveConcurrency:
    """A semaphore whose size shrinks on rate limiting and grows back with successes.

    ``start`` below ``max_limit`` begins lower; :meth:`set_limit` moves the size directly.
    """

    def __init__(self, max_limit: int, cut_interval_s: float = 1.0, start: int | None = None):
        self.max_limit = max_limit
        self.limit = max_limit if start is None else max(1, min(start, max_limit))
        self.in_flight = 0
        self.cuts = 0
        self._cut_interval_s = cut_interval_s
        self._last_cut = -math.inf
        self._successes = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

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

    def set_limit(self, limit: int) -> None:
        self.limit = max(1, min(limit, self.max_limit))
        self._wake()

    def on_rate_limited(self) -> bool:
        """Halve the size (at most once per cut interval); True when it was cut."""
        now = time.monotonic()
        if now - self._last_cut >= self._cut_interval_s and self.limit > 1:
            self.limit = max(1, self.limit // 2)
            self._last_cut = now
            self._successes = 0
            self.cuts += 1
            return True
        return False

    def on_success(self, fast: bool = False) -> None:
        """One more success: one slot back per window of ``limit`` successes, or per success when ``fast``."""
        if self.limit >= self.max_limit:
            return
        self._successes += 1
        if fast or self._successes >= self.limit:
            self._successes = 0
            self.limit += 1
            self._wake()


class RateBucket:
    """A FIFO token bucket refilled at ``per_minute / 60`` per second, holding about ``burst_s`` of it.

    The rate can change while requests wait (the provider's limits move). A request larger than the
    bucket waits for a full bucket and leaves it in debt, so it is paced, never refused.
    """

    def __init__(self, per_minute: float, burst_s: float = 1.0):
        self.burst_s = burst_s
        self.level = math.inf
        self.set_rate(per_minute)
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    def set_rate(self, per_minute: float) -> None:
        self.rate = max(per_minute, 1e-6) / 60.0
        self.capacity = max(1.0, self.rate * self.burst_s)
        self.level = min(self.level, self.capacity)

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self._stamp) * self.rate)
        self._stamp = now

    def lower_to(self, level: float) -> None:
        """The provider says only ``level`` is left: do not spend more than that before it refills."""
        self._refill()
        if level < self.level:
            self.level = level

    async def acquire(self, amount: float = 1.0) -> None:
        need = min(amount, self.capacity)
        if not self._lock.locked():
            self._refill()
            if self.level >= need:
                self.level -= amount
                return
        async with self._lock:  # FIFO: waiters are served in order
            while True:
                self._refill()
                need = min(amount, self.capacity)
                if self.level >= need:
                    self.level -= amount
                    return
                await asyncio.sleep((need - self.level) / self.rate)


class _Window:
    """Counts per second over the last minute (for the progress line's per-minute rates)."""

    def __init__(self) -> None:
        self._slots: collections.deque[list[float]] = collections.deque()
        self.started = time.monotonic()

    def add(self, amount: float, now: float) -> None:
        second = int(now)
        if self._slots and self._slots[-1][0] == second:
            self._slots[-1][1] += amount
        else:
            self._slots.append([second, amount])
            while self._slots and self._slots[0][0] <= second - 60:
                self._slots.popleft()

    def per_minute(self, now: float) -> float:
        total = sum(n for s, n in self._slots if s > now - 60)
        span = min(60.0, max(1.0, now - self.started))
        return total * 60.0 / span


def _compact(n: float) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.1f}M".replace(".0M", "M")
    if n >= 1e4:
        return f"{n / 1e3:.0f}k"
    return f"{n:,.0f}"


class SharedQuota(Protocol):
    """What :class:`Limits` needs from a job-wide quota (see :meth:`Limits.share`)."""

    async def take(self, costs: dict[str, float]) -> None: ...

    def observe(self, reading: QuotaReading) -> None: ...

    def on_rate_limited(self, retry_after_s: float | None) -> None: ...


class Limits:
    """Concurrency + request/token buckets + a pause that a ``Retry-After`` on a 429 sets."""

    def __init__(self, config: ModelConfig, ceiling: int | None = None):
        self.fixed = "max_concurrency" in config.model_fields_set
        if self.fixed:
            self.concurrency = AdaptiveConcurrency(max(config.max_concurrency, ceiling or 0))
        else:  # the probe: one request until the provider has said what the account allows
            self.concurrency = AdaptiveConcurrency(max(ceiling or 0, ADAPTIVE_CEILING), start=1)
        self._probing = not self.fixed
        self._slow_start = True
        # What the user set (never changed by the headers) ...
        self.rpm: RateBucket | None = RateBucket(config.rpm) if config.rpm else None
        self.tpm: RateBucket | None = RateBucket(config.tpm) if config.tpm else None
        self.user_limits = {k: v for k, v in (("requests", config.rpm), ("tokens", config.tpm)) if v}
        # ... and what the provider reported, for the limits the user left unset.
        self.quota: dict[str, int] = {}
        self.derived: dict[str, RateBucket] = {}
        self._token_buckets = self.tpm is not None  # any bucket that needs a request's token estimate
        self.rate_factor = HEADROOM
        self._last_cut = -math.inf
        self._last_recover = time.monotonic()
        self.latency_s: float | None = None
        self._avg_tokens = {"tokens": 0.0, "input_tokens": 0.0, "output_tokens": 0.0}
        self._windows = {name: _Window() for name in _LABELS}
        self._remote: dict[str, tuple[float, dict[str, Any]]] = {}  # Ray worker -> (received, usage_snapshot())
        self.paused_until = 0.0
        self.readings = 0
        self.refused = 0
        #: A job-wide quota these limits draw from (a Ray worker: :meth:`share`); None in one process.
        self.shared: SharedQuota | None = None

    # ---- what a request costs --------------------------------------------------------------
    @staticmethod
    def estimate_tokens(request: ChatRequest) -> int:
        chars = sum(len(m.content) for m in request.messages)
        return chars // 4 + request.params.max_tokens * request.params.n

    def _costs(self, request: ChatRequest) -> dict[str, float]:
        out = request.params.max_tokens * request.params.n
        inp = sum(len(m.content) for m in request.messages) // 4
        return {"tokens": float(inp + out), "input_tokens": float(inp), "output_tokens": float(out)}

    # ---- the slot --------------------------------------------------------------------------
    @asynccontextmanager
    async def slot(self, request: ChatRequest) -> AsyncIterator[None]:
        """Hold one request's place: waits for a pause, a concurrency slot, then the buckets."""
        while (delay := self.paused_until - time.monotonic()) > 0:
            await asyncio.sleep(delay)
        await self.concurrency.acquire()
        try:
            costs = self._costs(request) if self._token_buckets else None
            if self.rpm is not None:
                await self.rpm.acquire()
            if self.tpm is not None and costs is not None:
                await self.tpm.acquire(costs["tokens"])
            for name, bucket in self.derived.items():
                await bucket.acquire(1.0 if name == "requests" else costs[name] if costs else 0.0)
            if self.shared is not None:
                await self.shared.take(self._costs(request))
            if costs is not None:
                for name in self._avg_tokens:
                    self._avg_tokens[name] += 0.1 * (costs[name] - self._avg_tokens[name])
            started = time.monotonic()
            self._windows["requests"].add(1.0, started)
            try:
                yield
            except asyncio.CancelledError:
                raise
            except BaseException:
                self._end_probe()
                raise
            now = time.monotonic()
            latency = now - started
            self.latency_s = latency if self.latency_s is None else self.latency_s + 0.2 * (latency - self.latency_s)
        finally:
            self.concurrency.release()

    # ---- what the provider says -------------------------------------------------------------
    def observe(self, reading: QuotaReading) -> None:
        """One reply's rate-limit headers: pace below the limits the user did not set."""
        self.readings += 1
        if self.shared is not None:
            self.shared.observe(reading)
        changed = False
        for name, bucket in reading.buckets.items():
            if name in self.user_limits or (name != "requests" and "tokens" in self.user_limits):
                continue  # an explicit setting wins
            if self.quota.get(name) != bucket.limit:
                self.quota[name] = bucket.limit
                changed = True
            derived = self.derived.get(name)
            if derived is None:
                derived = self.derived[name] = RateBucket(bucket.limit * self.rate_factor, DERIVED_BURST_S)
                self._token_buckets = self._token_buckets or name != "requests"
            if bucket.remaining is not None:
                derived.lower_to(float(bucket.remaining))
        if changed:
            self._apply_rate()
        self._end_probe()

    def _apply_rate(self) -> None:
        for name, bucket in self.derived.items():
            bucket.set_rate(self.quota[name] * self.rate_factor)
        self._retarget()

    def _allowed_rps(self) -> float | None:
        """Requests per second the derived buckets allow (None: no provider limits known)."""
        rates = []
        for name, limit in self.quota.items():
            per_s = limit * self.rate_factor / 60.0
            if name == "requests":
                rates.append(per_s)
            elif self._avg_tokens[name] > 0:
                rates.append(per_s / self._avg_tokens[name])
        return min(rates) if rates else None

    def _retarget(self) -> None:
        if self.fixed or self._probing:
            return
        rps = self._allowed_rps()
        if rps is None or self.latency_s is None:
            return
        self.concurrency.set_limit(max(2, math.ceil(rps * self.latency_s * 1.3) + 2))

    def _end_probe(self) -> None:
        if not self._probing:
            return
        self._probing = False
        if self.quota:
            self.concurrency.set_limit(ADAPTIVE_START)
            self._retarget()
        else:
            self.concurrency.set_limit(ADAPTIVE_START)

    # ---- outcomes ----------------------------------------------------------------------------
    def on_rate_limited(self, retry_after_s: float | None) -> None:
        self.refused += 1
        if self.shared is not None:
            self.shared.on_rate_limited(retry_after_s)
        now = time.monotonic()
        if self.fixed or not self.quota:
            if self.concurrency.on_rate_limited():
                self._slow_start = False
        elif now - self._last_cut >= 1.0:
            self._last_cut = self._last_recover = now
            self.rate_factor = max(_MIN_RATE_FACTOR, self.rate_factor * _CUT)
            self._apply_rate()
        if retry_after_s:
            self.paused_until = max(self.paused_until, now + min(retry_after_s, 60.0))

    def on_success(self, usage: Usage | None = None) -> None:
        now = time.monotonic()
        if usage is not None and self._token_buckets:
            self._windows["tokens"].add(usage.input_tokens + usage.output_tokens, now)
            self._windows["input_tokens"].add(usage.input_tokens - usage.cached_input_tokens, now)
            self._windows["output_tokens"].add(usage.output_tokens, now)
        if self._probing:
            self._end_probe()
        if self.fixed:
            self.concurrency.on_success()
            return
        if self.quota:
            if self.rate_factor < HEADROOM and now - self._last_cut >= 1.0:
                self.rate_factor = min(HEADROOM, self.rate_factor + _RECOVER_PER_S * (now - self._last_recover))
                self._last_recover = now
                self._apply_rate()
            else:
                self._last_recover = now
                self._retarget()
        elif self.concurrency.waiting:  # concurrency-bound: climb (doubling per round trip until a 429)
            self.concurrency.on_success(fast=self._slow_start)

    def share(self, quota: "SharedQuota") -> None:
        """Draw the per-minute limits from a quota shared by several processes (the Ray executor's
        workers, :mod:`cai_engine.executors.quota`): the user's ``rpm``/``tpm`` buckets move there,
        concurrency, pauses and header readings stay here and are also passed on."""
        self.shared = quota
        self.rpm = self.tpm = None

    def raise_cap(self, n: int) -> None:
        """``--concurrency n``: allow up to ``n`` in flight (an explicit cap is raised to it)."""
        if n > self.concurrency.max_limit:
            self.concurrency.max_limit = n
            if self.fixed:
                self.concurrency.set_limit(n)

    # ---- display -----------------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return self.concurrency.in_flight

    def usage_snapshot(self) -> dict[str, Any]:
        """This process's per-minute use and the limits it knows: what a Ray worker sends its
        driver, whose progress line shows the use of all workers together (:meth:`show_remote`)."""
        now = time.monotonic()
        return {"used": {name: w.per_minute(now) for name, w in self._windows.items()},
                "limits": {**self.quota, **self.user_limits}}

    def show_remote(self, source: str, snapshot: dict[str, Any]) -> None:
        """Count ``source``'s :meth:`usage_snapshot` in :meth:`quota_text` (until it is
        ``REMOTE_TTL_S`` old: a worker that died or went quiet drops out)."""
        self._remote[source] = (time.monotonic(), snapshot)

    def quota_text(self) -> str:
        """The quota in use, e.g. ``rpm 2,940/3,000 tpm 410k/2M`` ('' when no limit is known); with
        Ray workers, their use summed and the largest limit any of them read."""
        now = time.monotonic()
        used = {name: w.per_minute(now) for name, w in self._windows.items()}
        limits: dict[str, float] = {**self.quota, **self.user_limits}
        for received, snapshot in self._remote.values():
            if now - received > REMOTE_TTL_S:
                continue
            for name, value in snapshot["used"].items():
                used[name] = used.get(name, 0.0) + value
            for name, value in snapshot["limits"].items():
                limits[name] = max(limits.get(name, 0), value)
        parts = []
        if "requests" in limits:
            parts.append(f"rpm {used.get('requests', 0.0):,.0f}/{limits['requests']:,.0f}")
        token_names = [n for n in ("tokens", "input_tokens", "output_tokens") if n in limits]
        if token_names:
            name = max(token_names, key=lambda n: used.get(n, 0.0) / limits[n])
            parts.append(f"{_LABELS[name]} {_compact(used.get(name, 0.0))}/{_compact(limits[name])}")
        return " ".join(parts)


_SHARED: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[object, ...], Limits]]" = (
    weakref.WeakKeyDictionary()
)


def limits_for(config: ModelConfig, ceiling: int | None = None) -> Limits:
    """The :class:`Limits` of this (provider, endpoints, model) on the running loop."""
    loop = asyncio.get_running_loop()
    per_loop = _SHARED.setdefault(loop, {})
    key = (config.provider, tuple(config.base_urls), config.model_name)
    limits = per_loop.get(key)
    if limits is None:
        limits = per_loop[key] = Limits(config, ceiling)
    elif ceiling:
        limits.raise_cap(ceiling)
    return limits
