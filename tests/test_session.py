"""The per-command Session: one budget across engines and reruns, the OUT lock, the graceful stop,
kill -9 safety of records and ledger, and the cache keyed by the weights' fingerprint.

Commands run as real processes (``python -m cai_engine``) against the fake provider on 127.0.0.1,
so signals, locks and the ledger file are exercised exactly as a user meets them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import yaml
from fake_provider import FakeProvider, running_provider
from judge_fake_server import running_judge

from cai_engine.engine.ledger import LEDGER_FILE
from cai_engine.engine.outlock import OutLock, OutLocked
from cai_engine.engine.records import read_jsonl

REPO = Path(__file__).resolve().parent.parent
# Input 1000 USD / Mtok, output 2000: a request of the fake provider costs about 1-3 cents.
PRICES = {"input_per_mtok": 1000.0, "output_per_mtok": 2000.0}


def model_config(tmp: Path, name: str, base_url: str, **extra: object) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"base_urls": [base_url], "prices": PRICES, "timeout_s": 10, "max_retries": 1, **extra}))
    return path


def prompts_file(tmp: Path, n: int) -> Path:
    path = tmp / f"prompts-{n}.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Question number {i}: what is {i} plus {i}?"}) + "\n" for i in range(n)))
    return path


def env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "OPENAI_API_KEY": "sk-test-session-0000", "CAI_HOME": str(tmp / "home"),
            "PYTHONPATH": str(REPO), "COLUMNS": "200"}


def cai(tmp: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cai_engine", *args], capture_output=True, text=True,
                          env=env(tmp), timeout=timeout, cwd=tmp)


def cai_background(tmp: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "cai_engine", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env(tmp), cwd=tmp)


def revise_args(tmp: Path, prompts: Path, out: Path, config: Path, *extra: str) -> list[str]:
    return ["revise", "-c", "general", "-p", str(prompts), "-o", str(out), "--model", "openai/fake",
            "--model-config", str(config), "--rounds", "0", "--max-tokens", "32", "--few-shot", "0", "--no-cache", *extra]


def ok_lines(path: Path) -> list[dict]:
    return [r for r in read_jsonl(path) if r.get("status") == "ok"]


def wait_for_lines(path: Path, n: int, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and sum(1 for _ in read_jsonl(path)) >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"command ended early: {proc.communicate()}")
        time.sleep(0.05)
    raise AssertionError(f"{path} did not reach {n} lines")


def ledger(out: Path) -> dict:
    return json.loads((out / LEDGER_FILE).read_text())


# ---- one budget --------------------------------------------------------------------------------

class SeededProvider(FakeProvider):
    """A policy whose two samples of one prompt differ (the plain fake echoes the prompt only)."""

    def chat_completion(self, req: dict) -> dict:
        body = super().chat_completion(req)
        body["choices"][0]["message"]["content"] += f" (sample {req.get('seed')})"
        return body


@contextlib.contextmanager
def seeded_policy() -> Iterator[FakeProvider]:
    provider = SeededProvider().start()
    try:
        yield provider
    finally:
        provider.stop()


def test_policy_and_judge_share_one_budget_and_reruns_continue_from_it(tmp_path: Path) -> None:
    with running_judge(mode="faithful") as provider, seeded_policy() as policy_server:
        policy = model_config(tmp_path, "policy", policy_server.openai_base, max_concurrency=2)
        judge = model_config(tmp_path, "judge", provider.openai_base, max_concurrency=2)
        prompts = prompts_file(tmp_path, 40)
        out = tmp_path / "pairs"
        args = ["judge", "-c", "general", "--pairs-from", f"samples:{prompts}", "-o", str(out),
                "--policy-model", "openai/policy", "--policy-config", str(policy),
                "--judge-model", "openai/judge", "--judge-config", str(judge), "-k", "1", "--concurrency", "2",
                "--no-cache", "--max-tokens", "16"]
        budget = 0.5
        first = cai(tmp_path, *args, "--max-cost", str(budget))
        assert first.returncode != 0 and "--max-cost 0.5 USD reached" in first.stderr, first.stderr
        spent = ledger(out)
        by_model = spent["by_model"]
        # Both models charged the one ledger, and the run stopped on their sum: neither alone reached it.
        assert set(by_model) == {"openai/policy", "openai/judge"}
        assert spent["spent_usd"] >= budget and all(v < budget for v in by_model.values())
        records = list(read_jsonl(out / "pairs.jsonl"))
        assert spent["records_usd"] == pytest.approx(sum(r["cost_usd"] for r in records), abs=1e-6)
        assert 0 < len(records) < 40

        def sent() -> int:
            return provider.counts["chat"] + policy_server.counts["chat"]

        before = sent()
        again = cai(tmp_path, *args, "--max-cost", str(budget))
        assert again.returncode != 0 and "earlier runs on this output" in again.stderr, again.stderr
        assert sent() == before  # the same budget sends nothing new

        more = cai(tmp_path, *args, "--max-cost", "1000")
        assert more.returncode == 0, more.stderr
        assert sent() > before
        assert len({r["id"] for r in ok_lines(out / "pairs.jsonl")}) == 40
        final = ledger(out)
        assert final["spent_usd"] > spent["spent_usd"]
        assert final["records_usd"] == pytest.approx(sum(r.get("cost_usd", 0.0) for r in read_jsonl(out / "pairs.jsonl")), abs=1e-6)


def test_max_cost_on_an_unpriced_model_is_refused_in_one_line(tmp_path: Path) -> None:
    prompts = prompts_file(tmp_path, 2)
    result = cai(tmp_path, "revise", "-c", "general", "-p", str(prompts), "-o", str(tmp_path / "o"),
                 "--model", "openai/some-model-not-in-the-table", "--max-cost", "1")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "prices" in lines[0] and "--model-config" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


# ---- graceful stop -----------------------------------------------------------------------------

@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_saves_the_requests_in_flight_and_prints_the_resume_command(tmp_path: Path, signum: int, code: int) -> None:
    with running_provider(latency_s=0.3) as provider:
        config = model_config(tmp_path, "m", provider.openai_base, max_concurrency=8)
        prompts = prompts_file(tmp_path, 200)
        out = tmp_path / "out"
        proc = cai_background(tmp_path, *revise_args(tmp_path, prompts, out, config, "--concurrency", "8"))
        wait_for_lines(out / "revisions.jsonl", 10, proc)
        proc.send_signal(signum)
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == code, stderr
        assert "resume with: cai revise" in stderr and "records saved" in stderr, stderr
        records = list(read_jsonl(out / "revisions.jsonl"))
        # Every request that reached the provider (paid) became a saved record: none was thrown away.
        assert provider.counts["chat"] == len(records) == len({r["id"] for r in records})
        assert all(r["status"] == "ok" for r in records) and len(records) < 200
        # The printed command resumes: it finishes the rest and duplicates nothing.
        resumed = cai(tmp_path, *revise_args(tmp_path, prompts, out, config, "--concurrency", "8"))
        assert resumed.returncode == 0, resumed.stderr
        final = ok_lines(out / "revisions.jsonl")
        assert len(final) == 200 and len({r["id"] for r in final}) == 200


def test_a_second_ctrl_c_exits_at_once(tmp_path: Path) -> None:
    with running_provider(latency_s=30.0) as provider:
        config = model_config(tmp_path, "m", provider.openai_base, max_concurrency=4, timeout_s=60)
        prompts = prompts_file(tmp_path, 20)
        out = tmp_path / "out"
        proc = cai_background(tmp_path, *revise_args(tmp_path, prompts, out, config, "--concurrency", "4", "--grace", "60"))
        deadline = time.monotonic() + 30
        while provider.counts["chat"] < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.5)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 130, stderr
        assert time.monotonic() - started < 15.0  # did not wait for the 30 s replies or the 60 s grace
        assert "resume with" in stderr


# ---- the OUT lock ------------------------------------------------------------------------------

HOLDER = """
import sys, time
from cai_engine.engine.outlock import OutLock
OutLock(sys.argv[1]).acquire(command="holder-process")
print("held", flush=True)
time.sleep(120)
"""


def test_a_second_process_on_one_out_is_refused_and_a_killed_holder_is_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True, env=env(tmp_path))
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        prompts = prompts_file(tmp_path, 2)
        result = cai(tmp_path, "revise", "-c", "general", "-p", str(prompts), "-o", str(out), "--model", "mock/echo")
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert f"in use by process {holder.pid}" in result.stderr and "holder-process" in result.stderr, result.stderr
        with pytest.raises(OutLocked):
            OutLock(out).acquire()
    finally:
        holder.kill()
        holder.wait()
    lock = OutLock(out).acquire()  # the kernel dropped the dead holder's lock
    assert lock.took_over is not None and lock.took_over["pid"] == holder.pid
    lock.release()
    result = cai(tmp_path, "revise", "-c", "general", "-p", str(prompts), "-o", str(out), "--model", "mock/echo",
                 "--rounds", "0")
    assert result.returncode == 0, result.stderr


# ---- kill -9 -----------------------------------------------------------------------------------

def test_kill_9_loses_nothing_duplicates_nothing_and_the_ledger_matches_the_records(tmp_path: Path) -> None:
    with running_provider(latency_s=0.05) as provider:
        config = model_config(tmp_path, "m", provider.openai_base, max_concurrency=16)
        prompts = prompts_file(tmp_path, 400)
        out = tmp_path / "out"
        args = revise_args(tmp_path, prompts, out, config, "--concurrency", "16", "--max-cost", "1000")
        proc = cai_background(tmp_path, *args)
        wait_for_lines(out / "revisions.jsonl", 120, proc)
        proc.kill()
        proc.wait()
        assert cai(tmp_path, *args).returncode == 0
    records = list(read_jsonl(out / "revisions.jsonl"))
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) == 400 and all(r["status"] == "ok" for r in records)
    spent = ledger(out)
    assert spent["records_usd"] == pytest.approx(sum(r["cost_usd"] for r in records), abs=1e-6)
    assert spent["by_model"] == pytest.approx({"openai/fake": spent["spent_usd"]}, abs=1e-6)
    assert spent["spent_usd"] >= spent["records_usd"]


# ---- cache keyed by weights ----------------------------------------------------------------------

async def test_a_checkpoint_retrained_at_the_same_path_misses_the_cache(tmp_path: Path) -> None:
    from helpers_models import build_tiny_llama, embedded_tokenizer

    from cai_engine.engine.session import Session
    from cai_engine.models.base import ChatRequest, Message, SamplingParams

    tokenizer = embedded_tokenizer()
    ckpt = build_tiny_llama(tmp_path / "ckpt", tokenizer, seed=0)
    request = ChatRequest(messages=[Message(role="user", content="hello")], params=SamplingParams(max_tokens=4))

    async def ask() -> tuple[int, int]:
        async with Session(cache_path=tmp_path / "cache.sqlite") as session:
            engine = session.engine(f"local/{ckpt}")
            await engine.generate(request)
            return engine.stats.requests, engine.stats.cached

    assert await ask() == (1, 0)
    assert await ask() == (0, 1)  # same weights: served from the cache
    time.sleep(0.01)
    build_tiny_llama(ckpt, tokenizer, seed=1)  # retrained in place
    assert await ask() == (1, 0)
