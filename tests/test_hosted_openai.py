"""openai/ backend against the fake provider over real HTTP: mapping, auth, retry rules, load balancing."""

from __future__ import annotations

import socket
import time

import pytest
from fake_provider import reply_text, running_provider

from cai_engine.engine.engine import Engine, EngineOptions
from cai_engine.engine.retry import RequestFailed
from cai_engine.errors import FatalBackendError, ModelError
from cai_engine.models.base import ChatRequest, Message, ModelConfig, SamplingParams

FAST = EngineOptions(retry_base_s=0.01, retry_max_wait_s=2.0)


def ask(text: str, **params: object) -> ChatRequest:
    return ChatRequest(messages=[Message(role="system", content="be brief"), Message(role="user", content=text)],
                       params=SamplingParams(**params))


@pytest.fixture
def provider():
    with running_provider() as p:
        yield p


def engine_for(provider, **cfg: object) -> Engine:
    config = ModelConfig(spec="openai/fake", base_urls=[provider.openai_base], timeout_s=2.0, **cfg)
    return Engine.from_config(config, options=FAST)


async def test_mapping_n_seed_stop_logprobs(provider) -> None:
    engine = engine_for(provider)
    r = await engine.generate(ask("hello world", n=2, seed=7, logprobs=True, top_logprobs=3, max_tokens=50))
    assert [c.text for c in r.choices] == [reply_text("hello world"), reply_text("hello world") + " (sample 1)"]
    lp = r.choices[0].logprobs
    assert lp is not None and lp[0].token == "echo:hello" and set(lp[0].top) == {"echo:hello", "alt0", "alt1"}
    assert r.usage.input_tokens == 4 and r.usage.output_tokens == 6
    cut = await engine.generate(ask("hello world", stop=["world"]))
    assert cut.text == "echo:hello " and cut.choices[0].finish_reason == "stop"
    short = await engine.generate(ask("a b c d e f", max_tokens=2))
    assert short.text == "echo:a b" and short.choices[0].finish_reason == "length"
    assert provider.seen_keys == {"EMPTY"}  # self-hosted server, no key configured: dummy key sent
    assert engine.stats.requests == 3 and engine.stats.cost_usd == 0.0
    await engine.aclose()


async def test_fake_reply_bytes_pads_within_max_tokens() -> None:
    """The scale benchmarks' long replies (``--reply-bytes``): ~N bytes, never cut by the padding."""
    with running_provider(reply_bytes=600) as p:
        engine = engine_for(p)
        long = await engine.generate(ask("hello world", max_tokens=500))
        assert long.text.startswith(reply_text("hello world") + " ") and 600 <= len(long.text.encode()) < 620
        assert long.choices[0].finish_reason == "stop" and long.usage.output_tokens == len(long.text.split())
        capped = await engine.generate(ask("hello world", max_tokens=10))
        assert len(capped.text.split()) == 10 and capped.choices[0].finish_reason == "stop"
        await engine.aclose()


async def test_401_stops_at_once_with_one_scrubbed_line(provider, monkeypatch) -> None:
    canary = "sk-test-SECRET-canary-401"
    monkeypatch.setenv("FAKE_KEY", canary)
    provider.api_key = "the-right-key"
    engine = engine_for(provider, api_key_env="FAKE_KEY")
    with pytest.raises(FatalBackendError) as info:
        await engine.generate(ask("hi"))
    message = str(info.value)
    print("\n401 message:", message)
    assert "\n" not in message and "authentication failed (HTTP 401)" in message and "$FAKE_KEY" in message
    assert canary not in message and "SECRET-canary" not in message  # the server quoted the key; we scrub it
    with pytest.raises(FatalBackendError):  # later calls fail fast without touching the server
        await engine.generate(ask("again"))
    assert provider.counts["401"] == 1 and engine.stats.retries == 0
    await engine.aclose()


def test_missing_key_env_is_one_line_naming_the_variable(monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ModelError) as info:
        Engine.from_config(ModelConfig(spec="openai/gpt-4o-mini"))
    assert "OPENAI_API_KEY" in str(info.value) and "\n" not in str(info.value)
    monkeypatch.delenv("MY_TEAM_KEY", raising=False)
    with pytest.raises(ModelError, match="environment variable MY_TEAM_KEY is not set"):
        Engine.from_config(ModelConfig(spec="openai/x", base_urls=["http://127.0.0.1:9/v1"], api_key_env="MY_TEAM_KEY"))


async def test_no_retry_on_400(provider) -> None:
    engine = engine_for(provider)
    with pytest.raises(RequestFailed, match="HTTP 400"):
        await engine.generate(ChatRequest(messages=[]))
    assert provider.counts["chat"] == 1 and engine.stats.retries == 0 and engine.stats.errors == 1
    await engine.aclose()


@pytest.mark.parametrize("header", ["retry-after", "retry-after-ms"])
async def test_retry_after_is_honoured(provider, header: str) -> None:
    if header == "retry-after":
        provider.faults.retry_after_s, provider.faults.retry_after_ms = 0.6, None
    else:
        provider.faults.retry_after_s, provider.faults.retry_after_ms = None, 600
    provider.faults.script = ["429"]
    engine = engine_for(provider)
    started = time.perf_counter()
    r = await engine.generate(ask("wait for me"))
    waited = time.perf_counter() - started
    assert r.text == reply_text("wait for me")
    assert 0.6 <= waited < 1.5, waited
    assert engine.stats.retries == 1 and engine.stats.faults == {"rate_limit": 1}
    await engine.aclose()


async def test_malformed_and_truncated_bodies_are_retried(provider) -> None:
    provider.faults.script = ["malformed", "truncated", "500", "drop"]
    engine = engine_for(provider)
    assert (await engine.generate(ask("survive"))).text == reply_text("survive")
    assert engine.stats.retries == 4 and provider.counts["chat"] == 5
    await engine.aclose()


async def test_two_base_urls_one_dead_is_taken_out(provider) -> None:
    with socket.socket() as s:  # a port with nothing listening: connection refused
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    config = ModelConfig(spec="openai/fake", base_urls=[dead, provider.openai_base], timeout_s=2.0,
                         max_concurrency=4)
    engine = Engine.from_config(config, options=FAST)
    import asyncio

    replies = await asyncio.gather(*(engine.generate(ask(f"q{i}")) for i in range(60)))
    assert [r.text for r in replies] == [reply_text(f"q{i}") for i in range(60)]
    dead_ep, live_ep = engine.model.pool.snapshot()  # type: ignore[attr-defined]
    print("\nendpoints:", dead_ep, live_ep)
    assert dead_ep["open"] and dead_ep["served"] == 0
    assert dead_ep["failed"] <= 6  # taken out after 3 failures in a row (a few were already in flight)
    assert live_ep["served"] == 60 and engine.stats.retries == dead_ep["failed"]
    await engine.aclose()


async def test_balanced_by_outstanding_requests() -> None:
    import asyncio

    with running_provider(latency_s=0.05) as a, running_provider(latency_s=0.05) as b:
        config = ModelConfig(spec="openai/fake", base_urls=[a.openai_base, b.openai_base], max_concurrency=16)
        engine = Engine.from_config(config, options=FAST)
        await asyncio.gather(*(engine.generate(ask(f"x{i}")) for i in range(80)))
        assert abs(a.counts["chat"] - b.counts["chat"]) <= 16 and a.counts["chat"] + b.counts["chat"] == 80
        await engine.aclose()
