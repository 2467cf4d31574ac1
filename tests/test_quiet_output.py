"""Our commands print our progress and results only: library warnings, loggers and progress bars go
to the command's log file (shown with --verbose), and the trainer's per-step dicts are our own line."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from helpers_models import exports, tiny_models  # noqa: F401 (fixtures)

REPO = Path(__file__).resolve().parent.parent
THIRD_PARTY_BAR = re.compile(r"\d+%\|[^|]*\||it/s\]|examples/s\]|Generating train split|Saving the dataset")


def cai(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "160"}
    return subprocess.run([sys.executable, "-m", "cai_engine", *args], capture_output=True, text=True, env=env,
                          timeout=600, cwd=tmp)


def assert_quiet(result: subprocess.CompletedProcess[str]) -> None:
    terminal = result.stdout + result.stderr
    assert result.returncode == 0, terminal
    assert "Warning" not in terminal, terminal
    assert not THIRD_PARTY_BAR.search(terminal), terminal
    assert "{'loss'" not in terminal and '{"loss"' not in terminal, terminal


def test_revise_on_the_embedded_model_prints_only_our_lines(tmp_path: Path) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"prompt": "What is 2+2?"}) + "\n")
    out = tmp_path / "out"
    args = ["revise", "-c", "general", "-p", str(prompts), "-o", str(out), "--rounds", "0", "--max-tokens", "4",
            "--no-cache"]
    result = cai(tmp_path, *args)
    assert_quiet(result)
    assert "done 1 new" in result.stderr
    # The library's warning was not lost: it is in the command's log.
    assert "FutureWarning" in (out / "log.txt").read_text()
    export = cai(tmp_path, "export", "sft", str(out), "--out", str(tmp_path / "sft"), "--keep-truncated")  # 4 tokens
    assert_quiet(export)


def test_training_shows_our_step_line_not_the_trainers_dicts(tmp_path: Path, tiny_models: dict, exports: dict) -> None:  # noqa: F811
    out = tmp_path / "sft"
    result = cai(tmp_path, "train", "sft", "--out", str(out), "--set", f"model={tiny_models['causal']}",
                 "--set", f"dataset={exports['sft']}", "--set", "max_steps=2", "--set", "per_device_train_batch_size=2",
                 "--set", "max_length=96", "--set", "save_steps=0")
    assert_quiet(result)
    assert "train sft" in result.stderr and "2/2" in result.stderr and "loss" in result.stderr
    assert (out / "log.txt").exists()


def test_progress_lines_are_not_cut_at_80_columns_when_stderr_is_a_pipe(monkeypatch) -> None:
    """rich assumes 80 columns off a terminal, which cut the DPO line (``0:0… ETA 0:00…``)."""
    from cai_engine.logs import PIPE_WIDTH, stderr_console

    monkeypatch.delenv("COLUMNS", raising=False)
    assert stderr_console().width == PIPE_WIDTH  # pytest's captured stderr is not a terminal
    monkeypatch.setenv("COLUMNS", "90")
    assert stderr_console().width == 90
