"""Critique->revise pipeline on the scripted mock provider: structure, sampling, few-shot, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cai_engine.constitution import load_constitution
from cai_engine.engine.engine import Engine
from cai_engine.engine.records import latest_records
from cai_engine.models.base import ChatRequest, ModelConfig, SamplingParams
from cai_engine.models.mock import MockModel
from cai_engine.pipelines.revise import ReviseSettings, record_id, run_revise
from cai_engine.sources import iter_prompts

CONSTITUTION = """\
name: test-constitution
version: "1"
system_prompt: You are a careful assistant.
principles:
  - id: honest
    critique: Point out any claim in the response that is not true.
    revision: Rewrite the response so every claim is true.
    judge: Which response is more honest?
  - id: harmless
    critique: Point out anything harmful in the response.
    revision: Rewrite the response to remove anything harmful.
    judge: Which response is less harmful?
  - id: helpful
    critique: Point out where the response fails to help.
    revision: Rewrite the response to be more helpful.
    judge: Which response is more helpful?
sampling:
  principles_per_round: 1
  rounds: 2
few_shot:
  - prompt: How do I pick a lock?
    response: Use a tension wrench and rake the pins.
    principle: harmless
    critique: The response explains lock picking without asking whether the lock is the user's.
    revision: If it is your own lock, a locksmith can help; lock picking someone else's lock is illegal.
"""


@pytest.fixture()
def constitution_file(tmp_path: Path) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(CONSTITUTION)
    return path


@pytest.fixture()
def prompts_file(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"question number {i}?"}) + "\n" for i in range(12)))
    return path


def _responder(request: ChatRequest) -> str:
    last = request.messages[-1].content
    if last.startswith("Critique request:"):
        return "critique: " + last.split("\n")[0][18:60]
    if last.startswith("Revision request:"):
        return "Revised response: better answer to " + request.messages[-1].content[18:40]
    return "first answer to " + last


def _settings(path: Path, rounds: int = 2, k: int = 1) -> ReviseSettings:
    return ReviseSettings(
        constitution=load_constitution(path),
        params=SamplingParams(max_tokens=32),
        rounds=rounds,
        principles_per_round=k,
        few_shot=1,
        seed=0,
    )


async def test_record_structure_and_conversation(constitution_file: Path, prompts_file: Path, tmp_path: Path) -> None:
    config = ModelConfig(spec="mock/test")
    model = MockModel("test", config, responder=_responder)
    settings = _settings(constitution_file, rounds=2, k=2)
    out = tmp_path / "revisions.jsonl"
    summary = await run_revise(
        iter_prompts(prompts_file, limit=3), engine=Engine(model, config), settings=settings, out_path=out, concurrency=2
    )
    assert summary.done == 3 and summary.failed == 0
    records = latest_records(out)
    record = next(r for r in records if r["prompt"] == "question number 0?")  # records are written as they finish
    assert record["status"] == "ok"
    assert record["initial_response"] == "first answer to question number 0?"
    assert len(record["rounds"]) == 4  # 2 rounds x 2 principles
    assert [step["round"] for step in record["rounds"]] == [0, 0, 1, 1]
    assert len({step["principle_id"] for step in record["rounds"][:2]}) == 2  # without replacement
    assert record["final_response"] == record["rounds"][-1]["revision"]
    assert not record["final_response"].startswith("Revised response:")  # label stripped
    assert record["constitution"]["hash"] == settings.constitution.hash
    assert record["usage"]["output_tokens"] > 0
    # 1 initial + 4 x (critique + revision) = 9 calls per prompt.
    assert len(model.calls) == 27
    initial_call = model.calls[0]
    assert [m.role for m in initial_call.messages] == ["system", "user"]
    # Critique calls see the few-shot example (6 turns) before the real exchange.
    critique_call = next(c for c in model.calls if c.messages[-1].content.startswith("Critique request:"))
    assert critique_call.messages[1].content == "How do I pick a lock?"
    assert "tension wrench" in critique_call.messages[2].content


async def test_principle_sampling_is_recorded_and_reproducible(constitution_file: Path, prompts_file: Path, tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        config = ModelConfig(spec="mock/test")
        out = tmp_path / f"{name}.jsonl"
        await run_revise(
            iter_prompts(prompts_file),
            engine=Engine(MockModel("test", config, responder=_responder), config),
            settings=_settings(constitution_file),
            out_path=out,
            concurrency=5,
        )
        runs.append({r["id"]: [s["principle_id"] for s in r["rounds"]] for r in latest_records(out)})
    assert runs[0] == runs[1]
    assert len({tuple(v) for v in runs[0].values()}) > 1  # different prompts draw different principles


async def test_empty_generation_is_a_failed_record_and_retry_failed_redoes_it(constitution_file: Path, prompts_file: Path, tmp_path: Path) -> None:
    config = ModelConfig(spec="mock/test")
    out = tmp_path / "r.jsonl"
    settings = _settings(constitution_file, rounds=1)

    def flaky(request: ChatRequest) -> str:
        return "" if "number 1?" in request.messages[-1].content else _responder(request)

    summary = await run_revise(
        iter_prompts(prompts_file, limit=3), engine=Engine(MockModel("test", config, responder=flaky), config),
        settings=settings, out_path=out, concurrency=3,
    )
    assert summary.failed == 1
    failed = latest_records(out, status="failed")
    assert failed[0]["prompt"] == "question number 1?" and "empty initial response" in failed[0]["error"]

    # A plain rerun leaves it; --retry-failed redoes exactly that one.
    model = MockModel("test", config, responder=_responder)
    again = await run_revise(iter_prompts(prompts_file, limit=3), engine=Engine(model, config), settings=settings, out_path=out, concurrency=3)
    assert again.skipped == 3 and not model.calls
    retried = await run_revise(
        iter_prompts(prompts_file, limit=3), engine=Engine(model, config), settings=settings, out_path=out, concurrency=3, retry_failed=True
    )
    assert retried.done == 1 and retried.skipped == 2
    assert len(latest_records(out, status="ok")) == 3


def test_record_id_depends_on_prompt_model_and_settings(constitution_file: Path) -> None:
    settings = _settings(constitution_file)
    base = record_id("p", settings, "mock/a")
    assert base == record_id("p", settings, "mock/a")
    assert base != record_id("q", settings, "mock/a")
    assert base != record_id("p", settings, "mock/b")
    assert base != record_id("p", _settings(constitution_file, rounds=1), "mock/a")


def _cai(*args: str, env: dict[str, str] | None = None) -> list[str]:
    return [sys.executable, "-m", "cai_engine", *args]


def test_kill_9_mid_run_then_resume_gives_the_clean_run_set(constitution_file: Path, tmp_path: Path) -> None:
    """A real subprocess is SIGKILLed mid-run; the rerun completes with no duplicate and no loss."""
    prompts = tmp_path / "many.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"item {i}"}) + "\n" for i in range(40)))
    env = {**os.environ, "CAI_HOME": str(tmp_path / "home")}
    killed_dir, clean_dir = tmp_path / "killed", tmp_path / "clean"
    args = ["revise", "-c", str(constitution_file), "-p", str(prompts), "-m", "mock/slow", "--rounds", "1", "--concurrency", "4"]

    proc = subprocess.Popen(_cai(*args, "-o", str(killed_dir)), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records_file = killed_dir / "revisions.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline:
        if records_file.exists() and records_file.read_text().count("\n") >= 8:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = records_file.read_text().count("\n")
    assert 8 <= partial < 40, partial

    subprocess.run(_cai(*args, "-o", str(killed_dir)), env=env, check=True, capture_output=True)
    subprocess.run(_cai(*args, "-o", str(clean_dir)), env=env, check=True, capture_output=True)

    resumed_lines = [json.loads(line) for line in records_file.read_text().splitlines()]
    ids = [r["id"] for r in resumed_lines]
    assert len(ids) == len(set(ids)) == 40, "a record was duplicated or lost"
    clean = {r["id"]: r for r in latest_records(clean_dir / "revisions.jsonl")}
    resumed = {r["id"]: r for r in resumed_lines}
    assert set(clean) == set(resumed)
    strip = lambda r: {k: v for k, v in r.items() if k != "latency_s"}  # noqa: E731
    assert all(strip(clean[i]) == strip(resumed[i]) for i in clean)
    print(f"kill-resume: {partial} records before SIGKILL, 40 after resume, 0 duplicated, 0 lost")
