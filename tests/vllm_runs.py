"""A small revise run and judge run, used by the vLLM tests to compare backends record by record.

The same prompts, pairs, constitution and settings go through the pipelines on a vLLM backend
(in-process ``vllm/smollm2`` or ``openai/...`` against ``vllm serve``) and on the transformers
``local/`` backend with the same checkpoint; the records must have the same structure (keys,
nesting, list lengths, value types), the same principles and, for the judge, verdicts read from
logprobs by both. The transformers reference is computed once per test session.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from cai_engine.constitution import load_constitution
from cai_engine.engine.engine import Engine
from cai_engine.engine.records import latest_records
from cai_engine.models.base import ModelConfig, SamplingParams
from cai_engine.pipelines.candidates import file_pairs
from cai_engine.pipelines.judge import JudgeSettings, run_judge
from cai_engine.pipelines.revise import ReviseSettings, run_revise
from cai_engine.sources import iter_prompts

CONSTITUTION = """\
name: vllm-compare
version: "1"
system_prompt: You are a helpful, honest assistant.
principles:
  - id: honest
    critique: Point out any claim in the response that is not true.
    revision: Rewrite the response so every claim is true.
    judge: Which response is more accurate?
  - id: helpful
    critique: Point out where the response fails to help the user.
    revision: Rewrite the response to be more helpful.
    judge: Which response is more helpful?
sampling:
  principles_per_round: 1
  rounds: 1
"""
PROMPTS = ["What is the capital of France?", "Give one tip for sleeping well."]
PAIRS = [
    {
        "prompt": "What is the capital of France?",
        "response_a": "The capital of France is Lyon.",
        "response_b": "The capital of France is Paris.",
    },
    {
        "prompt": "How many legs does a spider have?",
        "response_a": "A spider has eight legs.",
        "response_b": "Spiders have six legs, like insects.",
    },
]
REVISE_MAX_TOKENS = 24
P_FIRST_TOLERANCE = 0.1


def write_inputs(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {"constitution": folder / "c.yaml", "prompts": folder / "prompts.jsonl", "pairs": folder / "pairs_input.jsonl"}
    files["constitution"].write_text(CONSTITUTION)
    files["prompts"].write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    files["pairs"].write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    return files


async def revise_and_judge(engine: Engine, folder: Path) -> dict[str, list[dict[str, Any]]]:
    """Run both pipelines on ``engine``; return the records of each, sorted by prompt."""
    files = write_inputs(folder)
    constitution = load_constitution(files["constitution"])
    revise = ReviseSettings(
        constitution=constitution, params=SamplingParams(max_tokens=REVISE_MAX_TOKENS, temperature=0.0),
        rounds=1, principles_per_round=1, few_shot=0, seed=0,
    )
    summary = await run_revise(
        iter_prompts(files["prompts"]), engine=engine, settings=revise, out_path=folder / "revisions.jsonl", concurrency=4
    )
    assert summary.done == len(PROMPTS), f"revise on {engine.spec}: {summary}"
    judge = JudgeSettings(constitution=constitution, principles_per_judgment=1, logprobs=True, top_logprobs=5, seed=0)
    summary = await run_judge(
        file_pairs(files["pairs"]), engine=engine, settings=judge, out_path=folder / "pairs.jsonl", concurrency=4
    )
    assert summary.done == len(PAIRS), f"judge on {engine.spec}: {summary}"
    return {
        name: sorted(latest_records(folder / f"{name}.jsonl"), key=lambda r: r["prompt"])
        for name in ("revisions", "pairs")
    }


_REFERENCE: dict[str, list[dict[str, Any]]] = {}


async def transformers_reference(checkpoint: Path, folder: Path) -> dict[str, list[dict[str, Any]]]:
    """The same runs on the transformers ``local/`` backend (computed once per session)."""
    if not _REFERENCE:
        async with Engine.from_config(ModelConfig(spec=f"local/{checkpoint}", max_concurrency=8)) as engine:
            _REFERENCE.update(await revise_and_judge(engine, folder))
    return _REFERENCE


def shape(value: Any) -> Any:
    """The structure of a record: keys, nesting, list lengths and value types (not the values)."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in sorted(value.items())}
    if isinstance(value, list):
        return [shape(item) for item in value]
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def assert_same_records(got: dict[str, list[dict[str, Any]]], ref: dict[str, list[dict[str, Any]]], spec: str) -> None:
    """``got`` (a vLLM run) matches the transformers reference record for record."""
    for name in ("revisions", "pairs"):
        assert [r["prompt"] for r in got[name]] == [r["prompt"] for r in ref[name]]
        for mine, theirs in zip(got[name], ref[name]):
            assert mine["status"] == theirs["status"] == "ok", (mine.get("error"), theirs.get("error"))
            assert shape(mine) == shape(theirs), f"{name} record structure differs for {mine['prompt']!r}"
            assert mine["id"] != theirs["id"]  # the model is part of the record id
    for record in got["revisions"]:
        assert record["model"] == spec
        assert record["initial_response"].strip() and record["final_response"].strip()
        assert len(record["rounds"]) == 1 and record["rounds"][0]["critique"].strip()
        assert 0 < record["usage"]["output_tokens"] <= 3 * REVISE_MAX_TOKENS
        assert record["usage"]["input_tokens"] > 0
    for mine, theirs in zip(got["pairs"], ref["pairs"]):
        assert mine["judge_model"] == spec
        assert mine["principles"] == theirs["principles"]  # seeded by the pair, not by the judge model
        assert [(j["principle_id"], j["order"]) for j in mine["judgments"]] == [
            (j["principle_id"], j["order"]) for j in theirs["judgments"]
        ]
        for judgment in (*mine["judgments"], *theirs["judgments"]):
            assert judgment["method"] == "logprobs" and judgment["soft"] is True, judgment
            assert 0.0 <= judgment["p_first"] <= 1.0 and not math.isnan(judgment["p_first"])
        # Same weights, same prompt, greedy: the soft verdicts agree up to kernel precision (both fp32
        # on CPU; measured gaps were <= 0.03 even when vLLM still ran the checkpoint in bf16).
        for j_mine, j_theirs in zip(mine["judgments"], theirs["judgments"]):
            assert abs(j_mine["p_first"] - j_theirs["p_first"]) <= P_FIRST_TOLERANCE, (j_mine, j_theirs)
        assert 0.0 <= mine["p_a_better"] <= 1.0 and mine["chosen"] in ("a", "b", "tie")
