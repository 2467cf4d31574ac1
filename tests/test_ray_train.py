"""`cai train sft --ray`: the TRL stage under Ray Train's TorchTrainer with 2 CPU workers (gloo);
rank 0 writes the model and metrics where the single-process stage writes them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers_models import exports, tiny_models  # noqa: F401 (fixtures)

pytest.importorskip("ray.train")
REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_sft_on_two_ray_workers_saves_a_model_and_metrics(tmp_path: Path, tiny_models: dict, exports: dict) -> None:  # noqa: F811
    out = tmp_path / "sft"
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_ADDRESS": ""}
    env.pop("RAY_ADDRESS")
    result = subprocess.run(
        [sys.executable, "-m", "cai_engine", "train", "sft", "--out", str(out), "--ray", "--ray-workers", "2",
         "--set", f"model={tiny_models['causal']}", "--set", f"dataset={exports['sft']}", "--set", "max_steps=2",
         "--set", "per_device_train_batch_size=2", "--set", "max_length=96", "--set", "save_steps=0"],
        capture_output=True, text=True, env=env, timeout=420, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "model" / "adapter_config.json").is_file()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2]  # rank 0 alone wrote the metrics, each step once
    assert "sft done" in result.stderr
