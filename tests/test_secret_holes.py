"""Secrets that could reach OUT by side doors: an API key quoted in a failed record's error text,
credentials inside a ``base_url`` written into ``manifest.json`` or a run's ``run.yaml``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fake_provider import Faults, running_provider

from cai_engine.models.keys import redact, redact_url

CANARY = "sk-test-HOLE-canary-4567890"
FRAGMENTS = (CANARY, "HOLE-canary", CANARY[:12], CANARY[-12:])
PASSWORD = "hunter2-pw-canary"
CONSTITUTION = "name: t\nprinciples:\n  - id: a\n    critique: Find flaws.\n    revision: Fix them.\n"


def revise(tmp: Path, base_urls: list[str], out: Path, key: str | None = None) -> subprocess.CompletedProcess[str]:
    (tmp / "c.yaml").write_text(CONSTITUTION)
    (tmp / "p.jsonl").write_text("".join(json.dumps({"prompt": f"question {i}"}) + "\n" for i in range(3)))
    model = tmp / "model.yaml"
    model.write_text(yaml.safe_dump({"base_urls": base_urls, "api_key_env": "OPENAI_API_KEY", "max_retries": 1}))
    env = {**os.environ, "CAI_HOME": str(tmp / "home"), "HF_HUB_OFFLINE": "1", "OPENAI_API_KEY": key or "sk-unused-key-000000"}
    args = [sys.executable, "-m", "cai_engine", "revise", "-c", str(tmp / "c.yaml"), "-p", str(tmp / "p.jsonl"),
            "-o", str(out), "-m", "openai/gpt-4o-mini", "--model-config", str(model), "--rounds", "1"]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)


def files_under(*dirs: Path) -> list[Path]:
    return [f for d in dirs for f in d.rglob("*") if f.is_file()]


def test_key_quoted_in_a_failed_request_is_not_in_out(tmp_path: Path) -> None:
    """Every request fails for good with a 400 that quotes the Authorization header (whole and as
    ``sk-abc...xyz``); the failed records, manifest and output must not carry the key."""
    faults = Faults(rates={"400key": 1.0}, max_faults_per_body=1000)
    out = tmp_path / "out"
    with running_provider(faults=faults) as p:
        result = revise(tmp_path, [p.openai_base], out, key=CANARY)
        assert CANARY in p.seen_keys and p.counts["fault:400key"] >= 3  # the key was sent and quoted back
    records = [json.loads(line) for line in (out / "revisions.jsonl").read_text().splitlines() if line.strip()]
    assert len(records) == 3 and all(r["status"] == "failed" for r in records), result.stderr
    assert all("Invalid request (fake)" in r["error"] for r in records)  # the reason itself is kept
    files = files_under(out, tmp_path / "home")
    assert any(f.name == "manifest.json" for f in files)
    for f in files:
        data = f.read_bytes()
        for frag in FRAGMENTS:
            assert frag.encode() not in data, f"{frag!r} found in {f}"
    for frag in FRAGMENTS:
        assert frag not in result.stdout + result.stderr, f"{frag!r} in the output:\n{result.stdout}{result.stderr}"


def test_failure_record_scrubs_a_key_raised_outside_the_engine() -> None:
    """A worker's own exception (not an engine ``RequestFailed``, whose text is scrubbed already)
    quoting a resolved key: the failed record's ``error`` must not carry it."""
    from cai_engine.engine.runner import failure_record
    from cai_engine.models.keys import remember

    remember(CANARY)
    record = failure_record("id1", {"prompt": "p"}, RuntimeError(f"401: Incorrect API key provided: {CANARY} ({CANARY[:12]}...)"))
    assert record["status"] == "failed" and "Incorrect API key provided: ***" in record["error"]
    for frag in FRAGMENTS:
        assert frag not in json.dumps(record), f"{frag!r} in {record}"


def test_base_url_credentials_are_not_in_the_manifest(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with running_provider() as p:
        url = f"http://user:{PASSWORD}@127.0.0.1:{p.port}/v1"  # (a query would break the SDK's URL joins)
        result = revise(tmp_path, [url], out)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"]["revise"]["model"]["base_urls"] == [f"http://***@127.0.0.1:{p.port}/v1"]
    for f in files_under(out):
        assert PASSWORD.encode() not in f.read_bytes(), f"password found in {f}"
    assert PASSWORD not in result.stdout + result.stderr


def test_run_yaml_has_no_base_url_credentials(tmp_path: Path) -> None:
    """The run dir's resolved config: written before any stage runs, so a stage that fails at once
    (its model is unreachable) still shows what was written."""
    (tmp_path / "p.jsonl").write_text(json.dumps({"prompt": "hi"}) + "\n")
    config = {
        "name": "x", "constitution": "general", "prompts": {"train": "p.jsonl"}, "stages": ["revise"],
        "models": {"policy": {"spec": "openai/gpt-4o-mini", "api_key_env": "OPENAI_API_KEY", "max_retries": 0, "timeout_s": 2,
                              "base_urls": [f"https://admin:{PASSWORD}@127.0.0.1:9/v1?access_token={PASSWORD}"]}},
    }
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "CAI_HOME": str(tmp_path / "home"), "OPENAI_API_KEY": "sk-unused-key-000000"}
    result = subprocess.run([sys.executable, "-m", "cai_engine", "run", str(path)], env=env, capture_output=True, text=True, timeout=120)
    run_yaml = tmp_path / "x" / "run.yaml"
    assert run_yaml.exists(), result.stderr
    written = yaml.safe_load(run_yaml.read_text())
    assert written["models"]["policy"]["base_urls"] == ["https://***@127.0.0.1:9/v1"]
    for f in files_under(tmp_path / "x"):
        assert PASSWORD.encode() not in f.read_bytes(), f"password found in {f}"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:pass@host:8443/v1", "https://***@host:8443/v1"),
        ("https://token@host/v1", "https://***@host/v1"),
        ("https://host/v1?api_key=k&api-version=2024-06-01", "https://host/v1?api-version=2024-06-01"),
        ("https://host/v1?key=k&token=t&apikey=a&access_token=x&Api-Key=y", "https://host/v1"),
        ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
        ("https://host/v1?model=m#frag", "https://host/v1?model=m#frag"),
        ("local/smollm2", "local/smollm2"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_walks_nested_data_and_text() -> None:
    data = {"base_urls": ["https://u:p@h/v1"], "nested": [{"url": "https://h/x?token=t"}, ("see https://a:b@h2/ now", 3)],
            "n": 1, "none": None}
    assert redact(data) == {"base_urls": ["https://***@h/v1"], "nested": [{"url": "https://h/x"}, ("see https://***@h2/ now", 3)],
                            "n": 1, "none": None}
