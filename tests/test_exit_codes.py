"""Honest exit codes: a run whose records all fail is an error with no `next:` line, and a command
that fails before doing anything leaves no output folder behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def cai(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPENAI_API_KEY": "sk-test-exit-0000", "CAI_HOME": str(tmp / "home"), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "cai_engine", *args], capture_output=True, text=True, env=env,
                          timeout=120, cwd=tmp)


def prompts(tmp: Path, n: int = 3) -> Path:
    path = tmp / "p.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"question {i}?"}) + "\n" for i in range(n)))
    return path


def test_an_unreachable_endpoint_fails_the_command(tmp_path: Path) -> None:
    config = tmp_path / "m.yaml"  # port 9 (discard) on loopback: connection refused at once
    config.write_text(yaml.safe_dump({"base_urls": ["http://127.0.0.1:9/v1"], "max_retries": 0, "timeout_s": 2}))
    out = tmp_path / "out"
    result = cai(tmp_path, "revise", "-c", "general", "-p", str(prompts(tmp_path)), "-o", str(out), "-m", "openai/x",
                 "--model-config", str(config), "--rounds", "0", "--no-cache")
    assert result.returncode == 1, result.stderr
    assert "all 3 records failed" in result.stderr and "next:" not in result.stderr
    assert "Traceback" not in result.stderr


def test_some_failures_below_the_threshold_still_succeed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    ok = cai(tmp_path, "revise", "-c", "general", "-p", str(prompts(tmp_path)), "-o", str(out), "-m", "mock/echo",
             "--rounds", "0")
    assert ok.returncode == 0 and "next: cai export sft" in ok.stderr


def test_a_command_that_fails_at_start_leaves_no_output_folder(tmp_path: Path) -> None:
    out = tmp_path / "never"
    result = cai(tmp_path, "revise", "-c", "general", "-p", str(prompts(tmp_path)), "-o", str(out),
                 "-m", "openai/not-in-the-price-table", "--max-cost", "1")
    assert result.returncode == 2 and "prices" in result.stderr
    assert not out.exists()
