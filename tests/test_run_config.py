"""Run YAML errors: one line naming the file (and line where there is one) and what to change,
before any stage starts or any model loads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cai_engine.errors import ConfigError
from cai_engine.runs.config import load_run_config

GOOD = "name: x\nconstitution: general\nprompts: {train: p.jsonl}\nstages: [revise, sft, pairs, dpo, eval]\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: x\nconstitution: general\nprompts: {train: p.jsonl\nstages: [revise]\n", ":4:7: invalid YAML"),
        (GOOD + "revise: {roundz: 2}\n", ":5: revise.roundz: Extra inputs are not permitted"),
        ("name: x\nconstitution: general\nprompts: {train: p.jsonl}\nstages: [revise, dpo]\n", "dpo trains on judged pairs: add 'pairs'"),
        ("name: x\nconstitution: general\nprompts: {train: p.jsonl}\nstages: [sft, revise]\n", "stages must follow the order"),
        ("name: x\nconstitution: general\nprompts: {train: p.jsonl}\nstages: [revise, pairs, reward, ppo, grpo]\n", "at most one RL stage"),
        ("name: x\nconstitution: general\nprompts: {train: p.jsonl}\nstages: [revise, sft]\ntrain: {sft: {model: m}}\n",
         "train.sft: model are wired by the run"),
        ("name: x\nconstitution: general\nprompts: {train: p.jsonl}\nstages: [revise, pairs, ppo]\n", "ppo needs a reward model"),
        ("- just\n- a list\n", "must be a mapping"),
    ],
)
def test_bad_run_configs_are_one_clear_line(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_run_config(path)
    message = str(info.value)
    assert message.startswith(str(path)) and expected in message and "\n" not in message


def test_good_config_resolves_paths_beside_the_file(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "x.yaml"
    path.parent.mkdir()
    path.write_text(GOOD)
    config, run_dir = load_run_config(path)
    assert run_dir == path.parent / "x" and config.prompts.train == path.parent / "p.jsonl"


def test_missing_prompt_file_stops_before_any_stage(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(GOOD)
    result = subprocess.run([sys.executable, "-m", "cai_engine", "run", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "prompts.train" in result.stderr and "p.jsonl not found" in result.stderr
    assert "running" not in result.stdout + result.stderr and not (tmp_path / "x").exists()
