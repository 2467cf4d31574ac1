"""anthropic/ backend over real HTTP: system mapping, stop reasons, usage, n > 1, retries, key errors."""

from __future__ import annotations

import pytest
from fake_provider import reply_text, running_provider

from cai_engine.engine.engine import Engine, EngineOptions
from cai_engine.errors import FatalBackendError, ModelError
from cai_engine.models.base import ChatRequest, Message, ModelConfig, SamplingParams


@pytest.fixture
def engine(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-key-000")
    with running_provider() as p:
        e = Engine.from_config(ModelConfig(spec="anthropic/claude-haiku-4-5", base_urls=[p.url], timeout_s=2.0),
                               options=EngineOptions(retry_base_s=0.01))
        e.provider = p  # type: ignore[attr-defined]
        yield e


async def test_system_stop_reasons_and_usage(engine) -> None:
    messages = [Message(role="system", content="You are terse."), Message(role="system", content="Be kind."),
                Message(role="user", content="one two three")]
    r = await engine.generate(ChatRequest(messages=messages))
    # Two system turns joined into the top-level system (len("You are terse.\n\nBe kind.") == 24).
    assert r.text == "[sys:24] " + reply_text("one two three")
    assert r.choices[0].finish_reason == "stop"  # end_turn
    # input counts the system prompt (5 words) too; no cache_control on prompts this short: nothing cached.
    assert r.usage.input_tokens == 3 + 5 and r.usage.output_tokens == 5 and r.usage.cached_input_tokens == 0
    cut = await engine.generate(ChatRequest(messages=messages, params=SamplingParams(stop=["three"])))
    assert cut.text.endswith("echo:one two ") and cut.choices[0].finish_reason == "stop"  # stop_sequence
    short = await engine.generate(ChatRequest(messages=messages[2:], params=SamplingParams(max_tokens=2)))
    assert short.text == "echo:one two" and short.choices[0].finish_reason == "length"  # max_tokens
    many = await engine.generate(ChatRequest(messages=messages[2:], params=SamplingParams(n=3)))
    assert len(many.choices) == 3 and many.usage.output_tokens == 3 * 4
    assert engine.provider.counts["messages"] == 6
    assert engine.provider.seen_keys == {"sk-ant-test-key-000"}
    # haiku 4.5 list price: 1.00 in / 5.00 out per MTok.
    expected = (engine.stats.input_tokens * 1.00 + engine.stats.output_tokens * 5.00) / 1e6
    assert engine.stats.cost_usd == pytest.approx(expected)
    await engine.aclose()


async def test_retries_and_401(engine) -> None:
    engine.provider.faults.script = ["503", "malformed", "429"]
    assert (await engine.generate(ChatRequest(messages=[Message(role="user", content="x")]))).text == reply_text("x")
    assert engine.stats.retries == 3
    engine.provider.api_key = "something-else"
    with pytest.raises(FatalBackendError, match="ANTHROPIC_API_KEY") as info:
        await engine.generate(ChatRequest(messages=[Message(role="user", content="y")]))
    assert "sk-ant-test-key-000" not in str(info.value)
    await engine.aclose()


def test_missing_anthropic_key(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ModelError, match="environment variable ANTHROPIC_API_KEY is not set"):
        Engine.from_config("anthropic/claude-haiku-4-5")
    keyfile = tmp_path / "key.txt"
    with pytest.raises(ModelError, match="api_key_file .* not found"):
        Engine.from_config(ModelConfig(spec="anthropic/x", api_key_file=keyfile))
    keyfile.write_text("sk-ant-from-file-1234\n")
    e = Engine.from_config(ModelConfig(spec="anthropic/x", api_key_file=keyfile))
    # the stats reach manifest.json the way the commands write them (write_manifest of stats.model_dump())
    from cai_engine.manifest import write_manifest

    manifest = write_manifest(tmp_path, "judge", {"engines": [e.stats.model_dump()]}).read_text()
    assert "sk-ant-from-file" not in repr(e.model) and "sk-ant-from-file" not in manifest
