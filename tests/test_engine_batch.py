"""Provider Batch APIs through Engine.generate: OpenAI and Anthropic, item failures, kill -9 and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from fake_provider import reply_text, running_provider

JOB = Path(__file__).with_name("batch_job.py")
KEY = "sk-test-batch-key-0001"


def run_job(spec: str, base: str, tmp: Path, n: int, *extra: str, wait: bool = True) -> subprocess.Popen[str]:
    env = {**os.environ, "FAKE_PROVIDER_KEY": KEY, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, str(JOB), spec, base, str(tmp / "batches"), str(tmp / "out.jsonl"),
                             str(n), *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if wait:
        out, _ = proc.communicate(timeout=120)
        print(out)
        assert proc.returncode == 0, out
    return proc


def check_records(tmp: Path, n: int) -> None:
    lines = [json.loads(x) for x in (tmp / "out.jsonl").read_text().splitlines()]
    ids = Counter(r["id"] for r in lines)
    assert len(ids) == n and max(ids.values()) == 1
    for rec in lines:
        assert rec["status"] == "ok"
        assert rec["answer"].endswith(reply_text(rec["prompt"]))


@pytest.mark.parametrize("provider_kind", ["openai", "anthropic"])
def test_batch_mode_with_failed_items_retried_normally(tmp_path: Path, provider_kind: str) -> None:
    with running_provider(api_key=KEY) as p:
        p.faults.batch_item_error_rate = 0.2
        spec, base = ("openai/gpt-4o-mini", p.openai_base) if provider_kind == "openai" else (
            "anthropic/claude-haiku-4-5", p.url)
        run_job(spec, base, tmp_path, 25)
        creates = p.counts["batches.create"] + p.counts["messages.batches.create"]
        direct = p.counts["chat"] + p.counts["messages"]
        all_ids = [c for batch in p.batch_custom_ids for c in batch]
    check_records(tmp_path, 25)
    assert creates == 3 and len(all_ids) == 25 == len(set(all_ids))  # 10 + 10 + 5, nothing twice
    assert 1 <= direct <= 12  # ~20% failed items went through the normal path, one request each
    assert len(list((tmp_path / "batches").glob("batch-*.json"))) == 3


@pytest.mark.parametrize("provider_kind", ["openai", "anthropic"])
def test_kill_9_while_polling_then_rerun_submits_nothing_twice(tmp_path: Path, provider_kind: str) -> None:
    with running_provider(api_key=KEY) as p:
        p.hold_batches = True  # batches stay in progress: the job is polling when we kill it
        spec, base = ("openai/gpt-4o-mini", p.openai_base) if provider_kind == "openai" else (
            "anthropic/claude-haiku-4-5", p.url)
        proc = run_job(spec, base, tmp_path, 25, wait=False)
        deadline = time.time() + 60
        while len(list((tmp_path / "batches").glob("batch-*.json"))) < 3 or len(p.batch_custom_ids) < 3:
            assert time.time() < deadline and proc.poll() is None, "job did not submit its batches"
            time.sleep(0.05)
        time.sleep(0.3)  # let it poll a few times
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert not (tmp_path / "out.jsonl").exists() or (tmp_path / "out.jsonl").read_text() == ""
        created_before = len(p.batch_custom_ids)

        p.hold_batches = False
        run_job(spec, base, tmp_path, 25)
        all_ids = [c for batch in p.batch_custom_ids for c in batch]
        assert len(p.batch_custom_ids) == created_before == 3  # the rerun resumed, it did not resubmit
        assert len(all_ids) == len(set(all_ids)) == 25
        assert p.counts["chat"] + p.counts["messages"] == 0  # everything came from the batches
    check_records(tmp_path, 25)
