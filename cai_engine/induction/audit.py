"""``cai constitution audit``: which principles drive AI-judged pairs, which are noise, which fight the others.

Read from the ``per_principle`` verdicts that every pair record of ``cai judge`` keeps (each
principle's P(a better), averaged over both orders, and whether the orders agreed). Per principle:

* **with the final label**: how often its own pick matches the pair's aggregated ``chosen``
  (it is part of that aggregate, so this flatters it);
* **with the others** (leave-one-out): its pick against the mean of the *other* principles judged
  on the same pair, the fair test of whether it pulls with or against the rest; needs pairs judged
  by two or more principles (``-k 2``);
* **pivotal**: pairs whose final pick would change without it;
* **abstains**: its verdict is a tie, or the two orders disagree (position, not principle);
* with human labels in the records (``cai judge-eval`` output), its agreement with them.

A principle is flagged *fights the others* when the 95% interval of its leave-one-out agreement
lies below 0.5, *leans against* when only the point estimate does, *noise* when it abstains on
at least half its pairs; pairs of principles that disagree most with each other are listed too.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from statistics import fmean
from typing import Any, Iterable

from cai_engine.atomic import write_json_atomic
from cai_engine.evaluation.judge_eval import bootstrap_ci
from cai_engine.pipelines.aggregate import preference

NOISE_ABSTAIN = 0.5
TOP_CONFLICTS = 5


def _pick(stats: dict[str, Any]) -> str:
    return preference(stats["p_a_better"])


def _rate(agree: int, disagree: int) -> float | None:
    return round(agree / (agree + disagree), 4) if agree + disagree else None


class _Tally:
    def __init__(self) -> None:
        self.n = 0
        self.picks = {"a": 0, "b": 0, "tie": 0}
        self.abstain = 0
        self.final = {"agree": 0, "disagree": 0, "abstain": 0}
        self.rest: list[float] = []  # 1 agree / 0 disagree with the others' mean, decided pairs only
        self.rest_abstain = 0
        self.pivotal = 0
        self.pivotal_toward_label = 0
        self.label = {"agree": 0, "disagree": 0, "abstain": 0}
        self.consistent: list[bool] = []

    def compare(self, key: str, mine: str, other: str) -> None:
        table = getattr(self, key)
        table["abstain" if "tie" in (mine, other) else "agree" if mine == other else "disagree"] += 1


def audit_records(records: Iterable[dict[str, Any]], *, min_pairs: int = 5, seed: int = 0) -> dict[str, Any]:
    """The audit of judged pair records (latest per id); failed and identical pairs are skipped."""
    tallies: dict[str, _Tally] = {}
    co: dict[tuple[str, str], list[int]] = {}  # (p, q) -> [agree, disagree] on pairs both decided
    pairs = skipped = multi = labelled = 0
    for r in records:
        per = r.get("per_principle") or {}
        if r.get("status") != "ok" or not per:
            skipped += 1
            continue
        pairs += 1
        multi += len(per) > 1
        label = r.get("label") if r.get("label") in ("a", "b") else None
        labelled += label is not None
        final = r.get("chosen", "tie")
        picks = {pid: _pick(s) for pid, s in per.items()}
        for pid, stats in per.items():
            t = tallies.setdefault(pid, _Tally())
            mine = picks[pid]
            t.n += 1
            t.picks[mine] += 1
            inconsistent = stats.get("consistent") is False
            if stats.get("consistent") is not None:
                t.consistent.append(bool(stats["consistent"]))
            t.abstain += mine == "tie" or inconsistent
            t.compare("final", mine, final)
            if label is not None:
                t.compare("label", mine, label)
            others = [s["p_a_better"] for q, s in per.items() if q != pid]
            if others:
                rest = preference(fmean(others))
                if "tie" in (mine, rest):
                    t.rest_abstain += 1
                else:
                    t.rest.append(1.0 if mine == rest else 0.0)
                if rest != final:
                    t.pivotal += 1
                    t.pivotal_toward_label += label is not None and final == label
        for p, q in itertools.combinations(sorted(per), 2):
            if "tie" not in (picks[p], picks[q]):
                cell = co.setdefault((p, q), [0, 0])
                cell[0 if picks[p] == picks[q] else 1] += 1

    principles = {}
    for pid, t in sorted(tallies.items()):
        rest_rate = round(fmean(t.rest), 4) if t.rest else None
        ci = bootstrap_ci(t.rest, seed=seed)
        abstain_rate = round(t.abstain / t.n, 4) if t.n else None
        principles[pid] = {
            "n": t.n, "picks": t.picks, "abstain_rate": abstain_rate,
            "position_consistency": round(sum(t.consistent) / len(t.consistent), 4) if t.consistent else None,
            "with_final": {**t.final, "agreement": _rate(t.final["agree"], t.final["disagree"])},
            "with_others": {"n": len(t.rest), "abstain": t.rest_abstain, "agreement": rest_rate, "ci95": ci},
            "pivotal": t.pivotal, "pivotal_toward_label": t.pivotal_toward_label,
            "with_label": ({**t.label, "agreement": _rate(t.label["agree"], t.label["disagree"])} if labelled else None),
            "flag": _flag(len(t.rest), rest_rate, ci, abstain_rate, min_pairs),
        }
    conflicts = [
        {"principles": [p, q], "n": a + d, "agreement": round(a / (a + d), 4)}
        for (p, q), (a, d) in co.items() if a + d >= min_pairs
    ]
    conflicts.sort(key=lambda c: (c["agreement"], -c["n"]))
    return {
        "pairs": pairs, "skipped": skipped, "multi_principle_pairs": multi, "labelled_pairs": labelled,
        "min_pairs": min_pairs, "principles": principles, "conflicts": conflicts[:TOP_CONFLICTS],
    }


def _flag(n_rest: int, rate: float | None, ci: tuple[float, float] | None, abstain: float | None, min_pairs: int) -> str:
    if abstain is not None and abstain >= NOISE_ABSTAIN:
        return "noise"
    if n_rest < min_pairs or rate is None:
        return "too few pairs"
    if ci is not None and ci[1] < 0.5:
        return "fights the others"
    if rate < 0.5:
        return "leans against"
    return "agrees"


def render_markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Constitution audit: {report.get('source', '')}", "",
        f"{report['pairs']} judged pairs ({report['multi_principle_pairs']} judged by two or more principles, "
        f"{report['labelled_pairs']} with human labels; {report['skipped']} failed or without verdicts skipped).", "",
    ]
    if report["pairs"] and not report["multi_principle_pairs"]:
        lines += ["Every pair was judged by one principle, so no principle can be compared with the others; "
                  "judge with `-k 2` or more for the leave-one-out figures.", ""]
    lines += [
        "| principle | pairs | picks a/b/tie | abstains | agrees with final | agrees with the others (95% CI) | pivotal | "
        "agrees with humans | flag |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for pid, p in report["principles"].items():
        o = p["with_others"]
        ci = f" ({o['ci95'][0]}-{o['ci95'][1]})" if o["ci95"] else ""
        human = p["with_label"]["agreement"] if p["with_label"] else "-"
        picks = p["picks"]
        lines.append(f"| {pid} | {p['n']} | {picks['a']}/{picks['b']}/{picks['tie']} | {p['abstain_rate']} | "
                     f"{p['with_final']['agreement']} | {o['agreement']}{ci} (n={o['n']}) | {p['pivotal']} | {human} | "
                     f"{p['flag']} |")
    lines.append("")
    flagged = {pid: p["flag"] for pid, p in report["principles"].items() if p["flag"] in ("noise", "fights the others", "leans against")}
    if flagged:
        lines += ["## To look at", ""]
        lines += [f"- **{pid}**: {flag}" for pid, flag in flagged.items()]
        lines.append("")
    if report["conflicts"]:
        lines += ["## Principles that disagree most with each other", "", "| principles | pairs both decided | agreement |",
                  "|---|---|---|"]
        lines += [f"| {' vs '.join(c['principles'])} | {c['n']} | {c['agreement']} |" for c in report["conflicts"]]
        lines.append("")
    lines += [
        "*with the others*: the principle's pick against the mean verdict of the other principles on the same pair "
        "(leave-one-out). *pivotal*: pairs whose final pick changes without it. *abstains*: a tie, or the two orders "
        "disagree. Flags need at least " + str(report["min_pairs"]) + " pairs (`--min-pairs`).", "",
    ]
    return "\n".join(lines)


def write_audit(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "audit.json", "markdown": out_dir / "audit.md"}
    write_json_atomic(paths["json"], report)
    paths["markdown"].write_text(render_markdown(report), encoding="utf-8")
    return paths
