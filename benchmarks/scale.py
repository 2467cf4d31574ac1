"""Scale benchmark (issue 14): memory stays flat from 10k to N records for revise, rerun and export.

N unique prompts (``--n``, default 200,000) go through ``cai revise --rounds 0`` against a local fake
OpenAI-compatible server in its own process (tests/fake_provider.py ``--reply-bytes 3000``: ~3 KB
replies, 50 ms latency), model ``openai/bench`` from a model-config YAML
(``base_urls``, ``max_concurrency: 64``, prices 0.15/0.6 USD per Mtok), ``OPENAI_API_KEY=sk-bench``,
``--no-cache --concurrency 64 --few-shot 0``, constitution ``general``, CAI_HOME in a temp dir.

Phases, each its own process, watched every 0.2 s (RSS of the `cai` process; peak = max of the
samples, the kernel's VmHWM and ru_maxrss at exit; the split into anonymous memory and file-backed
pages, RssAnon/RssFile, is sampled too and reported beside it, since mmap'd Arrow files count in RSS):

1. revise: peak RSS so far when OUT/revisions.jsonl reaches 10%, 50% and 100% of N (lines counted
   from the appended bytes), the whole run's peak, wall time and records/s;
2. rerun of the finished job (same command, nothing to do): peak RSS and start-up time (its wall);
3. ``cai export sft OUT --out OUT/sft``: peak RSS and wall.

The same three phases run first at ``--small`` prompts (default 10,000), and the benchmark prints the
RSS growth from the small run to N records per phase against the target (< 100 MB each), PASS/FAIL.
Writes benchmarks/results/scale-<N>.json (machine, git commits, figures, targets).

    python benchmarks/scale.py                       # N = 200k (~15 min on 2 cores at ~260 records/s)
    python benchmarks/scale.py --n 1000000           # the 1M figure (~1.2 h, ~7 GB of records in the temp dir)
    python benchmarks/scale.py --n 5000 --small 1000 # smoke run
    python benchmarks/scale.py --cai "PYTHONPATH=/tmp/cai-base python -m cai_engine"   # another tree

Options: ``--keep`` keeps the temp dir (prompts, OUT dirs, logs); ``--latency``, ``--reply-bytes``,
``--concurrency``, ``--max-tokens``, ``--target-mb``, ``--timeout`` (per phase).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h  # noqa: E402

PHASES = ("revise", "rerun", "export")


def run_size(label: str, n: int, work: Path, server: h.Server, cai: list[str], env: dict[str, str],
             args: argparse.Namespace) -> dict[str, Any]:
    d = work / label
    d.mkdir()
    prompts = h.write_prompts(d / "prompts.jsonl", n)
    model_config = h.write_model_config(d / "model.yaml", server.port, args.concurrency)
    out = d / "out"
    revise = [*cai, *h.revise_args(prompts, out, model_config, args.concurrency, args.max_tokens)]
    records = out / "revisions.jsonl"
    phases: dict[str, h.PhaseResult] = {}

    print(f"[{label}] revise {n:,} prompts ...", flush=True)
    phases["revise"] = h.run_phase(f"{label}-revise", revise, env, d, d, records=records, n=n,
                                   marks=(0.1, 0.5, 1.0), timeout_s=args.timeout)
    print(f"[{label}] rerun (nothing to do) ...", flush=True)
    phases["rerun"] = h.run_phase(f"{label}-rerun", revise, env, d, d, records=records, timeout_s=args.timeout)
    print(f"[{label}] export sft ...", flush=True)
    phases["export"] = h.run_phase(f"{label}-export", [*cai, "export", "sft", str(out), "--out", str(out / "sft")],
                                   env, d, d, timeout_s=args.timeout)

    rev = phases["revise"]
    result: dict[str, Any] = {"n": n, "phases": {k: v.to_json() for k, v in phases.items()}}
    result["records_per_s"] = round(n / rev.wall_s, 1) if rev.wall_s else None
    result["records_lines"] = rev.lines
    result["records_bytes"] = records.stat().st_size if records.exists() else 0
    problems = []
    for name, p in phases.items():
        if p.rc != 0:
            problems.append(f"{name} exited {p.rc}")
    if rev.lines != n:
        problems.append(f"revise wrote {rev.lines} lines, expected {n}")
    if phases["rerun"].lines != rev.lines:
        problems.append(f"rerun changed the records file ({rev.lines} -> {phases['rerun'].lines} lines)")
    result["problems"] = problems
    for msg in problems:
        print(f"  [{label}] PROBLEM: {msg}", flush=True)
    for name, p in phases.items():
        if p.rc != 0:
            print(f"  --- {name} stderr tail ---\n{p.stderr_tail[-1500:]}", flush=True)
    return result


def _fmt(x: float | None, spec: str = ",.1f") -> str:
    return "-" if x is None else format(x, spec)


def _anon_file(phase: dict[str, Any]) -> str:
    return f"{_fmt(phase.get('peak_rss_anon_mb'), '.0f')}/{_fmt(phase.get('peak_rss_file_mb'), '.0f')}"


def print_table(small: dict[str, Any] | None, big: dict[str, Any], growth: dict[str, Any], target_mb: float) -> None:
    sizes = [s for s in (small, big) if s]
    print()
    print(f"{'phase':<28}" + "".join(f"{'N=' + format(s['n'], ','):>16}" for s in sizes))
    rows: list[tuple[str, list[str]]] = []
    for mark in ("10%", "50%", "100%"):
        rows.append((f"revise peak RSS @{mark} (MB)",
                     [_fmt(s["phases"]["revise"]["marks"].get(mark, {}).get("peak_rss_mb")) for s in sizes]))
    rows += [
        ("revise peak RSS (MB)", [_fmt(s["phases"]["revise"]["peak_rss_mb"]) for s in sizes]),
        ("revise wall (s)", [_fmt(s["phases"]["revise"]["wall_s"]) for s in sizes]),
        ("revise records/s", [_fmt(s["records_per_s"]) for s in sizes]),
        ("revise first record (s)", [_fmt(s["phases"]["revise"]["first_line_s"], ".2f") for s in sizes]),
        ("records file (MB)", [_fmt(s["records_bytes"] / h.MB) for s in sizes]),
        ("  of it anon/file (MB)", [_anon_file(s["phases"]["revise"]) for s in sizes]),
        ("rerun peak RSS (MB)", [_fmt(s["phases"]["rerun"]["peak_rss_mb"]) for s in sizes]),
        ("  of it anon/file (MB)", [_anon_file(s["phases"]["rerun"]) for s in sizes]),
        ("rerun start-up/wall (s)", [_fmt(s["phases"]["rerun"]["wall_s"], ".2f") for s in sizes]),
        ("export peak RSS (MB)", [_fmt(s["phases"]["export"]["peak_rss_mb"]) for s in sizes]),
        ("  of it anon/file (MB)", [_anon_file(s["phases"]["export"]) for s in sizes]),
        ("export wall (s)", [_fmt(s["phases"]["export"]["wall_s"], ".2f") for s in sizes]),
    ]
    for name, cells in rows:
        print(f"{name:<28}" + "".join(f"{c:>16}" for c in cells))
    if small:
        print(f"\nRSS growth from {small['n']:,} to {big['n']:,} records (target < {target_mb:g} MB each):")
        for phase in PHASES:
            g = growth[phase]
            anon = g.get("anon_growth_mb")
            print(f"  {phase:<8} {_fmt(g['growth_mb']):>9} MB   {g['verdict']:<6}"
                  + ("" if anon is None else f"   (anonymous part: {anon:+.1f} MB, sampled)"))
    print(flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000, help="prompts in the big run (1000000 for the 1M figure)")
    parser.add_argument("--small", type=int, default=10_000, help="prompts in the comparison run (0: skip it)")
    parser.add_argument("--latency", type=float, default=0.05, help="fake server seconds per reply")
    parser.add_argument("--reply-bytes", type=int, default=3000, help="fake server reply size")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=1024, help="must exceed the reply's words (~450 at 3 KB)")
    parser.add_argument("--target-mb", type=float, default=100.0, help="allowed RSS growth per phase")
    parser.add_argument("--timeout", type=float, default=4 * 3600, help="seconds per phase before it is killed")
    parser.add_argument("--cai", help='command prefix for cai, e.g. "PYTHONPATH=/tmp/cai-base python -m cai_engine"')
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    parser.add_argument("--results", type=Path, help="JSON path (default benchmarks/results/scale-<N>.json)")
    args = parser.parse_args()
    if args.small and args.small >= args.n:
        parser.error("--small must be below --n")

    cai, extra_env = h.cai_prefix(args.cai)
    work = Path(tempfile.mkdtemp(prefix=f"cai-scale-{args.n}-"))
    env = h.cai_env(work / "cai_home", extra_env)
    started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    machine = h.machine_info()
    print(f"work dir {work}; cai = {h.source_info(cai, extra_env)['cai_command']}", flush=True)
    server = h.Server(args.latency, args.reply_bytes, work / "server.log")
    try:
        small = run_size(f"n{args.small}", args.small, work, server, cai, env, args) if args.small else None
        big = run_size(f"n{args.n}", args.n, work, server, cai, env, args)
    finally:
        server.stop()

    growth: dict[str, Any] = {}
    ok = not big["problems"] and not (small and small["problems"])
    for phase in PHASES:
        if small is None:
            growth[phase] = {"growth_mb": None, "verdict": "n/a (no --small run)"}
            continue
        g = big["phases"][phase]["peak_rss_mb"] - small["phases"][phase]["peak_rss_mb"]
        passed = g < args.target_mb and ok
        sa, ba = small["phases"][phase]["peak_rss_anon_mb"], big["phases"][phase]["peak_rss_anon_mb"]
        growth[phase] = {"growth_mb": round(g, 1), "passed": passed,
                         "anon_growth_mb": None if sa is None or ba is None else round(ba - sa, 1),
                         "verdict": ("PASS" if passed else "FAIL") + ("" if ok else " (a run had problems)")}
    print_table(small, big, growth, args.target_mb)

    payload = {
        "benchmark": "scale", "started_at": started_at, "machine": machine,
        "source": h.source_info(cai, extra_env),
        "config": {"n": args.n, "small": args.small, "latency_s": args.latency, "reply_bytes": args.reply_bytes,
                   "concurrency": args.concurrency, "max_tokens": args.max_tokens, "model": "openai/bench",
                   "constitution": "general", "rounds": 0, "few_shot": 0, "cache": False, "sample_every_s": h.SAMPLE_S},
        "targets": {"rss_growth_mb_per_phase": args.target_mb},
        "small": small, "big": big, "rss_growth": growth,
        "passed": all(g.get("passed", False) for g in growth.values()) if small else None,
    }
    results = args.results or h.RESULTS_DIR / f"scale-{args.n}.json"
    h.write_json(results, payload)
    print(f"wrote {results}")
    if args.keep:
        print(f"kept {work}")
    else:
        h.remove_tree(work)


if __name__ == "__main__":
    main()
