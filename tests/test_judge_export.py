"""`cai export dpo` / `cai export reward` from judged pairs, and one real trl.DPOTrainer step on the export."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from helpers_models import _fast_tokenizer, build_tiny_llama

from cai_engine.cli import main
from cai_engine.constitution import Constitution
from cai_engine.engine.engine import Engine
from cai_engine.models.base import ChatRequest
from cai_engine.pipelines.candidates import Candidate, PairSpec
from cai_engine.pipelines.judge import JudgeSettings, run_judge

CONSTITUTION = Constitution(
    name="t", system_prompt="Be helpful and honest.",
    principles=[{"id": "honest", "critique": "Find false claims.", "revision": "Fix.", "judge": "Which is more accurate?"}],
)


def scripted(request: ChatRequest) -> str:
    """Prefers the block with 'good'; position-biased (always A) when a block says 'coin'."""
    user = request.messages[-1].content
    block_a = user.split("<response_A>\n", 1)[1].split("\n</response_A>", 1)[0]
    if "coin" in user:
        return "A"
    return "A" if "good" in block_a else "B"


@pytest.fixture(scope="module")
def judged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A judge run: 6 clear pairs (3 where the better answer is longer, 3 shorter), 2 position-biased, 1 unparseable."""
    import asyncio

    out = tmp_path_factory.mktemp("judged")
    pairs = []
    for i in range(6):
        good = f"good answer {i}" + (" with many more helpful words" if i < 3 else "")
        bad = f"bad {i}" if i < 3 else f"bad answer {i} that rambles on for much longer"
        a, b = (good, bad) if i % 2 == 0 else (bad, good)
        pairs.append(PairSpec(prompt=f"question {i}", origin={"kind": "test"}, a=Candidate(a, {}), b=Candidate(b, {})))
    pairs += [PairSpec(prompt=f"flip {i}", origin={"kind": "test"}, a=Candidate(f"coin {i}", {}), b=Candidate("other", {})) for i in range(2)]
    pairs.append(PairSpec(prompt="broken", origin={"kind": "test"}, a=Candidate("x", {}), b=Candidate("y", {})))

    def respond(request: ChatRequest) -> str:
        return "no verdict here" if "broken" in request.messages[-1].content else scripted(request)

    engine = Engine.from_config("mock/judge")
    engine.model.responder = respond  # type: ignore[attr-defined]
    asyncio.run(run_judge(pairs, engine=engine, settings=JudgeSettings(constitution=CONSTITUTION), out_path=out / "pairs.jsonl", concurrency=4))
    return out


def test_export_dpo_columns_filters_and_card(judged: Path, tmp_path: Path) -> None:
    import datasets

    main(["export", "dpo", str(judged), "--out", str(tmp_path / "dpo")])
    ds = datasets.load_from_disk(str(tmp_path / "dpo" / "dataset"))
    assert set(ds.column_names) == {"id", "prompt", "chosen", "rejected", "confidence", "consistent"}
    assert len(ds) == 6  # the 2 position-biased pairs are ties, the broken one failed
    for row in ds:
        assert row["prompt"] == [{"role": "user", "content": row["prompt"][0]["content"]}]
        assert row["chosen"][0]["role"] == "assistant" and row["chosen"][0]["content"].startswith("good")
        assert row["rejected"][0]["content"].startswith("bad")
        assert row["confidence"] == 1.0 and row["consistent"] is True
    card = json.loads((tmp_path / "dpo" / "card.json").read_text())
    assert card["records_failed"] == 1 and card["dropped"]["tie"] == 2 and card["dropped"]["failed"] == 1
    assert card["all_pairs"]["position_consistency_rate"] == pytest.approx(6 / 8)
    assert card["exported_pairs"]["longer_wins_rate"] == pytest.approx(0.5)
    assert card["constitutions"] == [f"t@{CONSTITUTION.hash}"] and card["judge_models"] == ["mock/judge"]
    assert (tmp_path / "dpo" / "data.parquet").exists() and "longer_wins_rate" in (tmp_path / "dpo" / "README.md").read_text()


def test_export_reward_margin_and_length_balance(judged: Path, tmp_path: Path) -> None:
    import datasets

    main(["export", "reward", str(judged / "pairs.jsonl"), "--out", str(tmp_path / "rm"), "--length-balanced", "--drop-inconsistent"])
    ds = datasets.load_from_disk(str(tmp_path / "rm" / "dataset"))
    assert "margin" in ds.column_names and all(m == 1.0 for m in ds["margin"])  # 2 * 1.0 - 1
    assert len(ds) == 6  # already balanced: 3 longer-chosen, 3 shorter-chosen


def test_export_with_nothing_left_is_one_clear_error(judged: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    records = [json.loads(line) for line in (judged / "pairs.jsonl").read_text().splitlines()]
    skewed = tmp_path / "pairs.jsonl"
    # Keep only pairs where the longer answer won: the length balance must then drop them all.
    skewed.write_text("".join(json.dumps(r) + "\n" for r in records if r["id"] and r.get("status") == "ok" and r["prompt"] in ("question 0", "question 1")))
    with pytest.raises(SystemExit):
        main(["export", "dpo", str(skewed), "--out", str(tmp_path / "o"), "--length-balanced"])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "passed the filters" in err[0] and "--length-balanced" in err[0]


def test_dpo_trainer_takes_a_step_on_the_export(judged: Path, tmp_path: Path) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    main(["export", "dpo", str(judged), "--out", str(tmp_path / "dpo")])
    dataset = datasets.load_from_disk(str(tmp_path / "dpo" / "dataset"))
    model_dir = build_tiny_llama(tmp_path / "tiny", _fast_tokenizer())
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    before = [p.detach().clone() for p in model.parameters()]
    args = DPOConfig(
        output_dir=str(tmp_path / "run"), max_steps=1, per_device_train_batch_size=2, learning_rate=1e-3,
        logging_steps=1, report_to=[], save_strategy="no", use_cpu=True, max_length=128,
    )
    trainer = DPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert trainer.state.global_step == 1 and losses and all(torch.isfinite(torch.tensor(losses)))
    assert any(not torch.equal(b, p.detach()) for b, p in zip(before, model.parameters()))


@pytest.mark.parametrize("command", [["judge"], ["judge-eval"], ["export", "dpo"], ["export", "reward"]])
def test_commands_have_help_with_an_example(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    try:
        main([*command, "--help"])
    except SystemExit as exc:  # click may exit 0 after printing help
        assert exc.code in (0, None)
    assert "Example" in capsys.readouterr().out
