"""Engine overhead: the full engine path vs a raw AsyncOpenAI + asyncio.gather loop, same run.

The fake provider (tests/fake_provider.py) runs in its own process with a fixed 50 ms latency, so
it does not share the client's GIL. Both paths send the same 2,000 requests at concurrency 64:

* raw: ``AsyncOpenAI(max_retries=0)`` + a semaphore of 64 + ``asyncio.gather``;
* engine: ``build_engine`` (limits with rpm/tpm set, retry policy, cache off) + ``run_items`` +
  ``RecordStore`` (each record written and flushed at once, fsync at most every 0.5 s); the same
  with an fsync per record is reported too (``engine_fsync_per_record_*``): on a slow disk that
  fsync, which blocks the event loop, is the dominant cost.

Rounds alternate raw/engine and the best round of each is kept (the machine is shared; the best
round is the least disturbed one). Peak RSS of the engine path for 1k vs 20k prompts is measured
in fresh subprocesses (``ru_maxrss``) against a zero-latency server: it should be flat, since
run_items consumes prompts lazily. Writes benchmarks/results/engine_overhead.json.

    python benchmarks/engine_overhead.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "engine_overhead.json"


def start_server(latency: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fake_provider.py"), "--latency", str(latency)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    return proc, f"http://127.0.0.1:{line[1]}/v1"


def prompt(i: int) -> str:
    return f"benchmark prompt {i}: summarise the principle of least privilege in one line"


async def run_raw(base: str, n: int, concurrency: int) -> float:
    import openai

    client = openai.AsyncOpenAI(api_key="EMPTY", base_url=base, max_retries=0)
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> str:
        async with sem:
            r = await client.chat.completions.create(
                model="fake", messages=[{"role": "user", "content": prompt(i)}], max_tokens=64, temperature=0.0)
            return r.choices[0].message.content or ""

    started = time.perf_counter()
    out = await asyncio.gather(*(one(i) for i in range(n)))
    elapsed = time.perf_counter() - started
    assert len(out) == n
    await client.close()
    return elapsed


async def run_engine(base: str, n: int, concurrency: int, out_dir: Path,
                     fsync_every_s: float = 0.0) -> tuple[float, dict[str, object]]:
    from cai_engine.engine.factory import build_engine
    from cai_engine.engine.records import RecordStore, stable_hash
    from cai_engine.engine.runner import run_items
    from cai_engine.models.base import ChatRequest, Message, ModelConfig, SamplingParams

    config = ModelConfig(spec="openai/fake", base_urls=[base], max_concurrency=concurrency,
                         rpm=10_000_000, tpm=1_000_000_000)
    engine = build_engine(config, use_cache=False)
    store = RecordStore(out_dir / f"records-{time.monotonic_ns()}.jsonl", fsync_every_s=fsync_every_s)

    async def worker(i: int, rid: str) -> dict[str, object]:
        r = await engine.generate(ChatRequest(messages=[Message(role="user", content=prompt(i))],
                                              params=SamplingParams(max_tokens=64)))
        return {"prompt": prompt(i), "answer": r.text, "status": "ok"}

    started = time.perf_counter()
    summary = await run_items(range(n), record_id=lambda i: stable_hash(prompt(i)), worker=worker, store=store,
                              concurrency=concurrency)
    elapsed = time.perf_counter() - started
    assert summary.done == n, summary
    store.close()
    await engine.aclose()
    return elapsed, engine.stats.model_dump()


def rss_child(base: str, n: int) -> None:
    """Run n prompts through the engine path and print peak RSS in MiB (a fresh process per size)."""
    with tempfile.TemporaryDirectory() as tmp:
        elapsed, _ = asyncio.run(run_engine(base, n, 64, Path(tmp)))
    print(json.dumps({"n": n, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "seconds": elapsed}))


def measure_rss(base: str, n: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--rss-child", str(n), "--base", base],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests and rounds (smoke run)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        rss_child(args.base, args.rss_child)
        return
    n = 500 if args.quick else args.requests
    rounds = 1 if args.quick else args.rounds
    rss_sizes = (1000, 5000) if args.quick else (1000, 20000)

    server, base = start_server(0.05)
    fast_server, fast_base = start_server(0.0)
    try:
        raw_times, engine_times, engine_sync_times, stats = [], [], [], {}
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(run_raw(base, 64, args.concurrency))  # warm up the server's threads
            for r in range(rounds):
                raw_times.append(asyncio.run(run_raw(base, n, args.concurrency)))
                t, stats = asyncio.run(run_engine(base, n, args.concurrency, Path(tmp), fsync_every_s=0.5))
                engine_times.append(t)
                ts, _ = asyncio.run(run_engine(base, n, args.concurrency, Path(tmp), fsync_every_s=0.0))
                engine_sync_times.append(ts)
                print(f"round {r + 1}: raw {n / raw_times[-1]:.0f} req/s, engine {n / t:.0f} req/s "
                      f"(fsync per record: {n / ts:.0f} req/s)", flush=True)
        rss = [measure_rss(fast_base, size) for size in rss_sizes]
    finally:
        for proc in (server, fast_server):
            proc.terminate()
            proc.wait()

    raw_rps, engine_rps = n / min(raw_times), n / min(engine_times)
    result = {
        "requests": n, "concurrency": args.concurrency, "server_latency_s": 0.05, "rounds": rounds,
        "raw_rps": round(raw_rps, 1), "engine_rps": round(engine_rps, 1), "ratio": round(engine_rps / raw_rps, 3),
        "raw_rps_all": [round(n / t, 1) for t in raw_times], "engine_rps_all": [round(n / t, 1) for t in engine_times],
        "engine_store_fsync_every_s": 0.5,
        "engine_fsync_per_record_rps": round(n / min(engine_sync_times), 1),
        "engine_fsync_per_record_ratio": round(min(raw_times) / min(engine_sync_times), 3),
        "engine_stats": stats, "peak_rss": rss,
        "rss_growth": round(rss[-1]["peak_rss_mib"] / rss[0]["peak_rss_mib"], 3),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_avg_1m": round(os.getloadavg()[0], 2)},
        "quick": args.quick,
    }
    print(f"raw {raw_rps:.0f} req/s, engine {engine_rps:.0f} req/s, ratio {engine_rps / raw_rps:.3f} (target >= 0.95)")
    print("peak RSS: " + ", ".join(f"{r['n']} prompts {r['peak_rss_mib']:.0f} MiB" for r in rss))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
