"""`cai constitution preview` and `cai constitution diff`: real pipelines, scripted policy, fake judge server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from judge_fake_server import running_judge
from workbench_helpers import TABLE, judge_decide, scripted_policy, write_prompts

from cai_engine.cli import main
from cai_engine.constitution import load_constitution
from cai_engine.engine.engine import Engine
from cai_engine.models import registry
from cai_engine.models.base import ChatRequest, ModelConfig, SamplingParams
from cai_engine.models.mock import MockModel
from cai_engine.pipelines.revise import ReviseSettings
from cai_engine.workbench.diff import diff_constitutions
from cai_engine.workbench.preview import run_preview
from cai_engine.workbench.viewer import build_items, find_files


@registry.register("wbscripted")
def _scripted_factory(name: str, config: ModelConfig) -> MockModel:
    return MockModel(name, config, responder=scripted_policy)


def _kind_responder(request: ChatRequest) -> str:
    last = request.messages[-1].content
    if last.startswith("Revision request:"):
        return "A kinder answer." if "kinder" in last else "A shorter answer."
    if last.startswith("Critique request:"):
        return "It could be better."
    return f"Initial answer to: {last}"


@registry.register("wbkind")
def _kind_factory(name: str, config: ModelConfig) -> MockModel:
    return MockModel(name, config, responder=_kind_responder)


OLD = """\
name: tone
version: "1"
sampling: {rounds: 1}
principles:
  - id: style
    critique: Identify wordy or rude sentences in the response.
    revision: Rewrite the response to be shorter.
    judge: Which response is shorter?
  - id: gone
    critique: Identify made-up facts in the response.
    revision: Rewrite the response without made-up facts.
"""
NEW = """\
name: tone
version: "2"
sampling: {rounds: 1}
principles:
  - id: style
    critique: Identify wordy or rude sentences in the response.
    revision: Rewrite the response to be kinder.
    judge: Which response is shorter?
    weight: 2
  - id: added
    critique: Identify advice that ignores the user's stated constraints.
    revision: Rewrite the response to respect the user's constraints.
"""


@pytest.fixture()
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps table cells at the terminal width


@pytest.fixture(autouse=True)
def own_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    # The CLI caches hosted (openai/...) responses under CAI_HOME: never the user's, never shared between tests.
    home = tmp_path / "cai-home"
    monkeypatch.setenv("CAI_HOME", str(home))
    return home


def test_preview_cli_shows_both_answers_critique_and_judge(tmp_path: Path, capsys: pytest.CaptureFixture[str], wide: None, own_home: Path) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl")
    out = tmp_path / "preview"
    with running_judge(decide=judge_decide) as judge:
        config = tmp_path / "judge.yaml"
        config.write_text(f"base_urls: ['{judge.openai_base}']\n")
        main(["constitution", "preview", "general", "--prompts", str(prompts), "--n", "3", "-m", "wbscripted/p",
              "--judge-model", "openai/scripted", "--judge-config", str(config), "--rounds", "1", "--out", str(out)])
        assert judge.counts["chat"] == 3 * 2 * 2  # 3 pairs x 2 principles (general) x 2 orders
    text = capsys.readouterr().out
    flat = " ".join(text.split())
    for prompt in list(TABLE)[:3]:
        initial, revised = TABLE[prompt]
        assert prompt in flat and initial in flat and revised in flat
    assert "[4/" not in flat and "[3/3]" in flat
    assert flat.count("The response could be more accurate") == 3 and "round 0 · " in flat
    assert flat.count("judge prefers revised") == 2 and flat.count("judge prefers initial") == 1
    assert "P(revised better) = 0.86" in flat and "revised shown first: 0.85" in flat and "consistent" in flat
    assert "3/3 revised; judge prefers the revision in 2/3" in flat
    # The saved records are ordinary revise/judge records: `cai view` joins them.
    items = build_items(find_files(out))
    assert len(items) == 3 and all(i["pair"] and i["revision"] for i in items)
    # The judge's replies went to the response cache; a rerun reads them, --no-cache asks again.
    assert (own_home / "cache.sqlite").is_file()
    # A new server process on the same endpoint (the cache key holds the model and its host:port).
    port = judge.port
    with running_judge(decide=judge_decide, port=port) as judge:
        assert judge.port == port
        args = ["constitution", "preview", "general", "--prompts", str(prompts), "--n", "3", "-m", "wbscripted/p",
                "--judge-model", "openai/scripted", "--judge-config", str(config), "--rounds", "1"]
        main(args)
        assert judge.counts["chat"] == 0
        main([*args, "--no-cache"])
        assert judge.counts["chat"] == 3 * 2 * 2
    assert " ".join(capsys.readouterr().out.split()).count("judge prefers revised") == 4


def test_preview_no_judge_and_failures_are_shown(tmp_path: Path, capsys: pytest.CaptureFixture[str], wide: None) -> None:
    prompts = write_prompts(tmp_path / "prompts.jsonl")
    main(["constitution", "preview", "general", "-p", str(prompts), "--n", "2", "-m", "mock/fail", "--no-judge"])
    flat = " ".join(capsys.readouterr().out.split())
    assert flat.count("mock/fail always fails") == 2 and "0/2 revised" in flat


async def test_diff_uses_same_seeds_for_both_constitutions(tmp_path: Path) -> None:
    old_path, new_path = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old_path.write_text(OLD)
    new_path.write_text(NEW)
    old, new = load_constitution(old_path), load_constitution(new_path)
    config = ModelConfig(spec="mock/seeds")
    model = MockModel("seeds", config, responder=_kind_responder)
    engine = Engine(model, config)

    def settings(c):
        return ReviseSettings(constitution=c, params=SamplingParams(temperature=0.7), rounds=1, principles_per_round=1, few_shot=0, seed=3)

    prompts = ["Plan my week.", "Fix my essay."]
    a = await run_preview(prompts, engine=engine, settings=settings(old), rid_salt="diff")
    b = await run_preview(prompts, engine=engine, settings=settings(new), rid_salt="diff")
    initial_seeds = [c.params.seed for c in model.calls if c.messages[-1].content in prompts]
    assert len(initial_seeds) == 4 and initial_seeds[:2] == initial_seeds[2:]
    assert [i.revision["id"] for i in a] == [i.revision["id"] for i in b]
    assert [i.revision["initial_response"] for i in a] == [i.revision["initial_response"] for i in b]


def test_static_diff_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str], wide: None) -> None:
    old_path, new_path = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old_path.write_text(OLD)
    new_path.write_text(NEW)
    d = diff_constitutions(load_constitution(old_path), load_constitution(new_path))
    assert (d.added, d.removed, d.unchanged) == (["added"], ["gone"], [])
    assert d.changed == {"style": {"revision": ("Rewrite the response to be shorter.", "Rewrite the response to be kinder."), "weight": (1.0, 2.0)}}
    assert d.meta == {"version": ("1", "2")}
    assert diff_constitutions(load_constitution("general"), load_constitution("general")).empty

    main(["constitution", "diff", str(old_path), str(new_path), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert data["added"] == ["added"] and data["changed"]["style"]["weight"] == [1.0, 2.0]

    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "Plan my week."}\n{"prompt": "Fix my essay."}\n')
    main(["constitution", "diff", str(old_path), str(new_path), "-p", str(prompts), "-m", "wbkind/x", "--seed", "1"])
    flat = " ".join(capsys.readouterr().out.split())
    assert "1 added" in flat and "1 removed" in flat and "1 changed" in flat
    assert "+ added:" in flat and "- gone:" in flat and "~ style.revision:" in flat and "~ style.weight: 1.0 -> 2.0" in flat
    assert "~ version: 1 -> 2" in flat
    assert flat.count("initial answer identical") == 2
    assert "A kinder answer." in flat  # the new constitution's revision
    # Same file on both sides: nothing changes, revisions included.
    main(["constitution", "diff", str(old_path), str(old_path), "-p", str(prompts), "-m", "wbkind/x"])
    flat = " ".join(capsys.readouterr().out.split())
    assert "no differences" in flat and "0/2 final answers changed" in flat
