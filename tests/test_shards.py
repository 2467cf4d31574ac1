"""``--shard i/N`` on revise and judge, joined by ``cai merge``: the shards partition the work by record
id, and the merge equals the unsharded run (same ids, same records, no duplicates)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cai_engine.engine.records import latest_records, read_jsonl

N_PROMPTS = 17
N_SHARDS = 3


def run_cai(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "cai_engine", *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result


def _ids(path: Path) -> list[str]:
    return [r["id"] for r in read_jsonl(path)]


def test_revise_and_judge_shards_merge_into_the_unsharded_set(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Question number {i}: what is {i} + {i}?"}) + "\n" for i in range(N_PROMPTS)))
    revise = ["revise", "-c", "general", "-p", str(prompts), "-m", "mock/echo", "--rounds", "1", "--few-shot", "0"]

    run_cai(*revise, "-o", str(tmp_path / "whole"))
    for i in range(N_SHARDS):
        run_cai(*revise, "-o", str(tmp_path / f"s{i}"), "--shard", f"{i}/{N_SHARDS}")
    shard_ids = [set(_ids(tmp_path / f"s{i}" / "revisions.jsonl")) for i in range(N_SHARDS)]
    whole_ids = _ids(tmp_path / "whole" / "revisions.jsonl")
    assert all(shard_ids), "a shard got no prompt (17 prompts over 3 shards)"
    assert sum(len(s) for s in shard_ids) == len(set().union(*shard_ids)) == N_PROMPTS  # disjoint and complete
    assert set().union(*shard_ids) == set(whole_ids)

    # merging the shards (one given twice: a re-submitted job) gives the unsharded records, once each
    merged = run_cai("merge", *(str(tmp_path / f"s{i}") for i in range(N_SHARDS)), str(tmp_path / "s0"), "--out", str(tmp_path / "merged"))
    assert f"merged {N_PROMPTS} records ({len(shard_ids[0])} duplicate ids dropped)" in merged.stderr
    merged_ids = _ids(tmp_path / "merged" / "revisions.jsonl")
    assert sorted(merged_ids) == sorted(whole_ids) and len(merged_ids) == len(set(merged_ids))
    strip = {"latency_s", "usage", "started_at", "finished_at", "wall_s"}

    def comparable(path: Path) -> dict[str, dict]:
        return {r["id"]: {k: v for k, v in r.items() if k not in strip} for r in latest_records(path)}

    assert comparable(tmp_path / "merged" / "revisions.jsonl") == comparable(tmp_path / "whole" / "revisions.jsonl")

    # the judge shards the same way over the merged revisions
    judge = ["judge", "-c", "general", "--pairs-from", f"revisions:{tmp_path / 'merged'}", "-j", "mock/echo", "--no-logprobs",
             "--max-failure-rate", "1"]  # mock/echo gives no verdict: every pair fails, which is fine here
    for i in range(N_SHARDS):
        run_cai(*judge, "-o", str(tmp_path / f"j{i}"), "--shard", f"{i}/{N_SHARDS}")
    pair_ids = [set(_ids(tmp_path / f"j{i}" / "pairs.jsonl")) for i in range(N_SHARDS)]
    assert sum(len(s) for s in pair_ids) == len(set().union(*pair_ids)) == N_PROMPTS
    run_cai("merge", *(str(tmp_path / f"j{i}") for i in range(N_SHARDS)), "--out", str(tmp_path / "pairs"))
    assert sorted(_ids(tmp_path / "pairs" / "pairs.jsonl")) == sorted(set().union(*pair_ids))
