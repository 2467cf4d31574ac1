"""2,000 requests through Engine + run_items + RecordStore with ~10% injected faults on the wire.

Every prompt must end with exactly one record carrying its own answer: none lost (malformed and
truncated bodies are retried, unlike the SDK's own policy), none duplicated.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from fake_provider import Faults, reply_text, running_provider

from cai_engine.engine.engine import Engine, EngineOptions
from cai_engine.engine.records import RecordStore, stable_hash
from cai_engine.engine.runner import run_items
from cai_engine.models.base import ChatRequest, Message, ModelConfig, SamplingParams

FAULT_RATES = {"429": 0.02, "500": 0.02, "503": 0.01, "drop": 0.015, "malformed": 0.015,
               "truncated": 0.015, "slow": 0.005}


async def test_2000_requests_with_faults_none_lost_none_duplicated(tmp_path: Path) -> None:
    n = 2000
    prompts = [f"prompt number {i}: tell me about item {i * 7919 % 1000}" for i in range(n)]
    faults = Faults(rates=FAULT_RATES, slow_s=2.0, seed=4)
    with running_provider(faults=faults) as provider:
        config = ModelConfig(spec="openai/fake-model", base_urls=[provider.openai_base], max_concurrency=64,
                             timeout_s=1.0, max_retries=8)
        engine = Engine.from_config(config, options=EngineOptions(retry_base_s=0.01, retry_max_wait_s=0.2))
        store = RecordStore(tmp_path / "records.jsonl")

        async def worker(prompt: str, rid: str) -> dict[str, object]:
            request = ChatRequest(messages=[Message(role="user", content=prompt)], params=SamplingParams(max_tokens=64))
            response = await engine.generate(request)
            return {"prompt": prompt, "answer": response.text, "status": "ok"}

        started = time.perf_counter()
        summary = await run_items(prompts, record_id=lambda p: stable_hash(p), worker=worker, store=store,
                                  concurrency=64)
        elapsed = time.perf_counter() - started
        store.close()
        await engine.aclose()
        served = dict(provider.counts)

    lines = [json.loads(x) for x in (tmp_path / "records.jsonl").read_text().splitlines()]
    ids = Counter(rec["id"] for rec in lines)
    injected = sum(v for k, v in served.items() if k.startswith("fault:"))
    stats = engine.stats
    print(f"\n{n} prompts in {elapsed:.1f} s: records {len(lines)}, unique {len(ids)}, failed {summary.failed}, "
          f"server requests {served['chat']}, injected faults {injected} "
          f"({ {k[6:]: v for k, v in served.items() if k.startswith('fault:')} }), engine retries {stats.retries} "
          f"by kind {stats.faults}, errors {stats.errors}")
    assert summary.failed == 0 and summary.done == n
    assert len(lines) == n and len(ids) == n and max(ids.values()) == 1  # exactly one record per prompt
    assert {rec["id"] for rec in lines} == {stable_hash(p) for p in prompts}
    for rec in lines:  # each record carries the answer to ITS prompt
        assert rec["answer"] == reply_text(rec["prompt"])
    assert injected >= 0.07 * n  # the fault knobs really fired (~10%)
    # Every injected fault cost one retry; slow replies are retried after the client timeout.
    assert stats.retries >= injected
    # A retried connection error may never have reached the server, so <= rather than ==.
    assert n + injected <= served["chat"] <= n + stats.retries
    assert stats.requests == n and stats.errors == 0
