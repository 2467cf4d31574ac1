"""Retry classification, refusals that stop a run, key scrubbing and the price table."""

from __future__ import annotations

import asyncio
import email.utils
import time

import pytest
from fake_provider import running_provider

from cai_engine.engine.engine import Engine, EngineOptions
from cai_engine.engine.retry import RequestFailed
from cai_engine.errors import FatalBackendError
from cai_engine.models.base import ChatRequest, Message, ModelConfig, Prices
from cai_engine.models.keys import Secret, remember, scrub
from cai_engine.models.prices import lookup, prices_for
from cai_engine.models.retryable import MalformedResponse, classify_status, classify_transport, parse_retry_after


def test_status_and_transport_classes() -> None:
    for status in (408, 409, 429, 500, 502, 503, 529):
        assert classify_status(status).retryable
    for status in (400, 401, 403, 404, 422):
        assert not classify_status(status).retryable
    assert classify_status(401).fatal and not classify_status(403).fatal
    assert classify_transport(TimeoutError()).kind == "timeout"
    assert classify_transport(ConnectionResetError()).kind == "connection"
    assert classify_transport(MalformedResponse("x")).retryable
    assert not classify_transport(TypeError("bug")).retryable


def test_retry_after_headers() -> None:
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    date = email.utils.formatdate(time.time() + 5, usegmt=True)
    assert 3.5 < (parse_retry_after({"retry-after": date}) or 0) <= 5.0
    assert parse_retry_after({"retry-after": "soon"}) is None and parse_retry_after({}) is None


def test_scrub_and_secret_repr() -> None:
    remember("sk-live-abcdefghijklmnop-XYZ")
    assert scrub("bad key sk-live-abcdefghijklmnop-XYZ given") == "bad key *** given"
    assert "sk-live-abcd" not in scrub("masked: sk-live-abcd...")  # a provider's masked prefix
    assert repr(Secret("sk-live-abcdefghijklmnop-XYZ")) == "Secret(***)"


def test_prices() -> None:
    assert lookup("gpt-4o-mini-2024-07-18") == Prices(input_per_mtok=0.15, output_per_mtok=0.60, cached_input_per_mtok=0.075)
    assert lookup("gpt-4o-2024-08-06") == Prices(input_per_mtok=2.50, output_per_mtok=10.00, cached_input_per_mtok=1.25)
    assert lookup("claude-sonnet-4-5") == Prices(input_per_mtok=3.0, output_per_mtok=15.0, cached_input_per_mtok=0.3,
                                                 cache_write_per_mtok=3.75)
    assert lookup("no-such-model") is None
    assert prices_for(ModelConfig(spec="openai/some-new-model")) is None  # unknown hosted: cost unknown
    assert prices_for(ModelConfig(spec="openai/llama", base_urls=["http://h/v1"])) == Prices()  # self-hosted
    custom = Prices(input_per_mtok=9, output_per_mtok=9)
    assert prices_for(ModelConfig(spec="openai/gpt-4o", prices=custom)) == custom


async def test_refusals_in_a_row_stop_the_run() -> None:
    with running_provider() as provider:
        provider.faults.script = ["404", "404", "404"]
        config = ModelConfig(spec="openai/no-such-model", base_urls=[provider.openai_base], max_concurrency=1)
        engine = Engine.from_config(config, options=EngineOptions(retry_base_s=0.01))
        ask = ChatRequest(messages=[Message(role="user", content="hi")])
        for _ in range(2):
            with pytest.raises(RequestFailed, match="HTTP 404"):
                await engine.generate(ask)
        with pytest.raises(FatalBackendError, match="refuses every request"):
            await engine.generate(ask)
        with pytest.raises(FatalBackendError):
            await asyncio.wait_for(engine.generate(ask), 1)  # no more requests once stopped
        assert provider.counts["chat"] == 3 and engine.stats.retries == 0
        await engine.aclose()
