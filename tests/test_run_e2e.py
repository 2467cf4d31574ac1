"""``cai run`` end to end: a tiny config through revise -> sft -> pairs -> dpo -> eval, killed mid-way.

Policy and judge are the real embedded SmolLM2-135M-Instruct (a random tiny model only emits
tokens that decode to nothing, which the revise stage rightly records as failures); answers are kept
to a few tokens and training to 2 steps so the whole loop fits a couple of minutes on 2 cores.
The run is killed with SIGKILL once the pairs stage has written records, rerun, and then every
stage's outputs, the manifest and the report with its plots are checked.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cai_engine.engine.records import read_jsonl

pytestmark = pytest.mark.slow

PROMPTS = [
    "How do I politely decline a wedding invitation?",
    "What is a good way to start learning to cook?",
    "My coworker keeps taking credit for my work. What should I do?",
    "Explain what a budget is to a teenager.",
]


def _config(tmp_path: Path) -> Path:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    heldout = tmp_path / "heldout.jsonl"
    heldout.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in ["How do I water a cactus?", "Suggest a name for a cat."]))
    config = {
        "name": "tiny",
        "constitution": "general",
        "prompts": {"train": str(prompts), "heldout": str(heldout)},
        "models": {"policy": "local/smollm2", "judge": "local/smollm2"},
        "generation": {"max_tokens": 12, "temperature": 0.0},
        "stages": ["revise", "sft", "pairs", "dpo", "eval"],
        # 12-token answers are all truncated and a 135M judge is near chance: opt out of the export filters
        "revise": {"rounds": 1, "few_shot": 0, "keep_truncated": True},
        "pairs": {"source": "revisions", "principles_per_judgment": 1, "min_confidence": 0.5, "drop_inconsistent": False,
                  "keep_truncated": True},
        "train": {
            "sft": {"max_steps": 2, "per_device_train_batch_size": 2, "max_length": 256},
            "dpo": {"max_steps": 2, "per_device_train_batch_size": 2, "max_length": 256},
        },
        "eval": {"limit": 2, "max_tokens": 12},
        "use_cache": False,  # a cached judge would finish the pairs stage before it can be killed
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _cai(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "cai_engine", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _ids(path: Path) -> list[str]:
    return [r["id"] for r in read_jsonl(path)]


def test_run_killed_mid_pairs_then_rerun_completes(tmp_path: Path, cai_test_home: Path, embedded_checkpoint: Path) -> None:
    config = _config(tmp_path)
    run_dir = tmp_path / "tiny"  # runs/NAME.yaml -> runs/NAME/: beside the config
    env = {**os.environ, "CAI_HOME": str(cai_test_home), "COLUMNS": "200"}

    # 1. start, kill -9 as soon as the pairs stage has a finished record
    first = _cai("run", str(config), env=env)
    pairs_file = run_dir / "pairs" / "pairs.jsonl"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and first.poll() is None:
        if pairs_file.exists() and pairs_file.stat().st_size > 0:
            break
        time.sleep(0.2)
    assert first.poll() is None, f"the run ended before it could be killed:\n{first.stdout.read() if first.stdout else ''}"
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    state = json.loads((run_dir / "state.json").read_text())
    assert state["stages"]["revise"]["status"] == "done" and state["stages"]["sft"]["status"] == "done"
    assert state["stages"]["pairs"]["status"] == "running"
    before_kill = set(_ids(pairs_file))
    assert before_kill

    # 2. rerun: finished stages are skipped, pairs resumes, the rest runs
    second = _cai("run", str(config), env=env)
    out, _ = second.communicate(timeout=900)
    assert second.returncode == 0, out
    assert "revise: up to date, skipped" in out and "sft: up to date, skipped" in out
    assert "pairs: resuming" in out

    # every stage done, records complete and unique
    state = json.loads((run_dir / "state.json").read_text())
    assert [s for s, e in state["stages"].items() if e["status"] == "done"] == ["revise", "sft", "pairs", "dpo", "eval"]
    revisions = _ids(run_dir / "revise" / "revisions.jsonl")
    assert len(set(revisions)) == len(PROMPTS) == len(revisions)
    pair_ids = _ids(pairs_file)
    assert len(pair_ids) == len(set(pair_ids)) == len(PROMPTS), "a pair was judged twice or lost"
    assert before_kill <= set(pair_ids)
    for stage in ("sft", "dpo"):
        model_dir = Path(state["stages"][stage]["outputs"]["model_dir"])
        assert any(model_dir.glob("*.safetensors")), f"{stage} saved no weights in {model_dir}"
        metrics = list(read_jsonl(Path(state["stages"][stage]["outputs"]["metrics"])))
        assert any("loss" in row for row in metrics), f"{stage} logged no loss"
    evaluation = json.loads((run_dir / "eval" / "eval.json").read_text())
    assert evaluation["winrate"]["prompts"] == 2
    assert evaluation["winrate"]["judged"] + evaluation["winrate"]["failed"] == 2
    assert evaluation["safety"]["trained"]["redteam_answers"] == 2

    # manifest: versions, hashes, counts, wall time per stage; no secrets to check here (local models)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert set(manifest["stages"]) == {"revise", "sft", "pairs", "dpo", "eval"}
    assert "torch" in json.dumps(manifest["packages"]) and manifest["stages"]["revise"]["constitution"]["hash"]
    assert all(manifest["stages"][s]["wall_s"] >= 0 for s in manifest["stages"])

    # report with its plots, each referenced from report.md
    report = (run_dir / "report.md").read_text()
    for plot in ("training_curves", "judge_confidence", "win_rates", "lengths"):
        png = run_dir / "plots" / f"{plot}.png"
        assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", plot
        assert f"plots/{plot}.png" in report
    assert "win rate vs base" in report

    # 3. a third run does nothing; `cai status` and `cai report` work on the dir
    third = _cai("run", str(config), env=env)
    out, _ = third.communicate(timeout=300)
    assert third.returncode == 0 and out.count("up to date, skipped") == 5, out
    status = subprocess.run([sys.executable, "-m", "cai_engine", "status", str(run_dir)], env=env, text=True, capture_output=True)
    assert status.returncode == 0 and status.stdout.count("done") == 5, status.stdout + status.stderr
