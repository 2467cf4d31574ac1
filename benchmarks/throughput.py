"""Whole-command throughput (issue 15): `cai revise --rounds 0` as a process vs a raw SDK loop as a process.

Part 1. The same N prompts (default 4,000, concurrency 64, 50 ms replies) against one local fake
OpenAI server (tests/fake_provider.py in its own process):

* **raw**: a Python process that reads the prompts file, sends each (system prompt + prompt, the
  same messages `cai revise` sends) with ``AsyncOpenAI(max_retries=0)`` under a semaphore of 64 +
  ``asyncio.gather``, and writes the answers as JSON lines;
* **cai**: ``cai revise -c general --rounds 0 --few-shot 0 --no-cache --concurrency 64`` with a model
  config holding only ``base_urls`` (no max_concurrency, no rpm: the defaults a user gets;
  ``--explicit-cap`` adds ``max_concurrency: 64``, which trees before issue 15 need).

Each is timed as a whole process (start-up, imports, reading, writing, exit), alternated
``--rounds`` times (at least 2); the best of each counts (the machine is shared). Printed: both
rates and the ratio (target >= 0.95).

Part 2. The fake provider with a request quota (``--quota-rpm``, default 3,000: 50/s, a one-second bucket, 400 ms
replies; it sends the rate-limit headers and refuses beyond the quota) and ``cai revise --rounds 0``
with no model config but ``base_urls``: the share of the quota used in the steady part of the run
(from 2 s after the first answer to 0.5 s before the last) and the share of requests refused
(targets >= 85% and <= 10%).

Writes benchmarks/results/throughput.json.

    python benchmarks/throughput.py                  # ~2 min on 2 cores
    python benchmarks/throughput.py --n 1000 --rounds 2 --quota-n 600    # smoke run
    python benchmarks/throughput.py --profile        # also one cai run under cProfile (top functions)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h  # noqa: E402

ROOT = h.ROOT
FAKE = ROOT / "tests" / "fake_provider.py"
RESULT = h.RESULTS_DIR / "throughput.json"


def start_server(*args: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, str(FAKE), *args], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    if len(line) != 2 or line[0] != "PORT":
        proc.kill()
        raise RuntimeError(f"fake provider did not start: {line!r}")
    return proc, int(line[1])


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()


def server_stats(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stats", timeout=10) as r:
        return json.loads(r.read())


# ---- the raw process ---------------------------------------------------------------------------
async def _raw(prompts: Path, out: Path, base: str, concurrency: int, max_tokens: int, system: str) -> None:
    import openai

    client = openai.AsyncOpenAI(api_key="sk-bench", base_url=base, max_retries=0)
    sem = asyncio.Semaphore(concurrency)
    rows = [json.loads(line)["prompt"] for line in prompts.read_text(encoding="utf-8").splitlines() if line.strip()]

    async def one(prompt: str) -> str:
        async with sem:
            r = await client.chat.completions.create(
                model="bench", max_tokens=max_tokens, temperature=0.0,
                messages=[{"role": "system", "content": system}, {"role": "user", "content": prompt}])
            return json.dumps({"prompt": prompt, "answer": r.choices[0].message.content}) + "\n"

    lines = await asyncio.gather(*(one(p) for p in rows))
    out.write_text("".join(lines), encoding="utf-8")
    await client.close()


def raw_child(argv: list[str]) -> None:
    prompts, out, base, concurrency, max_tokens, system_file = argv
    asyncio.run(_raw(Path(prompts), Path(out), base, int(concurrency), int(max_tokens),
                     Path(system_file).read_text(encoding="utf-8")))


# ---- the benchmark ----------------------------------------------------------------------------
CPU: dict[str, list[float]] = {}  # process CPU seconds (user + sys) per timed command kind


def timed(cmd: list[str], env: dict[str, str], cwd: Path, log: Path, kind: str = "") -> float:
    """Wall seconds of ``cmd`` as a whole process (its CPU seconds go to ``CPU[kind]``)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.run(cmd, env=env, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:3]} failed (exit {proc.returncode}); see {log}:\n{log.read_text()[-2000:]}")
    if kind:
        CPU.setdefault(kind, []).append(round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 3))
    return elapsed


def count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def part_throughput(args: argparse.Namespace, work: Path, cai: list[str], env: dict[str, str]) -> dict[str, Any]:
    from cai_engine.constitution import load_constitution

    system = work / "system.txt"
    system.write_text(load_constitution("general").system_prompt or "", encoding="utf-8")
    prompts = h.write_prompts(work / "prompts.jsonl", args.n)
    server, port = start_server("--latency", str(args.latency))
    base = f"http://127.0.0.1:{port}/v1"
    model = work / "model.yaml"
    cap = f"max_concurrency: {args.concurrency}\n" if args.explicit_cap else ""
    model.write_text(f"base_urls: [{base}]\n{cap}", encoding="utf-8")
    raw_s: list[float] = []
    cai_s: list[float] = []
    try:
        # Warm the server's threads and the OS caches once.
        warm = h.write_prompts(work / "warm.jsonl", 200)
        timed([sys.executable, __file__, "--raw-child", str(warm), str(work / "warm.out"), base,
               str(args.concurrency), str(args.max_tokens), str(system)], env, work, work / "warm.log")
        for r in range(args.rounds):
            out = work / f"raw-{r}.jsonl"
            raw_s.append(timed([sys.executable, __file__, "--raw-child", str(prompts), str(out), base,
                                str(args.concurrency), str(args.max_tokens), str(system)], env, work,
                               work / f"raw-{r}.log", "raw"))
            assert count_lines(out) == args.n
            out_dir = work / f"cai-{r}"
            cai_s.append(timed([*cai, *h.revise_args(prompts, out_dir, model, args.concurrency, args.max_tokens)],
                               env, work, work / f"cai-{r}.log", "cai"))
            assert count_lines(out_dir / "revisions.jsonl") == args.n
            print(f"round {r + 1}: raw {args.n / raw_s[-1]:.0f} req/s ({CPU['raw'][-1]:.1f} s CPU), "
                  f"cai revise {args.n / cai_s[-1]:.0f} req/s ({CPU['cai'][-1]:.1f} s CPU)", flush=True)
        profile = run_profile(args, work, cai, env, prompts, model) if args.profile else None
    finally:
        stop(server)
    raw_rps, cai_rps = args.n / min(raw_s), args.n / min(cai_s)
    cpu_raw, cpu_cai = min(CPU["raw"]), min(CPU["cai"])
    print(f"whole process, {args.n} prompts, concurrency {args.concurrency}, {args.latency * 1000:.0f} ms replies: "
          f"raw AsyncOpenAI {raw_rps:.0f} req/s, cai revise --rounds 0 {cai_rps:.0f} req/s, "
          f"ratio {cai_rps / raw_rps:.2f}x (target >= 0.95x); CPU per process raw {cpu_raw:.1f} s, "
          f"cai {cpu_cai:.1f} s", flush=True)
    return {"n": args.n, "concurrency": args.concurrency, "latency_s": args.latency, "rounds": args.rounds,
            "raw_s": [round(t, 3) for t in raw_s], "cai_s": [round(t, 3) for t in cai_s],
            "raw_cpu_s": CPU["raw"], "cai_cpu_s": CPU["cai"], "explicit_cap": args.explicit_cap,
            "raw_rps": round(raw_rps, 1), "cai_rps": round(cai_rps, 1), "ratio": round(cai_rps / raw_rps, 3),
            "target": 0.95, "profile": profile}


def run_profile(args: argparse.Namespace, work: Path, cai: list[str], env: dict[str, str], prompts: Path,
                model: Path) -> dict[str, Any]:
    import pstats

    prof = work / "cai.prof"
    cmd = [sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "cai_engine",
           *h.revise_args(prompts, work / "cai-profile", model, args.concurrency, args.max_tokens)]
    timed(cmd, env, work, work / "profile.log")
    stats = pstats.Stats(str(prof))
    rows = []
    for (file, line, fn), (_, calls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": f"{Path(file).name}:{line}:{fn}", "calls": calls, "tottime_s": round(tottime, 3),
                     "cumtime_s": round(cumtime, 3)})
    rows.sort(key=lambda r: r["tottime_s"], reverse=True)
    print("top functions by own time (cai revise under cProfile):")
    for r in rows[:15]:
        print(f"  {r['tottime_s']:7.3f} s own {r['cumtime_s']:7.3f} s cum {r['calls']:8d}  {r['function']}")
    return {"top_by_tottime": rows[:40]}


def part_quota(args: argparse.Namespace, work: Path, cai: list[str], env: dict[str, str]) -> dict[str, Any]:
    prompts = h.write_prompts(work / "quota-prompts.jsonl", args.quota_n)
    server, port = start_server("--latency", str(args.quota_latency), "--rpm", str(args.quota_rpm), "--window", "1")
    model = work / "quota-model.yaml"
    model.write_text(f"base_urls: [http://127.0.0.1:{port}/v1]\n", encoding="utf-8")
    try:
        out = work / "quota-out"
        cmd = [*cai, "revise", "-c", "general", "-p", str(prompts), "-o", str(out), "-m", "openai/bench",
               "--model-config", str(model), "--rounds", "0", "--few-shot", "0", "--no-cache",
               "--max-tokens", str(args.max_tokens)]
        wall = timed(cmd, env, work, work / "quota.log")
        stats = server_stats(port)
    finally:
        stop(server)
    times = sorted(stats["ok_times"])
    start, end = times[0] + 2.0, times[-1] - 0.5
    inside = sum(1 for t in times if start <= t <= end)
    per_s = args.quota_rpm / 60
    share = inside / max(end - start, 1e-9) / per_s
    refused = stats["counts"].get("quota:429", 0)
    attempts = len(times) + refused
    print(f"quota {args.quota_rpm:,} rpm ({per_s:.0f}/s, {args.quota_latency * 1000:.0f} ms replies), no model config: "
          f"{share:.0%} of it used in the steady part (target >= 85%), {refused}/{attempts} requests refused "
          f"({refused / attempts:.1%}, target <= 10%), {args.quota_n} prompts in {wall:.1f} s", flush=True)
    return {"rpm": args.quota_rpm, "latency_s": args.quota_latency, "n": args.quota_n, "wall_s": round(wall, 2),
            "share_used": round(share, 3), "refused": refused, "attempts": attempts,
            "refused_share": round(refused / attempts, 4), "targets": {"share_used": 0.85, "refused_share": 0.10}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="alternations of raw and cai (at least 2)")
    parser.add_argument("--quota-rpm", type=int, default=3000)
    parser.add_argument("--quota-latency", type=float, default=0.4)
    parser.add_argument("--quota-n", type=int, default=1200)
    parser.add_argument("--skip-quota", action="store_true")
    parser.add_argument("--explicit-cap", action="store_true",
                        help="part 1: also write max_concurrency: CONCURRENCY into the model config (older trees cap at 8)")
    parser.add_argument("--profile", action="store_true", help="also run cai once under cProfile")
    parser.add_argument("--cai", help='the cai command (default: this venv\'s), e.g. "PYTHONPATH=/tmp/old python -m cai_engine"')
    parser.add_argument("--out", type=Path, default=RESULT, help="where to write the JSON results")
    parser.add_argument("--raw-child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_child:
        raw_child(args.raw_child)
        return
    args.rounds = max(2, args.rounds)
    cai, extra_env = h.cai_prefix(args.cai)
    with tempfile.TemporaryDirectory(prefix="cai-throughput-") as tmp:
        work = Path(tmp)
        env = h.cai_env(work / "home", extra_env)
        result: dict[str, Any] = {"machine": h.machine_info(), "source": h.source_info(cai, extra_env)}
        result["throughput"] = part_throughput(args, work, cai, env)
        if not args.skip_quota:
            result["quota"] = part_quota(args, work, cai, env)
    h.write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
