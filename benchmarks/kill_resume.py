"""Kill -9 at half, resume, and check the store's contract: nothing lost, nothing duplicated, ledger = records.

``cai revise --rounds 0`` of N unique prompts (``--n``, default 50,000) through the same fake server as
benchmarks/scale.py (tests/fake_provider.py ``--reply-bytes 3000``, ~3 KB replies, 50 ms; model
``openai/bench``, ``--no-cache --concurrency 64``, constitution ``general``, CAI_HOME in a temp dir).
The `cai` process is SIGKILLed once OUT/revisions.jsonl has N/2 lines, then the same command is rerun
to completion. Checks:

* 0 lost: every prompt has a record with status ``ok``;
* 0 duplicated: exactly N ``ok`` lines and N unique ids among them;
* ledger: the top-level total of OUT/ledger.json (``spent_usd``, or the first of a few likely names)
  equals the sum of the records' ``cost_usd`` (within 1e-6 USD); "SKIP" when there is no ledger.json
  or the records carry no ``cost_usd`` (its keys are printed either way, to adjust this script).

Lines that do not parse (a torn tail left by the kill, if the store kept it) are counted and reported.
Writes benchmarks/results/kill-resume-<N>.json; exits 1 when a check fails.

    python benchmarks/kill_resume.py                 # N = 50k (~3-4 min on 2 cores)
    python benchmarks/kill_resume.py --n 4000        # smoke run
    python benchmarks/kill_resume.py --cai "PYTHONPATH=/tmp/cai-base python -m cai_engine"
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h  # noqa: E402

LEDGER_TOTAL_KEYS = ("spent_usd", "total_usd", "cost_usd", "spent", "total")


def prompt_of(record: dict[str, Any]) -> str | None:
    """The prompt text of a record: a string, or the last user turn of a messages list."""
    p = record.get("prompt")
    if isinstance(p, str):
        return p
    if isinstance(p, list):
        for m in reversed(p):
            if isinstance(m, dict) and m.get("role") == "user":
                return str(m.get("content"))
    if isinstance(record.get("messages"), list):
        return prompt_of({"prompt": record["messages"]})
    return None


def scan(records: Path) -> dict[str, Any]:
    """Stream the records file: statuses, ok ids/prompts, costs, unparseable lines."""
    statuses: Counter[str] = Counter()
    ok_ids: Counter[str] = Counter()
    ok_prompts: set[str] = set()
    bad_lines = 0
    lines = 0
    cost_sum = 0.0
    cost_sum_ok = 0.0
    with_cost = 0
    with open(records, "rb") as f:
        for raw in f:
            lines += 1
            try:
                rec = json.loads(raw)
            except ValueError:
                bad_lines += 1
                continue
            status = str(rec.get("status"))
            statuses[status] += 1
            cost = rec.get("cost_usd")
            if isinstance(cost, (int, float)):
                with_cost += 1
                cost_sum += cost
                if status == "ok":
                    cost_sum_ok += cost
            if status == "ok":
                ok_ids[str(rec.get("id"))] += 1
                p = prompt_of(rec)
                if p is not None:
                    ok_prompts.add(p)
    return {"lines": lines, "bad_lines": bad_lines, "statuses": dict(statuses), "ok_lines": statuses.get("ok", 0),
            "ok_unique_ids": len(ok_ids), "ids_on_two_ok_lines": sum(1 for c in ok_ids.values() if c > 1),
            "ok_prompts": ok_prompts, "records_with_cost": with_cost, "cost_sum_usd": cost_sum,
            "cost_sum_ok_usd": cost_sum_ok}


def ledger_check(out: Path, s: dict[str, Any]) -> dict[str, Any]:
    path = out / "ledger.json"
    if not path.exists():
        print(f"  ledger: SKIP: no ledger.json (OUT has: {sorted(p.name for p in out.iterdir())})")
        return {"verdict": "SKIP", "reason": "no ledger.json"}
    ledger = json.loads(path.read_text(encoding="utf-8"))
    keys = sorted(ledger) if isinstance(ledger, dict) else []
    print(f"  ledger.json keys: {keys}")
    if isinstance(ledger, dict):
        print(f"  ledger.json: {json.dumps(ledger)[:600]}")
    total_key = next((k for k in LEDGER_TOTAL_KEYS if isinstance(ledger, dict) and isinstance(ledger.get(k), (int, float))), None)
    result: dict[str, Any] = {"keys": keys, "total_key": total_key, "ledger": ledger if len(json.dumps(ledger)) < 20_000 else None}
    if total_key is None:
        print(f"  ledger: SKIP: no top-level total among {LEDGER_TOTAL_KEYS}")
        return {**result, "verdict": "SKIP", "reason": "no top-level total field"}
    if s["records_with_cost"] == 0:
        print("  ledger: SKIP: the records carry no cost_usd")
        return {**result, "verdict": "SKIP", "reason": "records have no cost_usd", "ledger_total_usd": ledger[total_key]}
    total = float(ledger[total_key])
    by_model = ledger.get("by_model") if isinstance(ledger, dict) else None
    if isinstance(by_model, dict) and all(isinstance(v, (int, float)) for v in by_model.values()):
        bm = float(sum(by_model.values()))
        result["by_model_sum_usd"] = bm
        if not math.isclose(bm, total, rel_tol=1e-9, abs_tol=1e-6):
            print(f"  NOTE: ledger by_model sums to {bm:.6f} USD, not {total_key} {total:.6f} ({bm - total:+.6f}); informational")
    diff = total - s["cost_sum_usd"]
    passed = math.isclose(total, s["cost_sum_usd"], rel_tol=1e-9, abs_tol=1e-6)
    print(f"  ledger {total_key} = {total:.6f} USD; sum of records' cost_usd = {s['cost_sum_usd']:.6f} USD "
          f"(ok only {s['cost_sum_ok_usd']:.6f}; {s['records_with_cost']}/{s['lines']} records have it); "
          f"diff {diff:+.6f} -> {'PASS' if passed else 'FAIL'}")
    return {**result, "verdict": "PASS" if passed else "FAIL", "ledger_total_usd": total,
            "records_cost_sum_usd": s["cost_sum_usd"], "records_cost_sum_ok_usd": s["cost_sum_ok_usd"],
            "diff_usd": diff}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--kill-at", type=float, default=0.5, help="fraction of N written when the kill comes")
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--reply-bytes", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=1024)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per phase before it is killed")
    parser.add_argument("--cai", help='command prefix for cai, e.g. "PYTHONPATH=/tmp/cai-base python -m cai_engine"')
    parser.add_argument("--keep", action="store_true", help="keep the temp dir")
    parser.add_argument("--results", type=Path, help="JSON path (default benchmarks/results/kill-resume-<N>.json)")
    args = parser.parse_args()

    cai, extra_env = h.cai_prefix(args.cai)
    work = Path(tempfile.mkdtemp(prefix=f"cai-kill-{args.n}-"))
    env = h.cai_env(work / "cai_home", extra_env)
    started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    source = h.source_info(cai, extra_env)
    print(f"work dir {work}; cai = {source['cai_command']}", flush=True)
    prompts = h.write_prompts(work / "prompts.jsonl", args.n)
    out = work / "out"
    records = out / "revisions.jsonl"
    kill_at = max(1, int(args.n * args.kill_at))
    server = h.Server(args.latency, args.reply_bytes, work / "server.log")
    try:
        model_config = h.write_model_config(work / "model.yaml", server.port, args.concurrency)
        cmd = [*cai, *h.revise_args(prompts, out, model_config, args.concurrency, args.max_tokens)]
        print(f"revise {args.n:,} prompts, SIGKILL at {kill_at:,} lines ...", flush=True)
        first = h.run_phase("killed", cmd, env, work, work, records=records, n=args.n, kill_at=kill_at,
                            timeout_s=args.timeout)
        after_kill = scan(records) if records.exists() else None
        if after_kill:
            print(f"  killed at {first.killed_at_lines:,} lines seen (rc {first.rc}, {first.wall_s:.1f} s); file then had "
                  f"{after_kill['lines']:,} lines, {after_kill['ok_lines']:,} ok, {after_kill['bad_lines']} unparseable", flush=True)
        print("rerun to completion ...", flush=True)
        second = h.run_phase("resumed", cmd, env, work, work, records=records, n=args.n, timeout_s=args.timeout)
        print(f"  rc {second.rc}, {second.wall_s:.1f} s, peak RSS {second.peak_rss_mb:.1f} MB; "
              f"{h.summary_line(second.stderr_tail + second.stdout_tail)}", flush=True)
    finally:
        server.stop()

    final = scan(records)
    expected = {h.prompt_text(i) for i in range(args.n)}
    lost = len(expected - final["ok_prompts"])
    extra = len(final["ok_prompts"] - expected)
    checks: dict[str, Any] = {
        "killed": {"passed": first.rc == -9 and first.killed_at_lines is not None,
                   "detail": f"rc {first.rc} at {first.killed_at_lines} lines"},
        "resume_exit_0": {"passed": second.rc == 0, "detail": f"rc {second.rc}"},
        "lost_0": {"passed": lost == 0, "lost": lost, "detail": f"{lost} prompts without an ok record"},
        "duplicated_0": {"passed": final["ok_lines"] == args.n and final["ok_unique_ids"] == args.n,
                         "ok_lines": final["ok_lines"], "ok_unique_ids": final["ok_unique_ids"],
                         "ids_on_two_ok_lines": final["ids_on_two_ok_lines"],
                         "detail": f"{final['ok_lines']} ok lines, {final['ok_unique_ids']} unique ids (N = {args.n})"},
        "no_unparseable_lines": {"passed": final["bad_lines"] == 0, "detail": f"{final['bad_lines']} lines"},
    }
    if extra:
        checks["lost_0"]["detail"] += f"; {extra} ok records for prompts not in the input"
    print("\nchecks:")
    for name, c in checks.items():
        print(f"  {name:<22} {'PASS' if c['passed'] else 'FAIL'}  {c['detail']}")
    ledger = ledger_check(out, final)
    passed = all(c["passed"] for c in checks.values()) and ledger["verdict"] != "FAIL"
    print(f"\n{'PASS' if passed else 'FAIL'} (ledger {ledger['verdict']})")

    final.pop("ok_prompts")
    if after_kill:
        after_kill.pop("ok_prompts")
    payload = {
        "benchmark": "kill_resume", "started_at": started_at, "machine": h.machine_info(), "source": source,
        "config": {"n": args.n, "kill_at_lines": kill_at, "latency_s": args.latency, "reply_bytes": args.reply_bytes,
                   "concurrency": args.concurrency, "max_tokens": args.max_tokens, "model": "openai/bench",
                   "constitution": "general", "rounds": 0, "few_shot": 0, "cache": False},
        "phases": {"killed": first.to_json(), "resumed": second.to_json()},
        "after_kill": after_kill, "final": final, "checks": checks, "ledger": ledger, "passed": passed,
    }
    results = args.results or h.RESULTS_DIR / f"kill-resume-{args.n}.json"
    h.write_json(results, payload)
    print(f"wrote {results}")
    if args.keep:
        print(f"kept {work}")
    else:
        h.remove_tree(work)
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
