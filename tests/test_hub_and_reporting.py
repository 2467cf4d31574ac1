"""Results where people look: report_to=tensorboard writes event files holding the loss under the stage
folder; --push-to-hub without a token or a network is one line and keeps the local copy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from helpers_models import exports, tiny_models  # noqa: F401 (fixtures)

REPO = Path(__file__).resolve().parent.parent
TINY = {"max_steps": 2, "per_device_train_batch_size": 2, "max_length": 96, "save_steps": 0}


def test_tensorboard_event_files_hold_the_loss(tmp_path: Path, tiny_models: dict, exports: dict) -> None:  # noqa: F811
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import cai_engine

    out = tmp_path / "sft"
    cai_engine.train("sft", model=str(tiny_models["causal"]), dataset=str(exports["sft"]), output_dir=str(out),
                     report_to="tensorboard", **TINY)
    events = sorted(out.rglob("events.out.tfevents.*"))
    assert events and all(str(e).startswith(str(out)) for e in events)
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    assert "train/loss" in acc.Tags()["scalars"]
    assert len(acc.Scalars("train/loss")) == 2


def cai(tmp: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    base.update({"PYTHONPATH": str(REPO), "HF_HOME": str(tmp / "hf-home"), "HF_HUB_OFFLINE": "1", **env})
    return subprocess.run([sys.executable, "-m", "cai_engine", *args], capture_output=True, text=True, env=base,
                          timeout=300, cwd=tmp)


def test_push_to_hub_without_token_or_network_is_one_line_and_keeps_the_export(tmp_path: Path) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"q{i}?"}) + "\n" for i in range(3)))
    assert cai(tmp_path, "revise", "-c", "general", "-p", str(prompts), "-o", "out", "-m", "mock/echo",
               "--rounds", "1").returncode == 0
    no_token = cai(tmp_path, "export", "sft", "out", "--out", "sft", "--push-to-hub", "me/my-sft")
    assert no_token.returncode == 2 and "Traceback" not in no_token.stderr
    line = [ln for ln in no_token.stderr.splitlines() if ln.startswith("error:")]
    assert len(line) == 1 and "HF_TOKEN" in line[0] and "kept" in line[0]
    assert (tmp_path / "sft" / "dataset").is_dir() and (tmp_path / "sft" / "data.parquet").is_file()

    offline = cai(tmp_path, "export", "sft", "out", "--out", "sft2", "--push-to-hub", "me/my-sft",
                  HF_TOKEN="hf_not_a_real_token_0000")
    assert offline.returncode == 2 and "Traceback" not in offline.stderr
    assert "failed" in offline.stderr and "kept" in offline.stderr
    assert "hf_not_a_real_token_0000" not in offline.stderr
    assert (tmp_path / "sft2" / "dataset").is_dir()
