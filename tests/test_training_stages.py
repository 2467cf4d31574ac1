"""Every trainer runs 2+ steps on a tiny model from our export formats and writes its stage folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers_models import exports, preference_rows, save_export, tiny_models  # noqa: F401 (fixtures)

TINY = dict(max_steps=2, per_device_train_batch_size=2, max_length=96, learning_rate=1e-3)


def _rows(result) -> list[dict]:
    return [json.loads(line) for line in result.metrics_path.read_text().splitlines() if line.strip()]


def _check_stage(result, *, adapter: bool = True) -> list[dict]:
    rows = _rows(result)
    assert [r["step"] for r in rows if "loss" in r or "objective/kl" in r][:2] == [1, 2]
    assert (result.output_dir / "config.resolved.yaml").is_file()
    assert (result.model_dir / ("adapter_config.json" if adapter else "config.json")).is_file()
    return rows


@pytest.mark.parametrize("loss_type", ["ipo"])
def test_sft_dpo_orpo_kto(tmp_path: Path, exports: dict, tiny_models: dict, loss_type: str) -> None:
    from cai_engine.training import load_stage_config, run_stage

    base = ["model=" + str(tiny_models["causal"])] + [f"{k}={v}" for k, v in TINY.items()]
    sft = run_stage("sft", load_stage_config("sft", None, base + [f"dataset={exports['sft']}", f"output_dir={tmp_path / 'sft'}"]))
    _check_stage(sft)
    # DPO starts from the SFT stage folder (adapter), with the IPO loss
    dpo_cfg = load_stage_config("dpo", None, [f"model={tmp_path / 'sft'}", f"dataset={exports['pairs']}", f"output_dir={tmp_path / 'dpo'}", f"loss_type={loss_type}", "merge=true"] + base[1:])
    rows = _check_stage(run_stage("dpo", dpo_cfg), adapter=False)
    assert "rewards/margins" in rows[0]
    orpo = run_stage("orpo", load_stage_config("orpo", None, base + [f"dataset={exports['reward']}", f"output_dir={tmp_path / 'orpo'}"]))
    _check_stage(orpo)
    kto = run_stage("kto", load_stage_config("kto", None, base + [f"dataset={exports['pairs']}", f"output_dir={tmp_path / 'kto'}"]))
    _check_stage(kto)


def test_reward_model_reaches_gate_then_ppo_grpo_rloo(tmp_path: Path, tiny_models: dict, exports: dict) -> None:
    from cai_engine.training.grpo import GRPOStageConfig, train_grpo
    from cai_engine.training.ppo import PPOStageConfig, train_ppo
    from cai_engine.training.reward import RewardStageConfig, train_reward

    easy = save_export(preference_rows(40), tmp_path / "easy")
    rm = train_reward(RewardStageConfig(
        model=str(tiny_models["causal"]), dataset=easy, output_dir=tmp_path / "rm", lora={"enabled": False},
        max_steps=12, per_device_train_batch_size=8, learning_rate=2e-3, confidence_weighting="weight", eval_fraction=0.25,
    ))
    evaluation = json.loads((tmp_path / "rm" / "reward_eval.json").read_text())
    assert evaluation["eval_pairs"] == 10 and evaluation["eval_accuracy"] >= 0.70, evaluation
    assert rm.extra["eval_accuracy"] == evaluation["eval_accuracy"]

    ppo = train_ppo(PPOStageConfig(
        model=str(tiny_models["causal"]), reward_model=tmp_path / "rm", dataset=exports["pairs"], output_dir=tmp_path / "ppo",
        total_episodes=4, per_device_train_batch_size=2, response_length=8, num_ppo_epochs=1, length_penalty=0.01,
    ))
    rows = _check_stage(ppo)
    for key in ("monitor/reward_mean", "monitor/kl", "monitor/response_length", "monitor/distinct_1", "monitor/distinct_2"):
        assert all(key in r for r in rows), key
    assert ppo.extra["reward_model_accuracy"] == evaluation["eval_accuracy"]

    for algorithm in ("grpo", "rloo"):
        result = train_grpo(GRPOStageConfig(
            algorithm=algorithm, model=str(tiny_models["causal"]), reward_model=tmp_path / "rm", dataset=exports["sft"],
            output_dir=tmp_path / algorithm, max_steps=2, per_device_train_batch_size=2, num_generations=2, max_completion_length=8,
        ))
        rows = _check_stage(result)
        assert all("monitor/distinct_2" in r for r in rows if "loss" in r)


def test_grpo_with_online_judge(tmp_path: Path, tiny_models: dict, exports: dict) -> None:
    """d-RLAIF: the judge (a scripted provider behind the real Engine) scores each sampled completion."""
    from cai_engine.models import registry
    from cai_engine.models.mock import MockModel
    from cai_engine.training.grpo import GRPOStageConfig, train_grpo

    @registry.register("scorejudge")
    def _create(name, config):  # rates by length so scores vary across samples
        return MockModel(name, config, responder=lambda req: str(min(10, len(req.messages[-1].content) % 11)))

    result = train_grpo(GRPOStageConfig(
        model=str(tiny_models["causal"]), judge={"model": "scorejudge/x", "principles": ["Is it kind?"]}, dataset=exports["pairs"],
        output_dir=tmp_path / "grpo_judge", max_steps=2, per_device_train_batch_size=2, num_generations=2, max_completion_length=8,
    ))
    _check_stage(result)
    assert result.extra["judge"]["calls"] >= 4 and result.extra["judge"]["failures"] == 0


def test_interrupted_stage_resumes_from_its_checkpoint(tmp_path: Path, exports: dict, tiny_models: dict) -> None:
    """A stage rerun into the same output_dir continues from the newest checkpoint instead of step 0.

    The first run stops after 2 steps (as a killed run would, leaving checkpoint-2); the second asks
    for 4 and must train only steps 3-4, with metrics.jsonl holding each step once.
    """
    from cai_engine.training import load_stage_config, run_stage

    common = [f"model={tiny_models['causal']}", f"dataset={exports['sft']}", f"output_dir={tmp_path / 'sft'}",
              "per_device_train_batch_size=2", "max_length=96", "save_steps=1"]
    run_stage("sft", load_stage_config("sft", None, [*common, "max_steps=2"]))
    checkpoints = sorted(p.name for p in (tmp_path / "sft" / "trainer").glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-2"], checkpoints  # save_total_limit=1 keeps the newest only
    resumed = run_stage("sft", load_stage_config("sft", None, [*common, "max_steps=4"]))
    steps = [row["step"] for row in map(json.loads, (tmp_path / "sft" / "metrics.jsonl").read_text().splitlines()) if "loss" in row]
    assert steps == [1, 2, 3, 4], steps
    state = json.loads((tmp_path / "sft" / "trainer" / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4 and resumed.final_metrics.get("train_runtime") is not None
