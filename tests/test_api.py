"""The Python API: every prompt shape, resume with ``out``, async twins in a running loop, and the CLI
running the same code path (records are identical whichever way they were made)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import datasets
import pytest

import cai_engine
from cai_engine.cli import main
from cai_engine.engine.records import latest_records
from cai_engine.errors import CaiError

PROMPTS = ["What is the boiling point of water?", "Name a prime number.", "How do I store onions?"]


def test_the_root_package_exports_the_api_lazily() -> None:
    assert set(cai_engine.__all__) >= {"load_constitution", "revise", "arevise", "judge", "ajudge", "evaluate",
                                       "aevaluate", "judge_eval", "export_sft", "export_dpo", "export_reward",
                                       "train", "run"}
    c = cai_engine.load_constitution("medical")
    assert c.name and c.principles
    same = cai_engine.load_constitution({"name": "mini", "principles": [
        {"id": "p", "critique": "Find errors.", "revision": "Fix them."}]})
    assert same.name == "mini" and same.hash
    with pytest.raises(AttributeError):
        cai_engine.no_such_thing  # noqa: B018


@pytest.mark.parametrize("shape", ["list", "messages", "file", "dataset"])
def test_revise_accepts_every_prompt_shape_and_resumes(tmp_path: Path, shape: str) -> None:
    prompts: object
    if shape == "list":
        prompts = PROMPTS
    elif shape == "messages":
        prompts = [[{"role": "user", "content": p}] for p in PROMPTS]
    elif shape == "file":
        prompts = tmp_path / "p.jsonl"
        prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    else:
        prompts = datasets.Dataset.from_list([{"question": p} for p in PROMPTS])
    out = tmp_path / "out"
    result = cai_engine.revise(prompts, model="mock/echo", out=out, rounds=1, progress=False)
    assert len(result) == 3 and result.summary.done == 3
    assert sorted(result["prompt"]) == sorted(PROMPTS)
    assert "final_response" in result.column_names and result.out == out
    again = cai_engine.revise(prompts, model="mock/echo", out=out, rounds=1, progress=False)
    assert again.summary.done == 0 and again.summary.skipped == 3  # resumable exactly like the CLI
    assert len(latest_records(out / "revisions.jsonl")) == 3


def test_the_cli_and_the_api_write_the_same_records(tmp_path: Path) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    main(["revise", "-c", "general", "-p", str(prompts), "-o", str(tmp_path / "cli"), "--model", "mock/echo",
          "--rounds", "1", "--seed", "3"])
    cai_engine.revise(prompts, constitution="general", model="mock/echo", out=tmp_path / "api", rounds=1, seed=3,
                      progress=False)

    def strip(path: Path) -> dict[str, dict]:
        drop = {"latency_s"}
        return {r["id"]: {k: v for k, v in r.items() if k not in drop} for r in latest_records(path)}

    assert strip(tmp_path / "cli" / "revisions.jsonl") == strip(tmp_path / "api" / "revisions.jsonl")


def test_sync_call_inside_a_running_loop_says_to_use_the_async_twin(tmp_path: Path) -> None:
    async def notebook_cell() -> object:
        with pytest.raises(CaiError, match=r"await cai_engine\.arevise"):
            cai_engine.revise(PROMPTS, model="mock/echo", out=tmp_path / "x", progress=False)
        return await cai_engine.arevise(PROMPTS[:2], model="mock/echo", out=tmp_path / "a", rounds=0, progress=False)

    result = asyncio.run(notebook_cell())
    assert len(result) == 2 and result.summary.done == 2


def test_judge_and_export_from_python(tmp_path: Path) -> None:
    out = tmp_path / "rev"
    cai_engine.revise(PROMPTS, model="mock/echo", out=out, rounds=1, progress=False)
    sft = cai_engine.export_sft(out, out=tmp_path / "sft")
    assert isinstance(sft, datasets.Dataset) and len(sft) == 3 and "messages" in sft.column_names
    pairs = cai_engine.judge([{"prompt": "2+2?", "chosen": "4", "rejected": "5"}], judge_model="mock/echo",
                             out=tmp_path / "pairs", progress=False)
    assert len(pairs) == 1 and pairs.summary.done + pairs.summary.failed == 1
