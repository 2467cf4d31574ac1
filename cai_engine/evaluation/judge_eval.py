"""How well does a judge agree with people? Agreement, position consistency, length bias, calibration.

The labelled file is JSONL of ``prompt``/``chosen``/``rejected`` (plus optional ``id``,
``category``, ``note``). Every pair goes through the real judge pipeline (both orders, the same
records and resume as ``cai judge``), then this module scores the records:

* agreement: the judge's pick equals the human's (a tie scores 0.5), with a percentile bootstrap
  95% confidence interval over pairs (the labelled set is small, so the interval matters);
* position consistency: share of pairs whose verdict survives swapping A and B, and how often the
  first-shown candidate wins over all single judgments (0.5 = no position bias);
* length: how often the judge's pick is the longer answer, next to the same rate for the humans;
* calibration: ECE over bins of the judge's confidence in its own pick (0.5-1.0) and a reliability diagram;
* per principle: its own verdicts against the labels (agree/disagree/tie counts, agreement with a
  bootstrap interval, the pairs it got wrong) and the principles the judge disagrees with most;
* agreement/consistency per category.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from statistics import fmean
from typing import Any

from cai_engine.paths import data_path
from cai_engine.pipelines.aggregate import longer_wins_rate, preference

CONFIDENCE_BINS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
MAX_PAIRS_LISTED = 5
#: The small original labelled set shipped with the package (see its README for how it was written).
SHIPPED_LABELS = data_path("judge_eval", "labels.jsonl")


def pair_score(chosen: str, label: str) -> float:
    """1 for agreement, 0.5 for a tie, 0 for disagreement."""
    return 1.0 if chosen == label else 0.5 if chosen == "tie" else 0.0


def bootstrap_ci(scores: list[float], *, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean of ``scores`` (seeded, so reports are reproducible)."""
    if not scores:
        return None
    rng = random.Random(seed)
    n = len(scores)
    means = sorted(fmean(rng.choices(scores, k=n)) for _ in range(n_boot))
    tail = (1.0 - level) / 2.0
    low = means[int(tail * (n_boot - 1))]
    high = means[int((1.0 - tail) * (n_boot - 1))]
    return round(low, 4), round(high, 4)


def calibration(confidences: list[float], correct: list[float], edges: tuple[float, ...] = CONFIDENCE_BINS) -> dict[str, Any]:
    """Expected calibration error over confidence bins, and the per-bin table for the diagram."""
    bins = []
    total = len(confidences)
    ece = 0.0
    for i, (low, high) in enumerate(zip(edges, edges[1:])):
        last = i == len(edges) - 2
        members = [k for k, c in enumerate(confidences) if low <= c < high or (last and c == high)]
        if not members:
            bins.append({"low": low, "high": high, "count": 0, "mean_confidence": None, "accuracy": None})
            continue
        mean_conf = fmean(confidences[k] for k in members)
        accuracy = fmean(correct[k] for k in members)
        ece += abs(accuracy - mean_conf) * len(members) / total
        bins.append({"low": low, "high": high, "count": len(members), "mean_confidence": round(mean_conf, 4), "accuracy": round(accuracy, 4)})
    return {"ece": round(ece, 4) if total else None, "bins": bins}


def _label_p(record: dict[str, Any], p_a: float) -> float:
    return p_a if record["label"] == "a" else 1.0 - p_a


def _group_stats(entries: list[tuple[float, bool | None]]) -> dict[str, Any]:
    """Agreement and consistency of (score, consistent) entries."""
    flags = [c for _, c in entries if c is not None]
    return {
        "n": len(entries),
        "agreement": round(fmean(s for s, _ in entries), 4) if entries else None,
        "position_consistency_rate": round(sum(flags) / len(flags), 4) if flags else None,
    }


def _pair_name(record: dict[str, Any]) -> str:
    """How a report names a pair: the labels file's own id when it has one, else the record id."""
    return str((record.get("meta") or {}).get("id") or record["id"][:12])


def _principle_stats(entries: list[tuple[float, bool | None, str]], *, n_boot: int, seed: int) -> dict[str, Any]:
    """One principle's own verdicts against the labels: counts, agreement with its interval, and the
    pairs it got wrong (the first few, to read in `cai view`)."""
    scores = [s for s, _, _ in entries]
    wrong = [name for s, _, name in entries if s == 0.0]
    return {
        **_group_stats([(s, c) for s, c, _ in entries]),
        "agree": sum(1 for s in scores if s == 1.0), "disagree": len(wrong), "tie": sum(1 for s in scores if s == 0.5),
        "agreement_ci95": bootstrap_ci(scores, n_boot=n_boot, seed=seed),
        "disagreed_pairs": wrong[:MAX_PAIRS_LISTED],
    }


def most_disagreed(principles: dict[str, dict[str, Any]], top: int = 5) -> list[dict[str, Any]]:
    """The principles whose own verdicts go against the labels most often (share of their pairs), worst first."""
    rows = [{"principle": pid, "n": p["n"], "disagree": p["disagree"], "disagreement_rate": round(p["disagree"] / p["n"], 4),
             "agreement": p["agreement"], "agreement_ci95": p["agreement_ci95"], "pairs": p["disagreed_pairs"]}
            for pid, p in principles.items() if p["n"] and p["disagree"]]
    rows.sort(key=lambda r: (-r["disagreement_rate"], -r["n"], r["principle"]))
    return rows[:top]


def evaluate(records: list[dict[str, Any]], *, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Score judged, labelled pair records (latest per id). Failed records are counted, not scored."""
    labelled = [r for r in records if r.get("label") in ("a", "b")]
    ok = [r for r in labelled if r.get("status") == "ok"]
    scores = [pair_score(r["chosen"], r["label"]) for r in ok]
    judgments = [j for r in ok for j in r.get("judgments", [])]
    first_wins = [{"a": 1.0, "tie": 0.5, "b": 0.0}[preference(j["p_first"])] for j in judgments]
    human = [
        {"id": r["id"], "candidates": r["candidates"], "chosen": r["label"]} for r in ok
    ]
    confidences = [r["confidence"] for r in ok]
    correct = [1.0 if r["chosen"] == r["label"] else 0.5 if r["chosen"] == "tie" else 0.0 for r in ok]

    per_principle: dict[str, list[tuple[float, bool | None, str]]] = {}
    for r in ok:
        for pid, stats in r.get("per_principle", {}).items():
            pick = preference(_label_p(r, stats["p_a_better"]))
            score = 1.0 if pick == "a" else 0.5 if pick == "tie" else 0.0
            per_principle.setdefault(pid, []).append((score, stats.get("consistent"), _pair_name(r)))
    principles = {pid: _principle_stats(v, n_boot=n_boot, seed=seed) for pid, v in sorted(per_principle.items())}
    per_category: dict[str, list[tuple[float, bool | None]]] = {}
    for r, score in zip(ok, scores):
        category = (r.get("meta") or {}).get("category", "uncategorised")
        per_category.setdefault(category, []).append((score, bool(r.get("consistent"))))

    return {
        "pairs": len(labelled),
        "judged": len(ok),
        "failed": len(labelled) - len(ok),
        "agreement": round(fmean(scores), 4) if scores else None,
        "agreement_ci95": bootstrap_ci(scores, n_boot=n_boot, seed=seed),
        "ties": sum(1 for r in ok if r["chosen"] == "tie"),
        "inconsistent": sum(1 for r in ok if not r.get("consistent")),
        "position_consistency_rate": round(sum(1 for r in ok if r.get("consistent")) / len(ok), 4) if ok else None,
        "first_position_win_rate": round(fmean(first_wins), 4) if first_wins else None,
        "longer_wins_rate_judge": _round(longer_wins_rate(ok)),
        "longer_wins_rate_human": _round(longer_wins_rate(human)),
        "mean_confidence": round(fmean(confidences), 4) if confidences else None,
        "calibration": calibration(confidences, correct),
        "verdict_methods": _count(j["method"] for j in judgments),
        "per_principle": principles,
        "most_disagreed_principles": most_disagreed(principles),
        "per_category": {c: _group_stats(v) for c, v in sorted(per_category.items())},
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return counts


def reliability_png(report: dict[str, Any], path: Path) -> Path:
    """Reliability diagram: accuracy per confidence bin against the diagonal, with bin counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = report["calibration"]["bins"]
    fig, ax = plt.subplots(figsize=(5, 4.5), dpi=110)
    centers = [(b["low"] + b["high"]) / 2 for b in bins]
    width = bins[0]["high"] - bins[0]["low"] if bins else 0.1
    heights = [b["accuracy"] if b["accuracy"] is not None else 0.0 for b in bins]
    ax.bar(centers, heights, width=width * 0.9, color="#4c72b0", alpha=0.8, label="agreement in bin")
    ax.plot([0.5, 1.0], [0.5, 1.0], "k--", linewidth=1, label="perfect calibration")
    for c, h, b in zip(centers, heights, bins):
        if b["count"]:
            ax.text(c, h + 0.02, f"n={b['count']}", ha="center", fontsize=8)
    ax.set_xlim(0.5, 1.0)
    ax.set_ylim(0.0, 1.1)
    ax.set_xlabel("judge confidence in its own pick (max of P(A better), P(B better))")
    ax.set_ylabel("agreement with human label")
    ax.set_title(f"Reliability (ECE {report['calibration']['ece']})")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def render_markdown(report: dict[str, Any]) -> str:
    ci = report["agreement_ci95"]
    lines = [
        f"# Judge evaluation: {report.get('judge_model', '?')}",
        "",
        f"Constitution: {report.get('constitution', '?')}; labels: {report.get('labels', '?')}",
        "",
        "| figure | value |",
        "|---|---|",
        f"| pairs (judged / failed) | {report['pairs']} ({report['judged']} / {report['failed']}) |",
        f"| agreement with humans | {report['agreement']} (95% CI {ci[0] if ci else '-'} - {ci[1] if ci else '-'}) |",
        f"| ties | {report['ties']} |",
        f"| position-consistency rate | {report['position_consistency_rate']} ({report['inconsistent']} inconsistent) |",
        f"| first-position win rate (single judgments) | {report['first_position_win_rate']} |",
        f"| longer answer wins: judge / humans | {report['longer_wins_rate_judge']} / {report['longer_wins_rate_human']} |",
        f"| mean confidence | {report['mean_confidence']} |",
        f"| ECE | {report['calibration']['ece']} |",
        f"| verdict methods | {json.dumps(report['verdict_methods'])} |",
        "",
        "![reliability](reliability.png)",
        "",
    ]
    lines += ["## Per principle", "", "Each principle's own verdict (both orders averaged) against the human label.", "",
              "| principle | n | agree / disagree / tie | agreement (95% CI) | consistency |", "|---|---|---|---|---|"]
    for k, v in report["per_principle"].items():
        ci = v.get("agreement_ci95")
        counts = f"{v['agree']} / {v['disagree']} / {v['tie']}" if "agree" in v else "-"
        lines.append(f"| {k} | {v['n']} | {counts} | {v['agreement']} ({ci[0]}-{ci[1]}) | {v['position_consistency_rate']} |"
                     if ci else f"| {k} | {v['n']} | {counts} | {v['agreement']} | {v['position_consistency_rate']} |")
    lines.append("")
    worst = report.get("most_disagreed_principles") or []
    if worst:
        lines += ["## Principles the judge disagrees with most", "",
                  "| principle | disagrees on | agreement | pairs (first few) |", "|---|---|---|---|"]
        lines += [f"| {w['principle']} | {w['disagree']} of {w['n']} ({w['disagreement_rate']}) | {w['agreement']} | "
                  f"{', '.join(w['pairs'])} |" for w in worst]
        lines.append("")
    lines += ["## Per category", "", "| name | n | agreement | consistency |", "|---|---|---|---|"]
    lines += [f"| {k} | {v['n']} | {v['agreement']} | {v['position_consistency_rate']} |" for k, v in report["per_category"].items()]
    lines.append("")
    return "\n".join(lines)


def write_report(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """judge_eval.json, judge_eval.md and reliability.png in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "judge_eval.json", "markdown": out_dir / "judge_eval.md", "png": out_dir / "reliability.png"}
    paths["json"].write_text(json.dumps(report, indent=2, ensure_ascii=False))
    paths["markdown"].write_text(render_markdown(report))
    reliability_png(report, paths["png"])
    return paths
