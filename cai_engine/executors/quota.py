"""One quota and one budget for every Ray worker of a job, granted in chunks.

:class:`QuotaService` runs as one Ray actor per job (no CPU reserved). It holds, per hosted model,
the same :class:`~cai_engine.engine.limits.Limits` a single process uses (the user's ``rpm``/``tpm``
buckets, and the buckets derived from the provider's rate-limit headers that every worker passes
on), and the job's budget under the :class:`~cai_engine.engine.ledger.BudgetLedger` rules.

Nothing waits for a round trip per request:

* **Requests.** A worker's :class:`QuotaShare` (plugged into its engine's ``Limits`` with
  :meth:`~cai_engine.engine.limits.Limits.share`) takes each request's permit from a local stock
  and asks the service for the next chunk before the stock runs out. The service paces chunks
  through the shared buckets, so the whole job stays under the limit; a chunk is one worker's share
  of :data:`LEASE_S` seconds of the rate (at least one request), so the most any window can see
  beyond the limit is one bucket's burst (a second of the rate) plus one chunk per worker. Without
  a known limit a chunk is :data:`UNMETERED_CHUNK` requests (the headers of the replies ride along
  with the next lease and may set a limit).
* **Budget.** A worker's :class:`GrantedLedger` (a ``BudgetLedger``: the engine checks and charges
  it as usual) spends a grant of USD and leases more while items run. The service grants
  ``budget / (20 x workers)`` at a time, and never more than a worker's share of what is left, so
  the grants that are out when the budget runs dry are small. When nothing is left a worker's
  ``check`` raises :class:`~cai_engine.errors.BudgetExceeded` once its grant is spent, as in one
  process. The driver's ledger stays the persisted truth: it is charged from the records (and
  from what workers report for items that never became records).
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Any

from cai_engine.engine.ledger import BudgetLedger, Spend
from cai_engine.engine.limits import Limits, RateBucket
from cai_engine.errors import BudgetExceeded
from cai_engine.models.base import ModelConfig
from cai_engine.models.ratelimits import QuotaReading

#: Seconds of a rate limit one chunk of permits is worth (split between the workers).
LEASE_S = 0.5
#: Permits per lease for a model whose limit is not known (yet).
UNMETERED_CHUNK = 256
#: Budget grants per worker over a whole budget (the size of one grant).
GRANTS_PER_WORKER = 20


# ---- the actor ------------------------------------------------------------------------------------
@dataclass
class _Grant:
    index: int
    granted: float = 0.0
    spent: Spend = field(default_factory=dict)

    @property
    def used(self) -> float:
        return max(self.granted, sum(self.spent.values()))


class QuotaService:
    """The job's quota (per hosted model) and budget; one Ray actor, called by every worker."""

    def __init__(self, models: list[ModelConfig], workers: int, budget_usd: float | None, lease_s: float = LEASE_S):
        self.workers = max(1, workers)
        self.lease_s = lease_s
        self.limits = {config.spec: Limits(config) for config in models}
        self.budget = budget_usd
        self.grant_usd = budget_usd / (GRANTS_PER_WORKER * self.workers) if budget_usd else 0.0
        self.tiny = max(1e-9, (budget_usd or 0.0) * 1e-4)
        self.grants: dict[str, _Grant] = {}  # worker incarnation -> what it holds and has spent
        self.granted_requests: dict[str, int] = {}  # per model, for tests and the report

    # ---- requests --------------------------------------------------------------------------
    def _buckets(self, limits: Limits) -> tuple[list[RateBucket], dict[str, RateBucket]]:
        requests = [b for b in (limits.rpm, limits.derived.get("requests")) if b is not None]
        tokens: dict[str, RateBucket] = {name: b for name, b in limits.derived.items() if name != "requests"}
        if limits.tpm is not None:
            tokens["tokens"] = limits.tpm
        return requests, tokens

    def _share(self, bucket: RateBucket) -> float:
        return bucket.rate * self.lease_s / self.workers

    async def lease_requests(self, spec: str, need: dict[str, float], readings: list[QuotaReading],
                             refused: list[float | None]) -> dict[str, Any]:
        """A chunk of request permits (and tokens, where tokens are limited) for one worker.

        ``need``: the tokens the worker's next request is missing; ``readings``/``refused``: the
        rate-limit headers and 429s its replies brought since its last lease."""
        limits = self.limits[spec]
        for reading in readings:
            limits.observe(reading)
        for retry_after in refused:
            limits.on_rate_limited(retry_after)
        while (delay := limits.paused_until - time.monotonic()) > 0:
            await asyncio.sleep(delay)
        request_buckets, token_buckets = self._buckets(limits)
        n = min((max(1, math.floor(self._share(b))) for b in request_buckets), default=UNMETERED_CHUNK)
        for bucket in request_buckets:
            await bucket.acquire(n)
        tokens: dict[str, float] = {}
        for name, bucket in token_buckets.items():
            amount = max(self._share(bucket), need.get(name, 0.0), 1.0)
            await bucket.acquire(amount)
            tokens[name] = amount
        self.granted_requests[spec] = self.granted_requests.get(spec, 0) + n
        return {"requests": n, "tokens": tokens}

    # ---- budget ----------------------------------------------------------------------------
    async def lease_budget(self, incarnation: str, index: int, spent: Spend) -> dict[str, Any]:
        """The worker's grant (USD, cumulative for this worker process) after it reports ``spent``."""
        grant = self.grants.setdefault(incarnation, _Grant(index))
        grant.spent = dict(spent)
        others = sum(sum(g.spent.values()) for key, g in self.grants.items() if key != incarnation)
        if self.budget is None:
            return {"granted": math.inf, "exhausted": False, "others": others}
        left = self.budget - sum(g.used for g in self.grants.values())
        exhausted = left <= self.tiny
        if not exhausted:
            chunk = min(self.grant_usd, left / self.workers) if left / self.workers > self.tiny else left
            grant.granted = grant.used + chunk
        return {"granted": grant.granted, "exhausted": exhausted, "others": others}

    async def release(self, index: int) -> None:
        """Worker ``index`` died: what its grants held beyond its reported spend goes back."""
        for grant in self.grants.values():
            if grant.index == index:
                grant.granted = sum(grant.spent.values())

    async def spend_reports(self) -> dict[str, Spend]:
        """What each worker process said it had spent at its last lease."""
        return {key: dict(g.spent) for key, g in self.grants.items()}

    async def report(self) -> dict[str, Any]:
        return {"granted_requests": dict(self.granted_requests),
                "granted_usd": sum(g.granted for g in self.grants.values() if math.isfinite(g.granted))}


# ---- the worker's side ---------------------------------------------------------------------------
class QuotaShare:
    """A worker's stock of one model's request permits (the :class:`~cai_engine.engine.limits.SharedQuota`
    its engine's ``Limits`` draws from), refilled from the :class:`QuotaService` before it runs out."""

    def __init__(self, service: Any, spec: str):
        self.service, self.spec = service, spec
        self.requests = 0.0
        self.tokens: dict[str, float] = {}
        self.chunk = 1
        self._lease: asyncio.Task[None] | None = None
        self._readings: list[QuotaReading] = []
        self._refused: list[float | None] = []

    def _missing(self, costs: dict[str, float]) -> dict[str, float]:
        return {name: costs.get(name, 0.0) - have for name, have in self.tokens.items() if have < costs.get(name, 0.0)}

    async def take(self, costs: dict[str, float]) -> None:
        while self.requests < 1 or self._missing(costs):
            await asyncio.shield(self._start(self._missing(costs)))
        self.requests -= 1
        for name in self.tokens:
            self.tokens[name] -= costs.get(name, 0.0)
        if self.requests < max(1.0, self.chunk / 2):  # ask for the next chunk before this one runs out
            self._start({})

    def _start(self, need: dict[str, float]) -> asyncio.Task[None]:
        if self._lease is None or self._lease.done():
            self._lease = asyncio.get_running_loop().create_task(self._fetch(need))
        return self._lease

    async def _fetch(self, need: dict[str, float]) -> None:
        readings, refused = self._readings[-1:], self._refused
        self._readings, self._refused = [], []
        answer = await self.service.lease_requests.remote(self.spec, need, readings, refused)
        self.requests += answer["requests"]
        self.chunk = answer["requests"]
        for name, amount in answer["tokens"].items():
            self.tokens[name] = self.tokens.get(name, 0.0) + amount

    def observe(self, reading: QuotaReading) -> None:
        self._readings = [reading]  # each reading is a snapshot: the latest says it all

    def on_rate_limited(self, retry_after_s: float | None) -> None:
        self._refused.append(retry_after_s)


class GrantedLedger(BudgetLedger):
    """A worker's ledger: the ``BudgetLedger`` the engines check and charge, holding a grant of the
    job's budget from the :class:`QuotaService` instead of the whole budget. Not persisted: the
    records carry each item's cost to the driver, whose ledger is the one in OUT."""

    def __init__(self, service: Any, incarnation: str, index: int, max_cost_usd: float | None,
                 spent_before: float = 0.0):
        super().__init__(None, max_cost_usd)
        self.spent_before = spent_before
        self.service, self.incarnation, self.index = service, incarnation, index
        self.granted = 0.0
        self.last_chunk = 0.0
        self.exhausted = False
        self.others = 0.0  # what the job's other workers had spent at the last lease
        self.charged_by_model: Spend = {}
        self._lease: asyncio.Task[None] | None = None

    @property
    def spent_usd(self) -> float:
        return self.spent_before + self.others + self.session_usd

    def check(self, spec: str) -> None:
        if self.max_cost_usd is None:
            return
        if self.session_usd >= self.granted and self.exhausted:
            earlier = f" ({self.spent_before:.4f} USD by earlier runs on this output)" if self.spent_before else ""
            raise BudgetExceeded(
                f"{spec}: --max-cost {self.max_cost_usd:g} USD reached (spent {self.spent_usd:.4f} USD across the Ray "
                f"workers{earlier}); finished records are saved, rerun with a higher --max-cost to continue")
        self._top_up()

    def charge(self, spec: str, usd: float) -> None:
        super().charge(spec, usd)
        if usd > 0:
            self.charged_by_model[spec] = self.charged_by_model.get(spec, 0.0) + usd
            self._top_up()

    def _top_up(self) -> None:
        """Lease more before the grant runs out (a task on the running loop: checks stay synchronous)."""
        if self.max_cost_usd is None or self.exhausted or (self._lease is not None and not self._lease.done()):
            return
        if self.granted - self.session_usd <= 0.5 * self.last_chunk:
            self._start()

    def _start(self) -> asyncio.Task[None]:
        if self._lease is None or self._lease.done():
            self._lease = asyncio.get_running_loop().create_task(self._fetch())
        return self._lease

    async def _fetch(self) -> None:
        answer = await self.service.lease_budget.remote(self.incarnation, self.index, dict(self.charged_by_model))
        self.last_chunk = max(0.0, answer["granted"] - self.granted)
        self.granted = max(self.granted, answer["granted"])
        self.exhausted = answer["exhausted"]
        self.others = answer["others"]

    async def ready(self, spec: str) -> None:
        """Before an item starts: a grant that covers more than is spent, or BudgetExceeded."""
        if self.max_cost_usd is None:
            return
        while self.session_usd >= self.granted and not self.exhausted:
            await asyncio.shield(self._start())
        self.check(spec)
