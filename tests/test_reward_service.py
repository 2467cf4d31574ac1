"""`cai reward serve`: the constitution judge as a reward service in OpenRLHF's remote-reward payload,
tested as OpenRLHF's client calls it (a JSON POST to the URL it was given)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from helpers_models import exports, preference_rows, save_export, tiny_models  # noqa: F401 (fixtures)
from judge_fake_server import running_judge

REPO = Path(__file__).resolve().parent.parent
READY = re.compile(r"on http://([\d.]+):(\d+)/reward")


class Service:
    def __init__(self, tmp: Path, *args: str):
        env = {**os.environ, "PYTHONPATH": str(REPO), "OPENAI_API_KEY": "sk-test-reward", "COLUMNS": "200"}
        self.proc = subprocess.Popen([sys.executable, "-m", "cai_engine", "reward", "serve", "--port", "0",
                                      "-o", str(tmp / "svc"), *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp)
        self.url = self._wait_ready()

    def _wait_ready(self, timeout: float = 240) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line and self.proc.poll() is not None:
                raise AssertionError("service exited: " + "".join(seen))
            seen.append(line)
            match = READY.search(line)
            if match:
                return f"http://{match.group(1)}:{match.group(2)}/reward"
        raise AssertionError("service did not start: " + "".join(seen))

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=60)


def openrlhf_post(url: str, queries: list[str], prompts: list[str], labels: list[str] | None = None) -> dict:
    """What OpenRLHF's remote reward function sends (``requests.post(url, json=...)``)."""
    payload = {"query": queries, "prompts": prompts, **({"labels": labels} if labels is not None else {})}
    response = httpx.post(url, json=payload, headers={"Content-Type": "application/json"}, timeout=120)
    response.raise_for_status()
    return response.json()


def test_pairwise_rewards_follow_the_judge_against_the_reference(tmp_path: Path) -> None:
    with running_judge(mode="faithful", p_good=0.9) as judge:
        config = tmp_path / "judge.yaml"
        config.write_text(yaml.safe_dump({"base_urls": [judge.openai_base]}))
        service = Service(tmp_path, "-c", "general", "-j", "openai/judge", "--judge-config", str(config), "-k", "1")
        try:
            prompt = "What is the capital of France? "
            body = openrlhf_post(service.url, [prompt + "Paris.", prompt + "Lyon."], [prompt, prompt],
                                 labels=["Lyon.", "Paris."])
            assert set(body) == {"rewards", "scores", "extra_logs"}
            good, bad = body["rewards"]
            # P(Paris better) ~ 0.9 from the judge's letter logprobs (top-5 alternatives), in both orders.
            assert good > 0.7 and bad == pytest.approx(-good, abs=1e-6)
            assert body["extra_logs"]["judge_failed"] == [0, 0]
            # Without labels and without a reference model the sample fails softly (reward 0), never the batch.
            unlabeled = openrlhf_post(service.url, [prompt + "Paris."], [prompt])
            assert unlabeled["rewards"] == [0.0] and unlabeled["extra_logs"]["judge_failed"] == [1]
            bad_request = httpx.post(service.url, content=b"not json", timeout=30)
            assert bad_request.status_code == 400
            health = httpx.get(service.url.replace("/reward", "/health"), timeout=30).json()
            assert health["judge"] == "openai/judge" and health["mode"] == "pairwise"
        finally:
            assert service.stop() == 0
        assert judge.counts["chat"] == 2 * 2  # 2 samples x 2 orders x 1 principle; the 400 cost nothing


@pytest.mark.slow
def test_the_embedded_judge_answers_a_batch(tmp_path: Path) -> None:
    service = Service(tmp_path, "-c", "general", "-j", "local/smollm2", "-k", "1")
    try:
        prompts = ["How do I boil an egg? ", "Name a planet. "]
        body = openrlhf_post(service.url, [prompts[0] + "Simmer it for 9 minutes.", prompts[1] + "Mars."], prompts,
                             labels=["Microwave it whole.", "The Moon."])
        assert len(body["rewards"]) == len(body["scores"]) == 2
        assert all(-1.0 <= r <= 1.0 for r in body["rewards"])
        # A 135M judge reads its verdict from logprobs: each sample is scored, none fails the batch.
        assert body["extra_logs"]["judge_failed"] == [0, 0], body
    finally:
        assert service.stop() == 0


def test_the_built_in_grpo_stage_takes_its_rewards_from_the_service(tmp_path: Path, tiny_models: dict,
                                                                    exports: dict) -> None:
    """``reward_url``: GRPO's sampled completions are scored by the service (pairwise against the
    reference model's answer), as an OpenRLHF trainer's would be."""
    from cai_engine.training.grpo import GRPOStageConfig, train_grpo

    def longer_wins(blocks: dict[str, str]) -> float:  # varied rewards, so the group advantages are not all 0
        return 0.9 if len(blocks.get("A", "")) > len(blocks.get("B", "")) else 0.1

    with running_judge(decide=longer_wins) as judge:
        config = tmp_path / "judge.yaml"
        config.write_text(yaml.safe_dump({"base_urls": [judge.openai_base]}))
        service = Service(tmp_path, "-c", "general", "-j", "openai/judge", "--judge-config", str(config), "-k", "1",
                          "--reference-model", "mock/reference")
        try:
            result = train_grpo(GRPOStageConfig(
                model=str(tiny_models["causal"]), reward_url=service.url, dataset=exports["pairs"],
                output_dir=tmp_path / "grpo", max_steps=2, per_device_train_batch_size=2, num_generations=2,
                max_completion_length=8,
            ))
            health = httpx.get(service.url.replace("/reward", "/health"), timeout=30).json()
        finally:
            assert service.stop() == 0
    stats = result.extra["reward_service"]
    assert stats["calls"] >= 4 and stats["failures"] == 0, stats
    assert judge.counts["chat"] >= 2 * stats["calls"]  # each sample judged in both orders
    rows = [json.loads(line) for line in result.metrics_path.read_text().splitlines() if line.strip()]
    assert [r["step"] for r in rows if "loss" in r][:2] == [1, 2]
    assert any(key.startswith("reward") for r in rows for key in r), rows[0]
    assert health["judge"] == "openai/judge"


def test_a_reward_service_that_is_down_gives_missing_rewards_not_a_crash() -> None:
    import asyncio

    from cai_engine.training.rl_rewards import remote_reward_func

    reward = remote_reward_func("http://127.0.0.1:9/reward", timeout_s=5)  # port 9 (discard): refused
    prompts = [[{"role": "user", "content": "Hi?"}], "Name a colour."]
    assert asyncio.run(reward(prompts, ["Hello.", [{"role": "assistant", "content": "Red."}]])) == [None, None]
    assert reward.stats == {"calls": 0, "failures": 2}
