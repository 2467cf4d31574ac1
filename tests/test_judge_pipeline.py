"""The judge pipeline on the scripted mock provider: both orders, retries, failures, CoT, candidate sources."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cai_engine.constitution import Constitution
from cai_engine.engine.engine import Engine
from cai_engine.engine.records import latest_records
from cai_engine.models.base import ChatRequest, SamplingParams
from cai_engine.pipelines.candidates import Candidate, CandidateGenerator, PairSpec, file_pairs, parse_pairs_from, prompt_pairs, revision_pairs
from cai_engine.pipelines.judge import JudgeSettings, pair_id, run_judge
from cai_engine.errors import CaiError

BLOCK = re.compile(r"<response_([AB])>\n(.*?)\n</response_\1>", re.S)


def constitution(k: int = 1) -> Constitution:
    return Constitution(
        name="t",
        principles=[
            {"id": "honest", "critique": "Find false claims.", "revision": "Fix them.", "judge": "Which response is more honest?"},
            {"id": "safe", "critique": "Find harmful content.", "revision": "Remove it."},
        ],
        sampling={"principles_per_judgment": k},
    )


def blocks(request: ChatRequest) -> dict[str, str]:
    return dict(BLOCK.findall(request.messages[-1].content))


def prefers(word: str):
    """A content-faithful judge: picks the block that contains ``word``."""

    def respond(request: ChatRequest) -> str:
        shown = blocks(request)
        return "A" if word in shown["A"] else "B"

    return respond


def mock_engine(responder) -> Engine:
    engine = Engine.from_config("mock/judge")
    engine.model.responder = responder  # type: ignore[attr-defined]
    return engine


def pair(a: str, b: str, prompt: str = "What is the capital of France?") -> PairSpec:
    return PairSpec(prompt=prompt, origin={"kind": "test"}, a=Candidate(a, {"kind": "x"}), b=Candidate(b, {"kind": "y"}))


async def test_each_pair_is_judged_in_both_orders_per_principle(tmp_path: Path) -> None:
    engine = mock_engine(prefers("Paris"))
    settings = JudgeSettings(constitution=constitution(k=2), principles_per_judgment=2)
    summary = await run_judge([pair("Lyon.", "Paris.")], engine=engine, settings=settings, out_path=tmp_path / "pairs.jsonl", concurrency=2)
    assert summary.done == 1
    calls = engine.model.calls  # type: ignore[attr-defined]
    assert len(calls) == 4
    shown_first = sorted(blocks(c)["A"] for c in calls)
    assert shown_first == ["Lyon.", "Lyon.", "Paris.", "Paris."]
    questions = {c.messages[-1].content.split("Question: ", 1)[1].split("\n", 1)[0] for c in calls}
    assert "Which response is more honest?" in questions and any("Find harmful content." in q for q in questions)
    assert all(c.params.temperature == 0 and c.params.logprobs and c.params.top_logprobs == 5 for c in calls)
    (record,) = latest_records(tmp_path / "pairs.jsonl")
    assert record["status"] == "ok" and record["chosen"] == "b" and record["consistent"] is True
    assert record["p_a_better"] == 0.0 and record["confidence"] == 1.0
    assert {(j["principle_id"], j["order"]) for j in record["judgments"]} == {
        ("honest", "ab"), ("honest", "ba"), ("safe", "ab"), ("safe", "ba"),
    }
    assert all(j["method"] == "parsed" and j["raw"] in ("A", "B") for j in record["judgments"])
    assert record["lengths"] == {"a": 5, "b": 6} and record["constitution"]["hash"] == settings.constitution.hash
    assert record["judge_model"] == "mock/judge" and record["usage"]["judge"]["input_tokens"] > 0


async def test_unparseable_reply_is_retried_then_recorded_with_raw_text(tmp_path: Path) -> None:
    engine = mock_engine(lambda request: "I would rather not say.")
    settings = JudgeSettings(constitution=constitution(), parse_retries=2, retry_temperature=0.9)
    summary = await run_judge([pair("x", "y")], engine=engine, settings=settings, out_path=tmp_path / "p.jsonl", concurrency=1)
    assert summary.failed == 1 and summary.done == 0
    (record,) = latest_records(tmp_path / "p.jsonl")
    assert record["status"] == "failed" and "unparseable verdict" in record["error"]
    assert record["raw"][0]["replies"] == ["I would rather not say."] * 3
    calls = engine.model.calls  # type: ignore[attr-defined]
    assert len(calls) == 6  # 2 orders x 3 attempts
    temps = sorted(c.params.temperature for c in calls)
    assert temps == [0.0, 0.0, 0.9, 0.9, 0.9, 0.9]
    assert len({c.params.seed for c in calls}) == 6  # every attempt has its own seed
    assert record["candidates"][0]["text"] == "x"  # the failure keeps its inputs


async def test_a_retry_that_parses_is_used(tmp_path: Path) -> None:
    replies = iter(["hmm", "B", "A"])
    engine = mock_engine(lambda request: next(replies))
    engine.config.max_concurrency = 1
    settings = JudgeSettings(constitution=constitution())
    await run_judge([pair("x", "y")], engine=engine, settings=settings, out_path=tmp_path / "p.jsonl", concurrency=1)
    (record,) = latest_records(tmp_path / "p.jsonl")
    assert record["status"] == "ok"
    assert sorted(j["attempts"] for j in record["judgments"]) == [1, 2]


async def test_cot_verdicts_are_clamped_end_to_end(tmp_path: Path) -> None:
    def respond(request: ChatRequest) -> str:
        assert "step by step" in request.messages[-1].content
        letter = "A" if "Paris" in blocks(request)["A"] else "B"
        return f"One answer names the right city.\nAnswer: ({letter})"

    engine = mock_engine(respond)
    settings = JudgeSettings(constitution=constitution(), cot=True, cot_clamp=(0.35, 0.65))
    await run_judge([pair("Paris.", "Lyon.")], engine=engine, settings=settings, out_path=tmp_path / "p.jsonl", concurrency=1)
    (record,) = latest_records(tmp_path / "p.jsonl")
    assert {j["p_first"] for j in record["judgments"]} == {0.65, 0.35}
    assert record["p_a_better"] == pytest.approx(0.65) and record["chosen"] == "a" and record["consistent"] is True
    assert all(j["method"] == "cot" for j in record["judgments"])
    assert engine.model.calls[0].params.max_tokens == 384  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        JudgeSettings(constitution=constitution(), cot_clamp=(0.6, 0.7))


async def test_identical_candidates_cost_no_judge_call(tmp_path: Path) -> None:
    engine = mock_engine(lambda request: "A")
    await run_judge([pair("same", " same ")], engine=engine, settings=JudgeSettings(constitution=constitution()),
                    out_path=tmp_path / "p.jsonl", concurrency=1)
    (record,) = latest_records(tmp_path / "p.jsonl")
    assert record["identical"] and record["chosen"] == "tie" and engine.model.calls == []  # type: ignore[attr-defined]


def test_pair_ids_depend_on_inputs_and_judge_config() -> None:
    settings = JudgeSettings(constitution=constitution())
    base = pair_id(pair("x", "y"), settings, "mock/j")
    assert base == pair_id(pair("x", "y"), settings, "mock/j")
    assert base != pair_id(pair("y", "x"), settings, "mock/j")
    assert base != pair_id(pair("x", "y"), settings, "mock/other")
    assert base != pair_id(pair("x", "y"), JudgeSettings(constitution=constitution(), cot=True), "mock/j")


def test_revision_and_file_sources(tmp_path: Path) -> None:
    revisions = tmp_path / "rev" / "revisions.jsonl"
    revisions.parent.mkdir()
    rows = [
        {"id": "r1", "status": "ok", "prompt": "p1", "initial_response": "bad", "final_response": "good", "rounds": [{}], "model": "m"},
        {"id": "r2", "status": "failed", "prompt": "p2"},
        {"id": "r1", "status": "ok", "prompt": "p1", "initial_response": "bad", "final_response": "better", "rounds": [{}], "model": "m"},
    ]
    revisions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (spec,) = list(revision_pairs(revisions.parent))
    assert (spec.a.text, spec.b.text) == ("bad", "better")  # type: ignore[union-attr]
    assert spec.a.source["kind"] == "initial" and spec.b.source["kind"] == "revision"  # type: ignore[union-attr]

    pairs_file = tmp_path / "pairs.jsonl"
    pairs_file.write_text(
        json.dumps({"prompt": "q", "response_a": "1", "response_b": "2"}) + "\n\n"
        + json.dumps({"prompt": [{"role": "user", "content": "q2"}], "chosen": [{"role": "assistant", "content": "c"}], "rejected": "r", "category": "k"}) + "\n"
    )
    first, second = file_pairs(pairs_file)
    assert (first.a.text, first.b.text, first.label) == ("1", "2", None)  # type: ignore[union-attr]
    assert (second.prompt, second.a.text, second.b.text, second.label, second.meta) == ("q2", "c", "r", "a", {"category": "k"})  # type: ignore[union-attr]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "q", "answer": "x"}) + "\n")
    with pytest.raises(CaiError, match=r"bad.jsonl: row 1: a pair needs 'prompt'"):
        list(file_pairs(bad))
    with pytest.raises(CaiError, match="is not KIND:PATH"):
        parse_pairs_from("pairs.jsonl")
    with pytest.raises(CaiError, match="not found"):
        parse_pairs_from(f"file:{tmp_path / 'nope.jsonl'}")
    assert parse_pairs_from(f"file:{pairs_file}") == ("file", pairs_file)


async def test_samples_and_models_sources_generate_then_judge(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"question {i}"}) + "\n" for i in range(3)))
    policy = Engine.from_config("mock/policy")
    policy.model.responder = lambda r: f"sample seed={r.params.seed} t={r.params.temperature}"  # type: ignore[attr-defined]
    judge = mock_engine(lambda r: "A")
    c = constitution().model_copy(update={"system_prompt": "Be good."})
    settings = JudgeSettings(constitution=c)
    params = SamplingParams(max_tokens=32, temperature=1.0)
    generator = CandidateGenerator("samples", policy, params, system_prompt=c.system_prompt, seed=3)
    summary = await run_judge(prompt_pairs("samples", prompts, generator.recipe(), None, None), engine=judge, settings=settings,
                              out_path=tmp_path / "p.jsonl", generator=generator, concurrency=2)
    assert summary.done == 3
    records = latest_records(tmp_path / "p.jsonl")
    for record in records:
        a, b = record["candidates"]
        assert a["text"] != b["text"] and a["source"]["model"] == b["source"]["model"] == "mock/policy"
        assert record["usage"]["policy"]["output_tokens"] > 0
    assert all(c.messages[0].content == "Be good." and c.params.temperature == 1.0 for c in policy.model.calls)  # type: ignore[attr-defined]

    other = Engine.from_config("mock/other")
    with pytest.raises(CaiError, match="--model-b"):
        CandidateGenerator("models", policy, params)
    generator = CandidateGenerator("models", policy, params, model_b=other)
    await run_judge(prompt_pairs("models", prompts, generator.recipe(), None, 1), engine=judge, settings=settings,
                    out_path=tmp_path / "m.jsonl", generator=generator, concurrency=1)
    (record,) = latest_records(tmp_path / "m.jsonl")
    assert [c["source"]["model"] for c in record["candidates"]] == ["mock/policy", "mock/other"]
