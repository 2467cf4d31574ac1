"""Micro-batching benchmark for the local backend: one-at-a-time vs concurrent, same run.

The same prompts, greedy, same ``max_tokens``, go through the embedded model twice:
(a) sequential awaits (each request alone in its batch) and (b) ``asyncio.gather`` of all of them
(the micro-batcher groups them, up to ``--batch-size`` sequences). Prints generated tokens/s for
both and the ratio, checks that the greedy texts are identical, and writes
``benchmarks/results/local_batching.json``.

    python benchmarks/local_batching.py            # 32 prompts, max_tokens 48
    python benchmarks/local_batching.py --quick    # 8 prompts, max_tokens 24
    python benchmarks/local_batching.py --spec local/PATH --device cuda
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from pathlib import Path

PROMPTS = [
    "What is the capital of France?",
    "Give me three tips for staying focused while studying.",
    "Explain photosynthesis in one sentence.",
    "Write a haiku about autumn leaves.",
    "What is 12 times 7?",
    "Suggest a name for a friendly robot.",
    "How do I boil an egg?",
    "Translate 'good morning' into Spanish.",
    "Why is the sky blue?",
    "List two benefits of regular exercise.",
    "What does a librarian do?",
    "Describe the taste of a lemon.",
    "Write a short apology for being late to a meeting.",
    "What is the largest planet in our solar system?",
    "Give an example of a renewable energy source.",
    "How many legs does a spider have?",
    "Summarize the plot of Cinderella in two sentences.",
    "What is a prime number?",
    "Recommend a hobby for someone who likes being outdoors.",
    "Explain what a password manager is.",
    "Write a tweet announcing a bake sale.",
    "What should I pack for a day at the beach?",
    "Name three musical instruments.",
    "What is the boiling point of water in Celsius?",
    "How can I be kinder to my neighbours?",
    "Explain gravity to a five-year-old.",
    "What is the difference between weather and climate?",
    "Write one sentence encouraging a friend before an exam.",
    "What are clouds made of?",
    "Give me a simple recipe for a fruit salad.",
    "Why do cats purr?",
    "What is the main job of the heart?",
]


async def _run(args: argparse.Namespace) -> dict[str, object]:
    from cai_engine.models.base import ChatRequest, Message, ModelConfig, SamplingParams
    from cai_engine.models.registry import create_model

    prompts = PROMPTS[: args.prompts]
    params = SamplingParams(max_tokens=args.max_tokens, temperature=0.0)
    requests = [ChatRequest(messages=[Message(role="user", content=p)], params=params) for p in prompts]
    config = ModelConfig(
        spec=args.spec, max_batch_size=args.batch_size, batch_wait_ms=args.wait_ms, device=args.device, dtype=args.dtype
    )
    model = create_model(config)
    try:
        await model.generate(requests[0])  # load the weights and warm up outside the timings
        started = time.perf_counter()
        sequential = [await model.generate(r) for r in requests]
        seq_s = time.perf_counter() - started
        batches_before = getattr(model, "batches_run", 0)
        started = time.perf_counter()
        batched = await asyncio.gather(*(model.generate(r) for r in requests))
        bat_s = time.perf_counter() - started
        batches = getattr(model, "batches_run", 0) - batches_before
    finally:
        await model.aclose()
    seq_tokens = sum(r.usage.output_tokens for r in sequential)
    bat_tokens = sum(r.usage.output_tokens for r in batched)
    same = sum(a.text == b.text for a, b in zip(sequential, batched))
    import torch

    return {
        "spec": args.spec,
        "prompts": len(prompts),
        "max_tokens": args.max_tokens,
        "max_batch_size": args.batch_size,
        "batch_wait_ms": args.wait_ms,
        "device": args.device or ("cuda" if torch.cuda.is_available() else "cpu"),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "sequential": {"seconds": seq_s, "tokens": seq_tokens, "tokens_per_s": seq_tokens / seq_s},
        "batched": {"seconds": bat_s, "tokens": bat_tokens, "tokens_per_s": bat_tokens / bat_s, "batches": batches},
        "speedup": (bat_tokens / bat_s) / (seq_tokens / seq_s),
        "greedy_texts_identical": f"{same}/{len(prompts)}",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="local/smollm2")
    parser.add_argument("--quick", action="store_true", help="8 prompts, max_tokens 24")
    parser.add_argument("--prompts", type=int, default=None, help=f"number of prompts (max {len(PROMPTS)})")
    parser.add_argument("--max-tokens", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32, help="max_batch_size of the micro-batcher")
    parser.add_argument("--wait-ms", type=float, default=5.0)
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "local_batching.json")
    args = parser.parse_args(argv)
    args.prompts = min(args.prompts or (8 if args.quick else 32), len(PROMPTS))
    args.max_tokens = args.max_tokens or (24 if args.quick else 48)

    result = asyncio.run(_run(args))
    seq, bat = result["sequential"], result["batched"]
    print(f"{result['prompts']} prompts, greedy, max_tokens {result['max_tokens']}, device {result['device']}")
    print(f"one at a time : {seq['tokens']:5d} tokens in {seq['seconds']:6.1f} s = {seq['tokens_per_s']:7.1f} tokens/s")
    print(
        f"micro-batched : {bat['tokens']:5d} tokens in {bat['seconds']:6.1f} s = {bat['tokens_per_s']:7.1f} tokens/s"
        f"  ({bat['batches']} batches)"
    )
    print(f"speedup       : {result['speedup']:.2f}x   identical greedy texts: {result['greedy_texts_identical']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
