"""Revision records -> SFT dataset in TRL's conversational ``messages`` format.

By default the constitution's system prompt is *not* part of the training conversation: the
point of SL-CAI is that the fine-tuned model behaves well without being told the principles.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from cai_engine.engine.records import latest_records
from cai_engine.errors import CaiError
from cai_engine.exports.common import length_stats, save_dataset


def resolve_records_file(path: Path, filename: str) -> Path:
    """Accept either the record file itself or the output dir that holds it."""
    candidate = path / filename if path.is_dir() else path
    if not candidate.exists():
        raise CaiError(f"{candidate} not found; point at the --out dir of the stage or its {filename}")
    return candidate


def sft_rows(records: list[dict[str, Any]], *, with_system: bool, drop_unchanged: bool) -> list[dict[str, Any]]:
    rows = []
    for record in records:
        final = record["final_response"]
        if drop_unchanged and final.strip() == record["initial_response"].strip():
            continue
        messages = []
        if with_system and record.get("system_prompt"):
            messages.append({"role": "system", "content": record["system_prompt"]})
        messages += [{"role": "user", "content": record["prompt"]}, {"role": "assistant", "content": final}]
        rows.append(
            {
                "id": record["id"],
                "messages": messages,
                "initial_response": record["initial_response"],
                "principles": [step["principle_id"] for step in record.get("rounds", [])],
                "constitution_hash": record["constitution"]["hash"],
                "model": record["model"],
            }
        )
    return rows


def export_sft(source: Path, out_dir: Path, *, with_system: bool = False, drop_unchanged: bool = False) -> dict[str, Any]:
    """Write the SFT export of a revise run; returns the card figures."""
    records_file = resolve_records_file(source, "revisions.jsonl")
    all_records = latest_records(records_file)
    ok = [r for r in all_records if r.get("status") == "ok"]
    rows = sft_rows(ok, with_system=with_system, drop_unchanged=drop_unchanged)
    constitutions = sorted({f"{r['constitution']['name']}@{r['constitution']['hash']}" for r in ok})
    figures = {
        "source": str(records_file),
        "constitutions": constitutions,
        "models": sorted({r["model"] for r in ok}),
        "records_ok": len(ok),
        "records_failed": len(all_records) - len(ok),
        "rows_exported": len(rows),
        "unchanged_by_revision": sum(1 for r in ok if r["final_response"].strip() == r["initial_response"].strip()),
        "with_system_prompt": with_system,
        "initial_chars": length_stats([len(r["initial_response"]) for r in ok]),
        "final_chars": length_stats([len(r["final_response"]) for r in ok]),
        "principle_uses": dict(Counter(step["principle_id"] for r in ok for step in r.get("rounds", []))),
    }
    save_dataset(
        rows,
        out_dir,
        title="cai-engine SFT revisions",
        summary="Prompts with constitution-revised answers (critique -> revise), in TRL's conversational `messages` format.",
        figures=figures,
    )
    return figures
