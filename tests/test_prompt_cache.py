"""Prefix reuse and honest cost (issue 15): breakpoints on the stable prefix, one prompt_cache_key per
conversation, and the provider's cached-token reports in Usage, ModelStats, the manifest and the cost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_provider import running_provider

import cai_engine
from cai_engine.engine.accounting import ModelStats
from cai_engine.models.anthropic_wire import parse_message, request_body
from cai_engine.models.base import ChatRequest, Message, Prices, Usage
from cai_engine.models.openai_wire import parse_completion
from cai_engine.models.prices import lookup
from cai_engine.models.prompt_cache import PrefixPlanner, anthropic_min_tokens

PROMPTS = [f"Question {i}: how should I choose a strong password for account number {i}?" for i in range(4)]
LONG = "x" * 8000  # ~2,300 tokens at 3.5 characters a token


def conversation(user: str, *turns: str, system: str = "You are careful.") -> list[Message]:
    msgs = [Message(role="system", content=system), Message(role="user", content=user)]
    for i, t in enumerate(turns):
        msgs.append(Message(role="assistant" if i % 2 == 0 else "user", content=t))
    return msgs


def test_usage_and_prices_bill_cache_reads_and_writes_apart() -> None:
    u = Usage(input_tokens=1000, output_tokens=10, cached_input_tokens=600, cache_write_input_tokens=300)
    assert (u + u).cached_input_tokens == 1200 and (u + u).cache_write_input_tokens == 600
    sonnet = lookup("claude-sonnet-4-5")
    assert sonnet is not None and sonnet.cached_input_per_mtok == pytest.approx(0.3)
    assert sonnet.cost(u) == pytest.approx((100 * 3.0 + 600 * 0.3 + 300 * 3.75 + 10 * 15.0) / 1e6)
    plain = Prices(input_per_mtok=2.0, output_per_mtok=1.0)  # a user override without cache prices: no discount
    assert plain.cost(u) == pytest.approx((1000 * 2.0 + 10 * 1.0) / 1e6)
    stats = ModelStats(spec="anthropic/claude-sonnet-4-5")
    assert stats.add_usage(u, sonnet, 0.5) == pytest.approx(0.5 * sonnet.cost(u))
    assert stats.cached_input_tokens == 600 and stats.model_dump()["cache_write_input_tokens"] == 300
    assert "(600 cached)" in stats.progress_text()


def test_wire_parsers_read_cached_tokens() -> None:
    completion = {"choices": [{"index": 0, "message": {"content": "hi"}, "finish_reason": "stop"}],
                  "usage": {"prompt_tokens": 2000, "completion_tokens": 5,
                            "prompt_tokens_details": {"cached_tokens": 1792}}}
    usage = parse_completion(completion, "openai/x").usage
    assert (usage.input_tokens, usage.cached_input_tokens, usage.cache_write_input_tokens) == (2000, 1792, 0)
    message = {"content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
               "usage": {"input_tokens": 50, "cache_creation_input_tokens": 1500, "cache_read_input_tokens": 3000,
                         "output_tokens": 7}}
    _, usage = parse_message(message)
    assert (usage.input_tokens, usage.cached_input_tokens, usage.cache_write_input_tokens) == (4550, 3000, 1500)


def test_planner_keys_follow_a_conversation_and_learn_the_shared_prefix() -> None:
    planner = PrefixPlanner()
    shots = ["example question", "example answer " + LONG]
    a1 = conversation(shots[0], shots[1], "prompt A")
    b1 = conversation(shots[0], shots[1], "prompt B")
    key_a = planner.conversation_key(a1)
    key_b = planner.conversation_key(b1)
    assert key_a != key_b and key_a.startswith("cai-")
    a2 = [*a1, Message(role="assistant", content="answer A"), Message(role="user", content="critique it")]
    a3 = [*a2, Message(role="assistant", content="critique A"), Message(role="user", content="revise it")]
    assert planner.conversation_key(a2) == key_a and planner.conversation_key(a3) == key_a
    assert PrefixPlanner().conversation_key(a1) == key_a  # stable across processes (sha256, not hash())
    # Two conversation starts shared system + few-shot: that boundary (message 2) is a breakpoint now.
    c1 = conversation(shots[0], shots[1], "prompt C")
    marks = planner.breakpoints(c1, 1024)
    assert marks == [2]  # the shared prefix; the conversation so far ends at the same message
    marks = planner.breakpoints(a3, 1024)
    assert marks == [2, len(a3) - 2] and len(a3) - 1 not in marks  # never the final turn
    assert planner.breakpoints(a3, 100_000) == []  # below the model's minimum: no breakpoint
    assert anthropic_min_tokens("claude-haiku-4-5-20251001") == 4096
    assert anthropic_min_tokens("claude-3-5-haiku-latest") == 2048 and anthropic_min_tokens("claude-sonnet-4-5") == 1024


def test_anthropic_body_marks_only_the_given_blocks() -> None:
    msgs = conversation("first", "reply", "second")
    body = request_body("claude-sonnet-4-5", ChatRequest(messages=msgs), breakpoints=[0, 2])
    assert body["system"] == [{"type": "text", "text": "You are careful.", "cache_control": {"type": "ephemeral"}}]
    assert body["messages"][0] == {"role": "user", "content": "first"}
    assert body["messages"][1]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert body["messages"][2] == {"role": "user", "content": "second"}
    assert request_body("m", ChatRequest(messages=msgs))["system"] == "You are careful."  # unchanged without


def _revise(p, tmp: Path, model: str, base: str, cache: bool, monkeypatch) -> dict[str, object]:
    monkeypatch.setenv("CAI_HOME", str(tmp / "home"))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    config = tmp / f"model-{cache}.yaml"
    config.write_text(f"base_urls: [{base}]\nprompt_cache: {str(cache).lower()}\n")
    out = tmp / f"out-{cache}"
    cai_engine.revise(PROMPTS, model=model, model_config=config, out=out, rounds=2, no_cache=True,
                      progress=False, with_dataset=False)
    return json.loads((out / "manifest.json").read_text())["stages"]["revise"]["engine"]


def test_anthropic_cache_reports_reach_stats_manifest_and_cost(tmp_path: Path, monkeypatch) -> None:
    with running_provider(reply_words=350, token_chars=3.5) as p:
        plain = _revise(p, tmp_path, "anthropic/claude-sonnet-4-5", p.url, False, monkeypatch)
        assert not any(seen["marked"] for seen in p.cache_control_seen)  # prompt_cache: false
        p.cache_control_seen.clear()
        reuse = _revise(p, tmp_path, "anthropic/claude-sonnet-4-5", p.url, True, monkeypatch)
        seen = list(p.cache_control_seen)
    assert plain["cached_input_tokens"] == 0 and plain["input_tokens"] == reuse["input_tokens"]
    assert reuse["cached_input_tokens"] > 0 and reuse["cache_write_input_tokens"] > 0
    prices = lookup("claude-sonnet-4-5")
    assert prices is not None
    totals = Usage(**{k: reuse[k] for k in ("input_tokens", "output_tokens", "cached_input_tokens",
                                              "cache_write_input_tokens")})
    assert reuse["cost_usd"] == pytest.approx(prices.cost(totals), rel=1e-6)
    input_plain = plain["input_tokens"] * prices.input_per_mtok
    input_reuse = prices.cost(totals.model_copy(update={"output_tokens": 0})) * 1e6
    print(f"\ninput cost with reuse {input_reuse / input_plain:.0%} of without")
    assert input_reuse < 0.6 * input_plain
    # cache_control on the stable prefix only: never the final turn, at most 4, system or earlier turns.
    assert any(s["marked"] for s in seen)
    for s in seen:
        assert len(s["marked"]) <= 4 and all(i < len(s["roles"]) - 1 for i in s["marked"])
        assert s["roles"][-1] == "user"


def test_openai_prompt_cache_key_per_conversation_and_cached_tokens(tmp_path: Path, monkeypatch) -> None:
    with running_provider(reply_words=350, token_chars=4) as p:
        stats = _revise(p, tmp_path, "openai/gpt-4o-mini", p.openai_base, True, monkeypatch)
        keys = list(p.prompt_cache_keys)
    assert all(keys) and len(keys) == stats["requests"] == 5 * len(PROMPTS)
    # Calls 2-5 of a record continue one conversation: 2 keys a record (the answer, then the critique chain).
    assert len(set(keys)) == 2 * len(PROMPTS)
    assert stats["cached_input_tokens"] > 0
    prices = lookup("gpt-4o-mini")
    assert prices is not None
    totals = Usage(**{k: stats[k] for k in ("input_tokens", "output_tokens", "cached_input_tokens",
                                              "cache_write_input_tokens")})
    # base_urls make the model "self-hosted" (free): check the list-price arithmetic directly.
    assert prices.cost(totals) < Prices(input_per_mtok=0.15, output_per_mtok=0.6).cost(totals)
