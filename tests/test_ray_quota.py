"""The Ray executor's one quota and one budget, without Ray: the ``QuotaService`` called in process.

The service and the workers' ``QuotaShare`` / ``GrantedLedger`` are plain classes; Ray only puts
the service in its own actor. Here a stand-in handle turns ``service.method.remote(...)`` into the
coroutine Ray would have awaited, so the grant rules are checked quickly and exactly.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from cai_engine.engine.ledger import CURRENT_ITEM, ItemCost
from cai_engine.engine.limits import Limits
from cai_engine.errors import BudgetExceeded
from cai_engine.executors.quota import GrantedLedger, QuotaService, QuotaShare
from cai_engine.models.base import ChatRequest, Message, ModelConfig, SamplingParams
from cai_engine.models.ratelimits import Bucket, QuotaReading


class Handle:
    """``handle.method.remote(*args)`` -> the coroutine of ``service.method(*args)``, like a Ray actor handle."""

    def __init__(self, service: Any):
        self.service = service
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.service, name)
        handle = self

        class Remote:
            @staticmethod
            def remote(*args: Any) -> Any:
                handle.calls += 1
                return method(*args)

        return Remote


def request() -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content="hello")], params=SamplingParams(max_tokens=8))


async def test_two_workers_share_one_rpm_in_chunks_not_a_round_trip_per_request() -> None:
    config = ModelConfig(spec="openai/x", rpm=600, max_concurrency=64)  # 10 requests/s for the whole job
    handle = Handle(QuotaService([config], workers=2, budget_usd=None))
    workers = []
    for _ in range(2):
        limits = Limits(config)
        limits.share(QuotaShare(handle, config.spec))
        workers.append(limits)
    assert all(w.rpm is None for w in workers)  # the user's bucket moved to the service
    sent: list[float] = []

    async def send(limits: Limits) -> None:
        async with limits.slot(request()):
            sent.append(time.monotonic())

    started = time.monotonic()
    await asyncio.gather(*(send(workers[i % 2]) for i in range(40)))
    elapsed = time.monotonic() - started
    # 40 requests at 10/s: about 3 s after the one-second burst; never faster than the shared rate.
    assert len(sent) == 40
    assert elapsed >= (40 - 10 - 2 * 2) / 10.0  # burst (1 s of the rate) + one chunk per worker in hand
    assert handle.calls <= 40 / 2 + 4  # chunks of 2 (a worker's share of half a second), not one per request


async def test_header_readings_and_429s_reach_the_shared_limits() -> None:
    config = ModelConfig(spec="openai/x")
    service = QuotaService([config], workers=2, budget_usd=None)
    share = QuotaShare(Handle(service), config.spec)
    limits = Limits(config)
    limits.share(share)
    limits.observe(QuotaReading(buckets={"requests": Bucket(limit=120, remaining=100, reset_s=1.0)}))
    limits.on_rate_limited(2.0)
    await share.take({"tokens": 1.0, "input_tokens": 1.0, "output_tokens": 0.0})  # the lease carries both
    shared = service.limits[config.spec]
    assert shared.quota.get("requests") == 120 and "requests" in shared.derived
    assert shared.refused == 1


async def test_the_budget_is_granted_in_chunks_and_holds_across_workers() -> None:
    budget, per_request = 1.0, 0.002  # a grant (1/40 of the budget) is 12 requests
    handle = Handle(QuotaService([], workers=2, budget_usd=budget))
    ledgers = [GrantedLedger(handle, f"{i}-x", i, budget) for i in range(2)]

    async def spend(ledger: GrantedLedger) -> int:
        done = 0
        while True:
            try:
                await ledger.ready("openai/x")
                ledger.check("openai/x")
            except BudgetExceeded as exc:
                assert "--max-cost 1 USD reached" in str(exc)
                return done
            token = CURRENT_ITEM.set(ItemCost())
            try:
                ledger.charge("openai/x", per_request)
            finally:
                CURRENT_ITEM.reset(token)
            done += 1
            await asyncio.sleep(0)

    counts = await asyncio.gather(*(spend(ledger) for ledger in ledgers))
    total = sum(ledger.session_usd for ledger in ledgers)
    assert all(c > 100 for c in counts)  # both workers spent from the one budget
    assert budget - 2 * per_request <= total <= budget + 2 * per_request
    assert handle.calls < sum(counts) / 5  # leases are chunks, not one per request


async def test_a_budget_spent_before_starts_exhausted() -> None:
    handle = Handle(QuotaService([], workers=2, budget_usd=0.0))
    ledger = GrantedLedger(handle, "0-x", 0, 5.0, spent_before=5.0)
    with pytest.raises(BudgetExceeded, match="earlier runs on this output"):
        await ledger.ready("openai/x")
