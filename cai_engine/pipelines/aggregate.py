"""Combining judgments into one preference, and the filters/statistics that make bias visible.

Conventions. A judgment in order ``ab`` shows candidate *a* first, so ``P(a better) = p_first``;
in order ``ba`` it shows *b* first, so ``P(a better) = 1 - p_first``. Per principle the two orders
are averaged (this cancels a pure position bias); over the ensemble of principles the
per-principle values are averaged with equal weight (principles were already *drawn* by weight,
weighting again would count it twice).

A pair is *position-consistent* when the ensemble's preference shown in order ``ab`` and in order
``ba`` names the same candidate (or both say exactly 0.5). ``confidence`` is ``P(chosen better)``,
i.e. ``max(p, 1 - p)``, between 0.5 and 1.
"""

from __future__ import annotations

from array import array
from statistics import fmean
from typing import Any, Iterable, Literal

from cai_engine.engine.records import stable_hash

Pick = Literal["a", "b", "tie"]


#: Below this distance from 0.5 a probability is a tie whatever the margin: (0.9 + (1 - 0.9)) / 2 is
#: 0.49999999999999994 in floating point, and a pure position bias must not become a preference.
TIE_EPSILON = 1e-9


def preference(p_a: float, tie_margin: float = 0.0) -> Pick:
    """'a' when P(a better) is above 0.5 + margin, 'b' when below 0.5 - margin, else 'tie'."""
    margin = max(tie_margin, TIE_EPSILON)
    if p_a > 0.5 + margin:
        return "a"
    if p_a < 0.5 - margin:
        return "b"
    return "tie"


def p_a_of(judgment: dict[str, Any]) -> float:
    """P(candidate a better) implied by one judgment."""
    return judgment["p_first"] if judgment["order"] == "ab" else 1.0 - judgment["p_first"]


def combine(judgments: list[dict[str, Any]], tie_margin: float = 0.0) -> dict[str, Any]:
    """Aggregate both-order judgments of one pair into the record's preference fields."""
    if not judgments:
        raise ValueError("cannot combine zero judgments")
    principles: dict[str, dict[str, list[float]]] = {}
    for j in judgments:
        principles.setdefault(j["principle_id"], {"ab": [], "ba": []})[j["order"]].append(p_a_of(j))
    per_principle: dict[str, dict[str, Any]] = {}
    for pid, orders in principles.items():
        ab = fmean(orders["ab"]) if orders["ab"] else None
        ba = fmean(orders["ba"]) if orders["ba"] else None
        both = [v for v in (ab, ba) if v is not None]
        per_principle[pid] = {
            "p_a_ab": ab,
            "p_a_ba": ba,
            "p_a_better": fmean(both),
            "consistent": None if ab is None or ba is None else preference(ab) == preference(ba),
        }
    ab_values = [v["p_a_ab"] for v in per_principle.values() if v["p_a_ab"] is not None]
    ba_values = [v["p_a_ba"] for v in per_principle.values() if v["p_a_ba"] is not None]
    p_a = fmean(v["p_a_better"] for v in per_principle.values())
    consistent = bool(ab_values and ba_values and preference(fmean(ab_values)) == preference(fmean(ba_values)))
    return {
        "p_a_better": p_a,
        "chosen": preference(p_a, tie_margin),
        "consistent": consistent,
        "confidence": max(p_a, 1.0 - p_a),
        "per_principle": per_principle,
    }


def lengths(a: str, b: str) -> dict[str, int]:
    """Candidate lengths in characters (the unit the length-bias statistics use)."""
    return {"a": len(a), "b": len(b)}


def chosen_rejected(record: dict[str, Any]) -> tuple[str, str] | None:
    """(chosen text, rejected text) of a decided pair; None for a tie."""
    pick = record.get("chosen")
    if pick not in ("a", "b"):
        return None
    a, b = (c["text"] for c in record["candidates"])
    return (a, b) if pick == "a" else (b, a)


def longer_won(record: dict[str, Any]) -> bool | None:
    """True if the chosen answer is the longer one; None for ties or equal lengths."""
    pair = chosen_rejected(record)
    if pair is None or len(pair[0]) == len(pair[1]):
        return None
    return len(pair[0]) > len(pair[1])


def longer_wins_rate(records: Iterable[dict[str, Any]]) -> float | None:
    """Share of decided, unequal-length pairs where the longer answer was chosen (0.5 = no length bias)."""
    outcomes = [w for w in (longer_won(r) for r in records) if w is not None]
    return sum(outcomes) / len(outcomes) if outcomes else None


def _rank(record_id: str) -> int:
    """The deterministic order of the length balance: the id's hash as an int (sorts as the hex does)."""
    return int(stable_hash(record_id), 16)


class LengthBalance:
    """The cut of :func:`length_balance`, learnt in one pass over the pairs with 8 bytes a pair.

    Each side (longer-chosen, shorter-chosen) keeps the pairs whose id hash is among the ``n``
    smallest of that side, ``n`` being the smaller side's size; :meth:`keeps` then decides a pair
    of a second pass (equal-length pairs and ties are always kept).
    """

    def __init__(self, records: Iterable[dict[str, Any]]):
        sides: dict[bool, array[int]] = {True: array("Q"), False: array("Q")}
        for record in records:
            won = longer_won(record)
            if won is not None:
                sides[won].append(_rank(record["id"]))
        n = min(len(side) for side in sides.values())
        self.kept_per_side = n
        self._cut = {won: _nth_smallest(side, n) for won, side in sides.items()}

    def keeps(self, record: dict[str, Any]) -> bool:
        won = longer_won(record)
        return won is None or _rank(record["id"]) <= self._cut[won]


def _nth_smallest(values: "array[int]", n: int) -> int:
    """The n-th smallest value (1-based): -1 for n == 0 (keep none), above all when n covers all."""
    if n == 0:
        return -1
    if n >= len(values):
        return 2**64
    import numpy as np

    return int(np.partition(np.frombuffer(values, dtype=np.uint64), n - 1)[n - 1])


def length_balance(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep as many longer-chosen as shorter-chosen pairs (equal-length pairs are all kept).

    The larger group is cut to the size of the smaller one in a deterministic order (hash of the
    record id), so the longer-wins rate of the result is 0.5 and reruns select the same pairs.
    """
    balance = LengthBalance(records)
    return [r for r in records if balance.keeps(r)]


def drop_reason(record: dict[str, Any], *, min_confidence: float = 0.5, drop_inconsistent: bool = False) -> str | None:
    """The first filter of :func:`select_pairs` that removes ``record`` (a key of its ``dropped``), or None."""
    if record.get("status") != "ok":
        return "failed"
    if record.get("chosen") not in ("a", "b"):
        return "tie"
    if drop_inconsistent and not record.get("consistent"):
        return "inconsistent"
    if record.get("confidence", 0.0) < min_confidence:
        return "low_confidence"
    return None


def select_pairs(
    records: list[dict[str, Any]],
    *,
    min_confidence: float = 0.5,
    drop_inconsistent: bool = False,
    length_balanced: bool = False,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Decided ok pairs that pass the filters, and how many each filter removed (in this order)."""
    dropped = {"failed": 0, "tie": 0, "inconsistent": 0, "low_confidence": 0, "length_balance": 0}
    kept: list[dict[str, Any]] = []
    for record in records:
        reason = drop_reason(record, min_confidence=min_confidence, drop_inconsistent=drop_inconsistent)
        if reason is None:
            kept.append(record)
        else:
            dropped[reason] += 1
    if length_balanced:
        balanced = length_balance(kept)
        dropped["length_balance"] = len(kept) - len(balanced)
        kept = balanced
    return kept, dropped
