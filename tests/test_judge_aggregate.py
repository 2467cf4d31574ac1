"""Both-order aggregation math, consistency flags, ties, filters and length statistics (hand-computed values)."""

from __future__ import annotations

import pytest

from cai_engine.pipelines.aggregate import combine, length_balance, longer_wins_rate, preference, select_pairs


def j(pid: str, order: str, p_first: float) -> dict[str, object]:
    return {"principle_id": pid, "order": order, "p_first": p_first}


def test_both_orders_cancel_a_pure_position_bias() -> None:
    # The judge always prefers whatever is shown first with 0.9: P(a) = (0.9 + (1 - 0.9)) / 2 = 0.5.
    out = combine([j("p", "ab", 0.9), j("p", "ba", 0.9)])
    assert out["p_a_better"] == pytest.approx(0.5)
    assert out["chosen"] == "tie" and out["consistent"] is False and out["confidence"] == pytest.approx(0.5)


def test_soft_both_order_average_and_consistency() -> None:
    # ab: a shown first, P(first)=0.8 -> P(a)=0.8; ba: b first, P(first)=0.3 -> P(a)=0.7; mean 0.75.
    out = combine([j("p", "ab", 0.8), j("p", "ba", 0.3)])
    assert out["p_a_better"] == pytest.approx(0.75)
    assert out["chosen"] == "a" and out["consistent"] is True and out["confidence"] == pytest.approx(0.75)
    assert out["per_principle"]["p"] == {"p_a_ab": 0.8, "p_a_ba": pytest.approx(0.7), "p_a_better": pytest.approx(0.75), "consistent": True}


def test_inconsistent_soft_pair_still_has_a_lean_but_is_flagged() -> None:
    # ab: P(a)=0.9; ba: P(first)=0.6 -> P(a)=0.4. Mean 0.65 -> 'a', but the swap changed the winner.
    out = combine([j("p", "ab", 0.9), j("p", "ba", 0.6)])
    assert out["p_a_better"] == pytest.approx(0.65) and out["chosen"] == "a" and out["consistent"] is False


def test_ensemble_of_principles_is_an_equal_weight_mean() -> None:
    out = combine([j("x", "ab", 1.0), j("x", "ba", 0.0), j("y", "ab", 0.4), j("y", "ba", 0.8)])
    # x: P(a)=1 both orders; y: 0.4 and 0.2 -> 0.3. Ensemble: (1 + 0.3) / 2 = 0.65.
    assert out["p_a_better"] == pytest.approx(0.65)
    assert out["per_principle"]["x"]["consistent"] is True and out["per_principle"]["y"]["consistent"] is True
    # Per order over the ensemble: ab mean (1 + 0.4)/2 = 0.7 -> a; ba mean (1 + 0.2)/2 = 0.6 -> a: consistent.
    assert out["consistent"] is True and out["chosen"] == "a"


def test_hard_verdicts_ties_and_margin() -> None:
    assert combine([j("p", "ab", 0.0), j("p", "ba", 1.0)])["chosen"] == "b"
    assert combine([j("p", "ab", 0.5), j("p", "ba", 0.5)]) | {"per_principle": None} == {
        "p_a_better": 0.5, "chosen": "tie", "consistent": True, "confidence": 0.5, "per_principle": None,
    }
    assert combine([j("p", "ab", 0.56), j("p", "ba", 0.44)], tie_margin=0.1)["chosen"] == "tie"
    assert preference(0.56, 0.05) == "a" and preference(0.44, 0.05) == "b"
    with pytest.raises(ValueError):
        combine([])


def rec(rid: str, chosen: str, a: str, b: str, consistent: bool = True, confidence: float = 0.9, status: str = "ok") -> dict[str, object]:
    return {"id": rid, "status": status, "chosen": chosen, "consistent": consistent, "confidence": confidence,
            "candidates": [{"id": "a", "text": a}, {"id": "b", "text": b}]}


def test_longer_wins_rate_and_length_balance() -> None:
    records = [
        rec("1", "a", "long answer", "s"),       # longer won
        rec("2", "b", "x", "much longer text"),  # longer won
        rec("3", "a", "looooong", "s"),          # longer won
        rec("4", "a", "s", "longer"),            # shorter won
        rec("5", "a", "same", "same"),           # equal length: not counted
        rec("6", "tie", "aaaa", "b"),            # tie: not counted
    ]
    assert longer_wins_rate(records) == pytest.approx(3 / 4)
    balanced = length_balance([r for r in records if r["chosen"] != "tie"])
    ids = {r["id"] for r in balanced}
    assert "4" in ids and "5" in ids and len(ids & {"1", "2", "3"}) == 1
    assert longer_wins_rate(balanced) == pytest.approx(0.5)
    assert length_balance(balanced) == balanced  # already balanced: stable


def test_select_pairs_filters_in_order_and_counts() -> None:
    records = [
        rec("ok", "a", "aa", "b"),
        rec("lowconf", "b", "a", "bb", confidence=0.55),
        rec("incons", "a", "aa", "b", consistent=False),
        rec("tie", "tie", "a", "b", confidence=0.5),
        rec("fail", "a", "a", "b", status="failed"),
    ]
    kept, dropped = select_pairs(records, min_confidence=0.6, drop_inconsistent=True)
    assert [r["id"] for r in kept] == ["ok"]
    assert dropped == {"failed": 1, "tie": 1, "inconsistent": 1, "low_confidence": 1, "length_balance": 0}
    kept, dropped = select_pairs(records)
    assert [r["id"] for r in kept] == ["ok", "lowconf", "incons"]
