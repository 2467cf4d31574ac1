"""RPM limit, slowing down on 429 bursts, and --max-cost stopping a run with finished records saved."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from fake_provider import running_provider

from cai_engine.engine.engine import Engine, EngineOptions
from cai_engine.engine.limits import AdaptiveConcurrency
from cai_engine.engine.records import RecordStore
from cai_engine.engine.runner import run_items
from cai_engine.errors import BudgetExceeded
from cai_engine.models.base import ChatRequest, Message, ModelConfig, Prices

FAST = EngineOptions(retry_base_s=0.01)


def ask(i: int) -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content=f"limit {i}")])


async def test_rpm_limit_is_respected() -> None:
    with running_provider() as provider:
        # 1200 rpm = 20/s with a one-second burst: 50 requests need >= (50 - 20) / 20 = 1.5 s.
        config = ModelConfig(spec="openai/fake", base_urls=[provider.openai_base], rpm=1200, max_concurrency=64)
        engine = Engine.from_config(config, options=FAST)
        started = time.perf_counter()
        await asyncio.gather(*(engine.generate(ask(i)) for i in range(50)))
        elapsed = time.perf_counter() - started
        times = sorted(provider.request_times)
        await engine.aclose()
    assert elapsed >= 1.4, elapsed
    # No one-second window holds more than the burst plus one second's rate.
    worst = max(sum(1 for t in times if s <= t < s + 1.0) for s in times)
    print(f"\n50 requests at rpm=1200: {elapsed:.2f} s, busiest second {worst}")
    assert worst <= 48  # 40 + slack: the server stamps arrivals from threads that a loaded 2-core box delays


async def test_429_burst_halves_concurrency_and_recovers() -> None:
    with running_provider() as provider:
        provider.faults.script = ["429"] * 10
        config = ModelConfig(spec="openai/fake", base_urls=[provider.openai_base], max_concurrency=16)
        engine = Engine.from_config(config, options=FAST)
        await asyncio.gather(*(engine.generate(ask(i)) for i in range(16)))
        limiter = engine.limits.concurrency
        assert limiter.cuts >= 1 and limiter.limit < 16  # slowed down
        assert engine.stats.faults["rate_limit"] == 10
        await asyncio.gather(*(engine.generate(ask(100 + i)) for i in range(200)))
        assert limiter.limit == 16  # recovered after successes
        await engine.aclose()


async def test_adaptive_concurrency_caps_in_flight() -> None:
    sem = AdaptiveConcurrency(4)
    sem.on_rate_limited()
    peak = 0

    async def job() -> None:
        nonlocal peak
        await sem.acquire()
        peak = max(peak, sem.in_flight)
        await asyncio.sleep(0.001)
        sem.release()

    await asyncio.gather(*(job() for _ in range(20)))
    assert sem.limit == 2 and peak == 2


async def test_max_cost_stops_with_finished_records_saved(tmp_path) -> None:
    with running_provider() as provider:
        # 1 USD per input token: each request (2 prompt words) costs ~2e-6 * 1e6 = 2 USD + output.
        config = ModelConfig(spec="openai/fake", base_urls=[provider.openai_base], max_concurrency=2,
                             prices=Prices(input_per_mtok=1e6, output_per_mtok=1e6))
        engine = Engine.from_config(config, options=FAST, max_cost_usd=20.0)
        store = RecordStore(tmp_path / "r.jsonl")

        async def worker(i: int, rid: str) -> dict[str, object]:
            return {"answer": (await engine.generate(ask(i))).text, "status": "ok"}

        with pytest.raises(BudgetExceeded, match="--max-cost 20 USD reached") as info:
            await run_items(range(100), record_id=str, worker=worker, store=store, concurrency=2)
        store.close()
        await engine.aclose()
    assert "\n" not in str(info.value)
    lines = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert 2 <= len(lines) < 10 and all(rec["status"] == "ok" for rec in lines)
    assert provider.counts["chat"] == len(lines)  # nothing paid for was lost
    assert engine.stats.cost_usd >= 20.0
