"""`cai revise --batch` fills provider batches like `cai judge --batch` does (issue 15): the runner keeps the
batch coordinator's suggested number of items open, not the model's max_concurrency (8 a batch)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fake_provider import reply_text, running_provider


def test_revise_batch_puts_all_pending_prompts_in_one_batch(tmp_path: Path) -> None:
    prompts = [f"batch size prompt {i}" for i in range(24)]
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    with running_provider() as provider:
        (tmp_path / "model.yaml").write_text(f"base_urls: [{provider.openai_base}]\napi_key_env: FAKE_KEY\n")
        env = {**os.environ, "FAKE_KEY": "sk-batch-size", "CAI_HOME": str(tmp_path / "home"), "NO_COLOR": "1"}
        out = tmp_path / "out"
        proc = subprocess.run(
            [sys.executable, "-m", "cai_engine", "revise", "-c", "general", "-p", str(tmp_path / "prompts.jsonl"),
             "-o", str(out), "-m", "openai/gpt-4o-mini", "--model-config", str(tmp_path / "model.yaml"),
             "--rounds", "0", "--batch", "--no-cache"],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        batches = [list(b) for b in provider.batch_custom_ids]
    assert proc.returncode == 0, proc.stderr[-2000:]
    sizes = [len(b) for b in batches]
    print("\nbatch sizes:", sizes)
    assert sizes == [24]  # before the fix: [8, 8, 8] (sized by max_concurrency)
    records = [json.loads(x) for x in (out / "revisions.jsonl").read_text().splitlines()]
    assert sorted(r["final_response"] for r in records) == sorted(reply_text(p) for p in prompts)
