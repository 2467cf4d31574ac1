"""A job run with a recognisable fake key leaves no trace of it in any file written or any output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fake_provider import Faults, running_provider

JOB = Path(__file__).with_name("batch_job.py")
CANARY = "sk-test-SECRET-canary-123"
FRAGMENTS = (CANARY, "SECRET-canary", CANARY[:12], CANARY[-12:])


def job(spec: str, base: str, tmp: Path, batch: bool, n: int) -> tuple[int, str]:
    env = {**os.environ, "FAKE_PROVIDER_KEY": CANARY, "CAI_HOME": str(tmp / "home"), "HF_HUB_OFFLINE": "1"}
    args = [sys.executable, str(JOB), spec, base, str(tmp / "batches") if batch else "-",
            str(tmp / "out" / f"{spec.split('/')[0]}-{'batch' if batch else 'online'}.jsonl"), str(n),
            str(tmp / "home" / f"{spec.split('/')[0]}-{'batch' if batch else 'online'}.sqlite")]
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    return proc.returncode, proc.stdout + proc.stderr


def test_fake_key_never_written_or_printed(tmp_path: Path) -> None:
    outputs: list[str] = []
    faults = Faults(rates={"429": 0.1, "500": 0.1, "malformed": 0.05}, batch_item_error_rate=0.2)
    with running_provider(api_key=CANARY, faults=faults) as p:
        for spec, base in (("openai/gpt-4o-mini", p.openai_base), ("anthropic/claude-haiku-4-5", p.url)):
            for batch in (False, True):
                rc, out = job(spec, base, tmp_path, batch, 30)
                outputs.append(out)
                assert rc == 0, out
        p.api_key = "a-different-key"  # now every request is refused with a 401 that quotes our key
        rc, out = job("openai/gpt-4o-mini", p.openai_base, tmp_path / "bad", False, 5)
        outputs.append(out)
        assert rc == 1 and "authentication failed (HTTP 401)" in out and "$FAKE_PROVIDER_KEY" in out
        assert CANARY in p.seen_keys  # the key really was sent on the wire
    files = [f for f in tmp_path.rglob("*") if f.is_file()]
    assert any(f.suffix == ".sqlite" for f in files) and any(f.name.startswith("batch-") for f in files)
    assert len([f for f in files if f.suffix == ".jsonl"]) >= 4
    print(f"\nscanned {len(files)} files ({sum(f.stat().st_size for f in files)} bytes) and "
          f"{sum(len(o) for o in outputs)} chars of output")
    for f in files:
        data = f.read_bytes()
        for frag in FRAGMENTS:
            assert frag.encode() not in data, f"{frag!r} found in {f}"
    for out in outputs:
        for frag in FRAGMENTS:
            assert frag not in out, f"{frag!r} found in output:\n{out}"
