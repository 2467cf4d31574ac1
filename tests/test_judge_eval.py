"""`cai judge-eval`: agreement, bootstrap CI, calibration, and a position-swap count checked by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from judge_fake_server import running_judge

from cai_engine.cli import main
from cai_engine.evaluation.judge_eval import SHIPPED_LABELS, bootstrap_ci, calibration, evaluate

LABELS = [json.loads(line) for line in SHIPPED_LABELS.read_text().splitlines() if line.strip()]
BIASED = {"helpful", "clarity"}  # the scripted judge always picks whatever it sees first on these


def test_shipped_labels_are_well_formed() -> None:
    assert len(LABELS) == 40 and len({r["id"] for r in LABELS}) == 40
    for row in LABELS:
        assert set(row) == {"id", "category", "prompt", "chosen", "rejected", "note"}
        assert row["chosen"].strip() and row["rejected"].strip() and row["chosen"] != row["rejected"]
    # Length bias is probed: in a good share of pairs the worse answer is the longer one.
    assert sum(len(r["rejected"]) > len(r["chosen"]) for r in LABELS) >= 10


def test_bootstrap_ci_and_calibration_math() -> None:
    scores = [1.0] * 30 + [0.0] * 10
    low, high = bootstrap_ci(scores, seed=1)  # type: ignore[misc]
    assert low < 0.75 < high and 0.55 < low and high < 0.9
    assert bootstrap_ci(scores, seed=1) == (low, high)  # seeded: reproducible
    assert bootstrap_ci([]) is None
    # Two bins used: [0.5, 0.6) with conf 0.55 / acc 0.5, [0.9, 1.0] with conf 0.95 / acc 1.0 (1.0 is in the last bin).
    cal = calibration([0.55, 0.55, 0.9, 1.0], [1.0, 0.0, 1.0, 1.0])
    assert cal["ece"] == pytest.approx(0.5 * 0.05 + 0.5 * 0.05)
    assert [b["count"] for b in cal["bins"]] == [2, 0, 0, 0, 2]


def test_failed_records_are_counted_not_scored() -> None:
    ok = {"id": "1", "status": "ok", "label": "a", "chosen": "a", "consistent": True, "confidence": 0.9,
          "candidates": [{"text": "aa"}, {"text": "b"}], "judgments": [{"p_first": 0.9, "order": "ab", "method": "logprobs"}]}
    failed = {"id": "2", "status": "failed", "label": "a"}
    report = evaluate([ok, failed])
    assert (report["pairs"], report["judged"], report["failed"], report["agreement"]) == (2, 1, 1, 1.0)


def _scripted_judge(blocks: dict[str, str]) -> float:
    """P(A): always the first shown on BIASED pairs, else 0.8 for the human-chosen answer."""
    row = next(r for r in LABELS if blocks["A"] in (r["chosen"].strip(), r["rejected"].strip()))
    if row["category"] in BIASED:
        return 0.9
    return 0.8 if blocks["A"] == row["chosen"].strip() else 0.2


def test_judge_eval_cli_reports_match_a_hand_count(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "eval"
    with running_judge(decide=_scripted_judge) as provider:
        config = tmp_path / "judge.yaml"
        config.write_text(f"base_urls: ['{provider.openai_base}']\nmax_concurrency: 16\n")
        args = ["judge-eval", "--judge-model", "openai/scripted", "--judge-config", str(config), "-c", "general", "-o", str(out), "--no-cache"]
        main(args)
        calls = provider.counts["chat"]
        main(args)  # a rerun resumes: no new judge call, same report
        assert provider.counts["chat"] == calls == 40 * 2 * 2  # 40 pairs x 2 principles x 2 orders
    report = json.loads((out / "judge_eval.json").read_text())

    # Hand count straight from the labels file.
    biased = [r for r in LABELS if r["category"] in BIASED]
    fair = [r for r in LABELS if r["category"] not in BIASED]
    assert report["inconsistent"] == len(biased) == 12
    assert report["position_consistency_rate"] == pytest.approx(len(fair) / 40)
    assert report["ties"] == len(biased)
    assert report["agreement"] == pytest.approx((len(fair) + 0.5 * len(biased)) / 40)
    lo, hi = report["agreement_ci95"]
    assert lo <= report["agreement"] <= hi
    # Each biased pair's 4 judgments all pick the first shown; each fair pair's 4 split 2/2.
    assert report["first_position_win_rate"] == pytest.approx((4 * len(biased) + 2 * len(fair)) / (4 * 40))
    assert report["longer_wins_rate_judge"] == pytest.approx(
        sum(len(r["chosen"]) > len(r["rejected"]) for r in fair) / len(fair)
    )
    assert report["longer_wins_rate_human"] == pytest.approx(sum(len(r["chosen"]) > len(r["rejected"]) for r in LABELS) / 40)
    # Fair pairs: P(chosen) is 0.8 shown first; shown second the top-5 cut drops "(A" (see
    # test_judge_fake_server), giving 1 - 0.18/0.98. Confidence is their mean; the agreement is 1.
    confidence = (0.8 + (1 - 0.18 / 0.98)) / 2
    assert report["calibration"]["ece"] == pytest.approx((1 - confidence) * len(fair) / 40, abs=1e-4)
    assert report["per_category"]["helpful"]["position_consistency_rate"] == 0.0
    assert report["per_category"]["honesty"] == {"n": 9, "agreement": 1.0, "position_consistency_rate": 1.0}
    assert all(v["n"] > 0 for v in report["per_principle"].values())
    assert report["verdict_methods"] == {"logprobs": 160}
    for name in ("judge_eval.md", "reliability.png", "pairs.jsonl", "manifest.json"):
        assert (out / name).stat().st_size > 0
    assert (out / "reliability.png").read_bytes()[:4] == b"\x89PNG"
    assert "agreement with humans" in capsys.readouterr().out


def test_judge_eval_rejects_unlabelled_pairs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    unlabelled = tmp_path / "u.jsonl"
    unlabelled.write_text(json.dumps({"prompt": "q", "response_a": "x", "response_b": "y"}) + "\n")
    with pytest.raises(SystemExit):
        main(["judge-eval", "--labels", str(unlabelled), "--judge-model", "mock/x", "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs 'chosen' and 'rejected'" in err[0]
