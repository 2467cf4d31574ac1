"""`cai constitution audit` and per-principle `judge-eval` figures, on records whose per-principle verdicts are known.

Eleven labelled pairs. Ten are judged by four principles: ``good`` and ``good2`` side with the label,
``contrarian`` always takes the other answer, ``noisy`` says 0.5 and flips with the order. One more
pair is judged by ``good`` and ``contrarian`` only, where the contrarian outweighs the good one and
flips the final verdict. Every figure below is counted by hand from that description.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import cai_engine
from cai_engine.cli import main
from cai_engine.errors import CaiError
from cai_engine.evaluation.judge_eval import evaluate, render_markdown
from cai_engine.pipelines.aggregate import preference


def _record(i: int, label: str, p_label: dict[str, float]) -> dict[str, Any]:
    """A judged pair record; ``p_label`` is each principle's P(the labelled answer is better)."""
    per = {}
    for pid, p in p_label.items():
        p_a = p if label == "a" else 1.0 - p
        per[pid] = {"p_a_ab": p_a, "p_a_ba": p_a, "p_a_better": p_a, "consistent": pid != "noisy"}
    p_a = sum(v["p_a_better"] for v in per.values()) / len(per)
    chosen = preference(p_a)
    return {"id": f"{i:040x}", "status": "ok", "label": label, "chosen": chosen, "p_a_better": p_a,
            "confidence": max(p_a, 1 - p_a), "consistent": True, "principles": list(per), "per_principle": per,
            "candidates": [{"id": "a", "text": f"answer a {i}"}, {"id": "b", "text": f"answer b {i} longer"}],
            "judgments": [{"principle_id": pid, "order": "ab", "p_first": v["p_a_ab"], "method": "logprobs"}
                          for pid, v in per.items()],
            "meta": {"id": f"pair-{i}"}}


def _records() -> list[dict[str, Any]]:
    four = {"good": 0.9, "good2": 0.8, "contrarian": 0.3, "noisy": 0.5}
    rows = [_record(i, "a" if i % 2 else "b", four) for i in range(10)]
    rows.append(_record(10, "a", {"good": 0.7, "contrarian": 0.2}))  # final: 0.45 -> the wrong answer
    return rows


def _write(tmp_path: Path) -> Path:
    folder = tmp_path / "pairs"
    folder.mkdir()
    (folder / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _records()))
    return folder


def test_audit_finds_the_principle_that_fights_and_the_one_that_is_noise(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _write(tmp_path)
    main(["constitution", "audit", str(folder)])
    report = json.loads((folder / "audit.json").read_text())
    assert (report["pairs"], report["multi_principle_pairs"], report["labelled_pairs"]) == (11, 11, 11)
    good, contrarian, noisy, good2 = (report["principles"][k] for k in ("good", "contrarian", "noisy", "good2"))
    # good: sides with the final verdict on the 10 four-principle pairs, not on the pair the contrarian flipped.
    assert good["n"] == 11 and good["with_final"]["agree"] == 10 and good["with_final"]["disagree"] == 1
    assert good["with_others"]["agreement"] == pytest.approx(10 / 11, abs=1e-4) and good["flag"] == "agrees"
    assert good["with_label"]["agreement"] == 1.0 and good["pivotal"] == 0
    # contrarian: against the others on every pair; it alone decided (wrongly) the eleventh.
    assert contrarian["with_others"]["agreement"] == 0.0 and contrarian["with_others"]["ci95"] == [0.0, 0.0]
    assert contrarian["flag"] == "fights the others" and contrarian["with_label"]["agreement"] == 0.0
    assert contrarian["pivotal"] == 1 and contrarian["pivotal_toward_label"] == 0
    assert noisy["abstain_rate"] == 1.0 and noisy["picks"]["tie"] == 10 and noisy["flag"] == "noise"
    assert good2["flag"] == "agrees" and good2["position_consistency"] == 1.0
    assert report["conflicts"][0] == {"principles": ["contrarian", "good"], "n": 11, "agreement": 0.0}
    printed = capsys.readouterr().out
    assert "fights the others" in printed and (folder / "audit.md").exists()


def test_audit_api_and_single_principle_pairs(tmp_path: Path) -> None:
    single = tmp_path / "one.jsonl"
    single.write_text("".join(json.dumps(_record(i, "a", {"only": 0.9})) + "\n" for i in range(6)))
    report = cai_engine.audit(single, out=tmp_path / "audit", min_pairs=3)
    assert report["multi_principle_pairs"] == 0 and report["principles"]["only"]["flag"] == "too few pairs"
    assert "judge with `-k 2`" in (tmp_path / "audit" / "audit.md").read_text()
    with pytest.raises(CaiError, match="not found"):
        cai_engine.audit(tmp_path / "missing")


def test_judge_eval_breaks_agreement_down_by_principle() -> None:
    report = evaluate(_records())
    per = report["per_principle"]
    assert (per["good"]["agree"], per["good"]["disagree"], per["good"]["tie"]) == (11, 0, 0)
    assert (per["contrarian"]["agree"], per["contrarian"]["disagree"]) == (0, 11)
    assert per["noisy"]["tie"] == 10 and per["noisy"]["agreement"] == 0.5
    assert per["good"]["agreement_ci95"] == (1.0, 1.0)
    low, high = per["good2"]["agreement_ci95"]
    assert low <= per["good2"]["agreement"] <= high
    worst = report["most_disagreed_principles"]
    assert [w["principle"] for w in worst] == ["contrarian"]
    assert worst[0]["disagreement_rate"] == 1.0 and worst[0]["pairs"] == [f"pair-{i}" for i in range(5)]
    markdown = render_markdown({**report, "judge_model": "x", "constitution": "c", "labels": "l"})
    assert "## Principles the judge disagrees with most" in markdown and "| contrarian | 11 | 0 / 11 / 0 |" in markdown
