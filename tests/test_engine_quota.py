"""The provider's rate-limit headers drive the limiter: climb to the quota with no config, back off on
429, and let whatever the user set win (issue 15)."""

from __future__ import annotations

import asyncio
import time

from fake_provider import Quota, reply_text, running_provider

from cai_engine.engine.engine import Engine, EngineOptions
from cai_engine.engine.limits import HEADROOM, Limits, RateBucket
from cai_engine.models.base import ChatRequest, Message, ModelConfig, SamplingParams
from cai_engine.models.ratelimits import (
    ADAPTIVE_CEILING, Bucket, QuotaReading, anthropic_quota, openai_quota, parse_duration, parse_reset_time,
)

FAST = EngineOptions(retry_base_s=0.01, retry_max_wait_s=2.0)


def ask(i: int) -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content=f"quota {i}")], params=SamplingParams(max_tokens=16))


def steady_share(times: list[float], per_s: float, skip_s: float = 1.5, tail_s: float = 0.5) -> float:
    """Answered requests per second between skip_s after the first and tail_s before the last, over the quota."""
    times = sorted(times)
    start, end = times[0] + skip_s, times[-1] - tail_s
    inside = sum(1 for t in times if start <= t <= end)
    return inside / (end - start) / per_s


def test_header_parsing() -> None:
    assert parse_duration("6m0s") == 360 and parse_duration("1s") == 1 and parse_duration("20ms") == 0.02
    assert parse_duration("1h2m3.5s") == 3723.5 and parse_duration("0.5") == 0.5 and parse_duration("soon") is None
    assert parse_reset_time("2025-01-01T00:00:30Z", now=1735689600.0) == 30.0
    reading = openai_quota({"x-ratelimit-limit-requests": "3000", "x-ratelimit-remaining-requests": "2999",
                            "x-ratelimit-reset-requests": "20ms", "x-ratelimit-limit-tokens": "2000000",
                            "x-ratelimit-remaining-tokens": "1999000", "x-ratelimit-reset-tokens": "6m0s"})
    assert reading is not None
    assert reading.buckets["requests"] == Bucket(3000, 2999, 0.02)
    assert reading.buckets["tokens"] == Bucket(2_000_000, 1_999_000, 360.0)
    anth = anthropic_quota({"anthropic-ratelimit-requests-limit": "50", "anthropic-ratelimit-requests-remaining": "49",
                            "anthropic-ratelimit-input-tokens-limit": "40000",
                            "anthropic-ratelimit-input-tokens-remaining": "39000",
                            "anthropic-ratelimit-output-tokens-limit": "8000", "retry-after": "3"})
    assert anth is not None and anth.retry_after_s == 3.0
    assert set(anth.buckets) == {"requests", "input_tokens", "output_tokens"}  # not swapped
    assert anth.buckets["input_tokens"].limit == 40000 and anth.buckets["output_tokens"].limit == 8000
    assert openai_quota({"content-type": "application/json"}) is None  # compatible servers send none


async def test_no_config_climbs_to_the_quota_with_few_refusals() -> None:
    rpm, latency = 4800, 0.25  # 80 requests/s at 250 ms: ~20 in flight needed, above the start of 16
    with running_provider(latency_s=latency, quota=Quota(rpm=rpm, window_s=1.0)) as provider:
        engine = Engine.from_config(ModelConfig(spec="openai/fake", base_urls=[provider.openai_base]), options=FAST)
        assert engine.adaptive and engine.suggested_concurrency == ADAPTIVE_CEILING
        n = 560
        replies = await asyncio.gather(*(engine.generate(ask(i)) for i in range(n)))
        assert [r.text for r in replies] == [reply_text(f"quota {i}") for i in range(n)]
        share = steady_share(provider.ok_times, rpm / 60)
        refused = provider.counts["quota:429"]
        limits = engine.limits
        text = engine.quota_text()
        await engine.aclose()
    print(f"\nshare of quota {share:.0%}, refused {refused}/{n + refused}, in-flight cap {limits.concurrency.limit}, "
          f"latency {limits.latency_s:.3f} s, '{text}'")
    assert share >= 0.85
    assert refused <= 0.10 * (n + refused)
    assert limits.quota == {"requests": rpm} and limits.concurrency.limit > 16  # it climbed past the start
    assert text.startswith("rpm ") and text.endswith(f"/{rpm:,}")


async def test_explicit_rpm_and_max_concurrency_win_over_the_headers() -> None:
    with running_provider(latency_s=0.05, quota=Quota(rpm=6000, window_s=1.0)) as provider:
        config = ModelConfig(spec="openai/fake", base_urls=[provider.openai_base], rpm=1200, max_concurrency=4)
        engine = Engine.from_config(config, options=FAST)
        assert not engine.adaptive and engine.suggested_concurrency == 4
        started = time.perf_counter()
        await asyncio.gather(*(engine.generate(ask(i)) for i in range(60)))
        elapsed = time.perf_counter() - started
        limits = engine.limits
        await engine.aclose()
    # 1200 rpm = 20/s with a one-second burst: 60 requests need >= (60 - 20) / 20 = 2 s.
    assert elapsed >= 1.9, elapsed
    assert "requests" not in limits.derived and limits.readings > 0  # headers were read, the user's rpm kept
    assert limits.concurrency.max_limit == 4 and limits.concurrency.limit <= 4
    assert engine.quota_text().endswith("/1,200")


async def test_429_cuts_the_paced_rate_and_it_recovers() -> None:
    limits = Limits(ModelConfig(spec="openai/x"))
    limits.observe(QuotaReading({"requests": Bucket(600, 599, 0.1)}))
    assert limits.derived["requests"].rate == 600 * HEADROOM / 60
    limits.on_rate_limited(0.5)
    cut = limits.rate_factor
    assert cut < HEADROOM and limits.derived["requests"].rate < 600 * HEADROOM / 60
    assert limits.paused_until > time.monotonic()
    limits.on_rate_limited(None)  # the same burst: cut once
    assert limits.rate_factor == cut
    limits._last_cut -= 10.0  # ten seconds without a refusal: 5 points a second climb back
    limits._last_recover -= 10.0
    limits.on_success()
    assert limits.rate_factor == HEADROOM


async def test_remaining_lowers_the_bucket_and_explicit_tpm_blocks_derived_token_buckets() -> None:
    limits = Limits(ModelConfig(spec="anthropic/x", tpm=10_000))
    limits.observe(QuotaReading({"requests": Bucket(600, 0, 1.0), "input_tokens": Bucket(40_000, 100, 5.0),
                                 "output_tokens": Bucket(8_000, 8_000, 0.0)}))
    assert set(limits.derived) == {"requests"}  # the user's tpm wins over every token limit
    assert limits.derived["requests"].level == 0  # the provider said nothing is left right now
    bucket = RateBucket(60)  # 1/s
    bucket.lower_to(0)
    started = time.perf_counter()
    await bucket.acquire()
    assert time.perf_counter() - started >= 0.9


async def test_concurrency_option_raises_the_cap() -> None:
    with running_provider(latency_s=0.2) as provider:
        config = ModelConfig(spec="openai/fake", base_urls=[provider.openai_base], max_concurrency=8)
        engine = Engine.from_config(config, options=FAST)
        assert engine.runner_concurrency(None) == 8
        assert engine.runner_concurrency(32) == 32
        assert engine.concurrency_note is not None and "raises" in engine.concurrency_note
        peak = 0

        async def one(i: int) -> None:
            nonlocal peak
            task = asyncio.ensure_future(engine.generate(ask(i)))
            await asyncio.sleep(0.1)
            peak = max(peak, engine.limits.in_flight)
            await task

        await asyncio.gather(*(one(i) for i in range(32)))
        await engine.aclose()
    assert peak > 8  # the model config said 8; --concurrency 32 raised it


async def test_anthropic_input_and_output_token_limits_are_read_apart(monkeypatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-quota")
    quota = Quota(rpm=600, input_tpm=90_000, output_tpm=18_000, window_s=1.0)
    with running_provider(quota=quota) as provider:
        engine = Engine.from_config(ModelConfig(spec="anthropic/claude-sonnet-4-5", base_urls=[provider.url]),
                                    options=FAST)
        await asyncio.gather(*(engine.generate(ask(i)) for i in range(20)))
        limits = engine.limits
        text = engine.quota_text()
        await engine.aclose()
    assert limits.quota == {"requests": 600, "input_tokens": 90_000, "output_tokens": 18_000}
    assert set(limits.derived) == {"requests", "input_tokens", "output_tokens"}
    assert text.startswith("rpm ") and ("itpm" in text or "otpm" in text)
    assert provider.counts["quota:429"] == 0


def test_ray_workers_usage_adds_up_on_the_driver_and_a_silent_worker_drops_out(monkeypatch: pytest.MonkeyPatch) -> None:
    from cai_engine.engine import limits as limits_module
    from cai_engine.engine.limits import Limits

    driver = Limits(ModelConfig(spec="openai/x", rpm=120))
    driver.show_remote("w0", {"used": {"requests": 50.0}, "limits": {"requests": 120}})
    driver.show_remote("w1", {"used": {"requests": 40.0}, "limits": {"requests": 120, "tokens": 2_000_000}})
    assert driver.quota_text() == "rpm 90/120 tpm 0/2M"
    now = limits_module.time.monotonic()
    monkeypatch.setattr(limits_module.time, "monotonic", lambda: now + limits_module.REMOTE_TTL_S + 1)
    driver.show_remote("w1", {"used": {"requests": 40.0}, "limits": {"requests": 120}})
    assert driver.quota_text() == "rpm 40/120"  # w0 said nothing for longer than the TTL
