"""Response cache: a rerun costs zero provider requests and zero dollars; --no-cache bypasses it."""

from __future__ import annotations

import asyncio
import sqlite3

from fake_provider import reply_text, running_provider

from cai_engine.engine.cache import ResponseCache, cache_key
from cai_engine.engine.factory import build_engine
from cai_engine.models.base import ChatRequest, Message, ModelConfig, Prices, SamplingParams


def requests(n: int) -> list[ChatRequest]:
    return [ChatRequest(messages=[Message(role="user", content=f"cache me {i}")],
                        params=SamplingParams(temperature=0.7, seed=i)) for i in range(n)]


async def test_rerun_hits_cache_and_costs_nothing(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CAI_HOME", str(tmp_path / "home"))
    with running_provider() as provider:
        config = ModelConfig(spec="openai/fake", base_urls=[provider.openai_base],
                             prices=Prices(input_per_mtok=1.0, output_per_mtok=2.0))
        first = build_engine(config)
        out1 = await asyncio.gather(*(first.generate(r) for r in requests(20)))
        await first.aclose()
        assert provider.counts["chat"] == 20 and first.stats.cost_usd > 0

        second = build_engine(config)
        out2 = await asyncio.gather(*(second.generate(r) for r in requests(20)))
        await second.aclose()
        assert provider.counts["chat"] == 20  # nothing new reached the provider
        assert second.stats.cached == 20 and second.stats.requests == 0 and second.stats.cost_usd == 0.0
        assert all(r.cached for r in out2) and not any(r.cached for r in out1)
        assert [r.text for r in out2] == [reply_text(f"cache me {i}") for i in range(20)]

        bypass = build_engine(config, use_cache=False)
        await bypass.generate(requests(1)[0])
        await bypass.aclose()
        assert provider.counts["chat"] == 21 and bypass.cache is None
    assert (tmp_path / "home" / "cache.sqlite").exists()


def test_key_covers_fingerprint_and_params(tmp_path) -> None:
    r = requests(1)[0]
    fp = "openai/m@http://a"
    assert cache_key(fp, r) == cache_key(fp, r.model_copy())
    assert cache_key(fp, r) != cache_key(fp, r.model_copy(update={"params": SamplingParams(temperature=0.7, seed=99)}))
    assert cache_key(fp, r) != cache_key("openai/m@http://b", r)  # another host may serve another model
    assert cache_key(fp, r) != cache_key("local/ckpt@1f2e", r)
    cache = ResponseCache(tmp_path / "c.sqlite")
    mode = sqlite3.connect(tmp_path / "c.sqlite").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    cache.close()
