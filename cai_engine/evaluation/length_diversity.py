"""Length (characters, words) and distinct-1/2 of a model's eval answers, per set and overall.

Primitives live in :mod:`cai_engine.text_measures` (shared with the RL monitors); distinct-n here is
over lower-cased words and punctuation of all answers of a set pooled together, so a model that
answers everything the same way scores low even if each answer is varied inside.
"""

from __future__ import annotations

from typing import Any

from cai_engine.text_measures import length_summary


def score_role(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{set: stats, ..., "all": stats}`` over first-turn answers of ok generation records."""
    by_set: dict[str, list[str]] = {}
    for record in records:
        by_set.setdefault(record["set"], []).append(record["text"])
    out = {name: length_summary(texts) for name, texts in sorted(by_set.items())}
    out["all"] = length_summary([t for texts in by_set.values() for t in texts])
    return out
