"""`cai judge` killed with SIGKILL mid-run, then rerun: every pair exactly once, none lost, same verdicts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from judge_fake_server import running_judge

from cai_engine.evaluation.judge_eval import SHIPPED_LABELS


def cai(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "cai_engine", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True) if path.exists() else []


def test_kill_9_then_resume_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    env = {**os.environ, "CAI_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    with running_judge(mode="faithful", good_word="e", latency_s=0.03) as provider:
        config = tmp_path / "judge.yaml"
        config.write_text(f"base_urls: ['{provider.openai_base}']\nmax_concurrency: 2\n")
        args = ["judge", "-c", "general", "--pairs-from", f"file:{SHIPPED_LABELS}", "--judge-model", "openai/fake",
                "--judge-config", str(config), "-k", "1", "--concurrency", "2", "--no-cache"]
        out = tmp_path / "run"
        pairs = out / "pairs.jsonl"

        proc = cai([*args, "-o", str(out)], env)
        deadline = time.monotonic() + 90
        while len(lines(pairs)) < 5 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.communicate()}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        written_before = sum(1 for line in lines(pairs) if line.endswith("\n"))  # a torn tail is redone
        assert 5 <= written_before < 40

        rerun = cai([*args, "-o", str(out)], env)
        _, rerun_err = rerun.communicate(timeout=180)
        assert rerun.returncode == 0, rerun_err

        reference = cai([*args, "-o", str(tmp_path / "reference")], env)
        _, stderr = reference.communicate(timeout=180)
        assert reference.returncode == 0, stderr

    records = [json.loads(line) for line in lines(pairs)]
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) == 40  # no duplicate line, no lost pair
    assert all(r["status"] == "ok" for r in records)
    summary = " ".join(rerun_err.split())
    assert f"{40 - written_before} new, {written_before} already done, 0 failed" in summary, summary[-300:]
    expected = {json.loads(line)["id"]: json.loads(line) for line in lines(tmp_path / "reference" / "pairs.jsonl")}
    assert set(expected) == set(ids)
    for record in records:
        assert record["p_a_better"] == expected[record["id"]]["p_a_better"]
        assert record["judgments"] == expected[record["id"]]["judgments"]
