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


RUN = "constitution: general\nprompts: {train: p.jsonl}\nstages: [revise]\nmodels: {policy: mock/echo, judge: mock/echo}\nrevise: {rounds: 1}\n"


def cai_run(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cai_engine", "run", str(path)], capture_output=True, text=True, timeout=120)


def user_files(folder: Path) -> dict[str, str]:
    """A folder of someone's files, one of them where the revise stage would put its folder."""
    (folder / "revise").mkdir(parents=True)
    files = {"notes.txt": "my notes", "revise/keep.txt": "do not delete", "manifest.json": "{}", "report.md": "mine"}
    for name, text in files.items():
        (folder / name).write_text(text)
    return files


@pytest.mark.parametrize("where", ["name: .", "name: mine", "name: x\nout_dir: mine"])
def test_run_onto_a_folder_that_is_not_a_run_is_refused(tmp_path: Path, where: str) -> None:
    (tmp_path / "p.jsonl").write_text('{"prompt": "hi"}\n')
    folder = tmp_path if where == "name: ." else tmp_path / "mine"
    files = user_files(folder)
    path = tmp_path / "x.yaml"
    path.write_text(f"{where}\n{RUN}")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result = cai_run(path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().count("\n") == 0 and "not a run dir (no state.json)" in result.stderr
    assert str(folder.resolve()) in result.stderr and "Traceback" not in result.stderr
    assert "running" not in result.stdout + result.stderr
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written or deleted
    assert all((folder / name).read_text() == text for name, text in files.items())


def test_earlier_run_and_empty_folder_are_fine(tmp_path: Path) -> None:
    (tmp_path / "p.jsonl").write_text('{"prompt": "hi"}\n')
    (tmp_path / "empty").mkdir()
    path = tmp_path / "x.yaml"
    path.write_text(f"name: empty\n{RUN}")
    first = cai_run(path)
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "empty" / "state.json").exists() and "revise: running" in first.stdout + first.stderr
    again = cai_run(path)  # the folder is now this run's dir: a rerun is welcome
    assert again.returncode == 0, again.stderr
    assert "revise: up to date, skipped" in again.stdout + again.stderr


def test_config_inside_its_own_run_dir_as_run_yaml_is_refused(tmp_path: Path) -> None:
    """``name: .`` with the config named run.yaml: the run would write its resolved config over it."""
    (tmp_path / "p.jsonl").write_text('{"prompt": "hi"}\n')
    (tmp_path / "state.json").write_text('{"stages": {}}')
    path = tmp_path / "run.yaml"
    text = f"name: .\n{RUN}"
    path.write_text(text)
    result = cai_run(path)
    assert result.returncode == 2 and "writes run.yaml over this config file" in result.stderr
    assert path.read_text() == text
