"""Pair records -> preference datasets: DPO (TRL conversational preference) and reward modelling.

Columns (the training stages read exactly these):

* ``prompt``: ``[{"role": "user", "content": ...}]``, the user turn only. The constitution's
  system prompt is *not* included: as for SFT, the trained model should behave well without being
  told the principles. The card records the system prompt the candidates were generated under.
* ``chosen`` / ``rejected``: ``[{"role": "assistant", "content": ...}]``.
* ``id``, ``confidence`` (the judge's P(chosen better), 0.5-1), ``consistent`` (position-consistent).
* reward export only: ``margin`` = ``2 * confidence - 1`` in [0, 1], TRL RewardTrainer's optional
  per-pair margin (a confident preference asks for a larger reward gap, a coin flip for none).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from statistics import fmean
from typing import Any, Literal

from cai_engine.engine.records import latest_records
from cai_engine.errors import CaiError
from cai_engine.exports.common import length_stats, save_dataset
from cai_engine.exports.sft import resolve_records_file
from cai_engine.pipelines.aggregate import chosen_rejected, longer_wins_rate, select_pairs

Kind = Literal["dpo", "reward"]


def preference_rows(records: list[dict[str, Any]], kind: Kind) -> list[dict[str, Any]]:
    rows = []
    for record in records:
        pair = chosen_rejected(record)
        if pair is None:
            continue
        chosen, rejected = pair
        row = {
            "id": record["id"],
            "prompt": [{"role": "user", "content": record["prompt"]}],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
            "confidence": float(record["confidence"]),
            "consistent": bool(record["consistent"]),
        }
        if kind == "reward":
            row["margin"] = round(2.0 * float(record["confidence"]) - 1.0, 6)
        rows.append(row)
    return rows


def pair_figures(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Statistics of a set of ok pair records: consistency, confidence, ties, length bias, agreement."""
    decided = [r for r in records if r.get("chosen") in ("a", "b")]
    pairs = [p for p in (chosen_rejected(r) for r in decided) if p is not None]
    labelled = [r for r in records if r.get("label") in ("a", "b")]
    figures: dict[str, Any] = {
        "pairs": len(records),
        "decided": len(decided),
        "ties": len(records) - len(decided),
        "identical_candidates": sum(1 for r in records if r.get("identical")),
        "position_consistency_rate": _rate(sum(1 for r in records if r.get("consistent")), len(records)),
        "mean_confidence": round(fmean(r["confidence"] for r in decided), 4) if decided else None,
        "longer_wins_rate": _round(longer_wins_rate(records)),
        "chosen_chars": length_stats([len(c) for c, _ in pairs]),
        "rejected_chars": length_stats([len(r) for _, r in pairs]),
        "verdict_methods": dict(Counter(j["method"] for r in records for j in r.get("judgments", []))),
        "principle_uses": dict(Counter(p for r in records for p in r.get("principles", []))),
    }
    if labelled:
        score = sum(1.0 if r["chosen"] == r["label"] else 0.5 if r["chosen"] == "tie" else 0.0 for r in labelled)
        figures["agreement_with_labels"] = _rate(score, len(labelled))
        figures["labelled_pairs"] = len(labelled)
    return figures


def _rate(n: float, total: int) -> float | None:
    return round(n / total, 4) if total else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def export_preference(
    source: Path,
    out_dir: Path,
    *,
    kind: Kind,
    min_confidence: float = 0.5,
    drop_inconsistent: bool = False,
    length_balanced: bool = False,
) -> dict[str, Any]:
    """Write the DPO or reward export of a judge run; returns the card figures."""
    records_file = resolve_records_file(source, "pairs.jsonl")
    all_records = latest_records(records_file)
    ok = [r for r in all_records if r.get("status") == "ok"]
    kept, dropped = select_pairs(
        all_records, min_confidence=min_confidence, drop_inconsistent=drop_inconsistent, length_balanced=length_balanced
    )
    rows = preference_rows(kept, kind)
    if ok and not rows:
        raise CaiError(
            f"no pair of {records_file} passed the filters (dropped: {dropped}); "
            "lower --min-confidence or leave out --drop-inconsistent/--length-balanced"
        )
    system_prompts = sorted({r.get("origin", {}).get("system_prompt") or "" for r in ok} - {""})
    figures = {
        "source": str(records_file),
        "constitutions": sorted({f"{r['constitution']['name']}@{r['constitution']['hash']}" for r in ok}),
        "judge_models": sorted({r["judge_model"] for r in ok}),
        "records_ok": len(ok),
        "records_failed": len(all_records) - len(ok),
        "rows_exported": len(rows),
        "filters": {"min_confidence": min_confidence, "drop_inconsistent": drop_inconsistent, "length_balanced": length_balanced},
        "dropped": dropped,
        "all_pairs": pair_figures(ok),
        "exported_pairs": pair_figures(kept),
        "system_prompt_note": "prompt holds the user turn only; the constitution's system prompt is not included",
    }
    if system_prompts:
        figures["candidate_system_prompts"] = system_prompts
    what = "DPO" if kind == "dpo" else "reward-model"
    save_dataset(
        rows,
        out_dir,
        title=f"cai-engine {what} preference pairs",
        summary=(
            "AI-judged preference pairs under a constitution (each pair judged in both orders, A/B swapped), "
            "in TRL's conversational preference format: `prompt`, `chosen`, `rejected`."
            + (" `margin` = 2*confidence-1 for RewardTrainer." if kind == "reward" else "")
        ),
        figures=figures,
    )
    return figures
