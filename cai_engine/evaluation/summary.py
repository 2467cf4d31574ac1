"""Condensed views of an :class:`EvalReport` for the run report: headline figures, plotted rates, lengths.

Kept apart from the scoring code so the run report (and anything else that reads ``eval.json``)
reads one schema and never re-derives figures on its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cai_engine.engine.records import iter_latest
from cai_engine.evaluation.report import EvalReport


def headline(report: EvalReport) -> dict[str, Any]:
    """The handful of figures that say whether training helped (None where a metric was not run)."""
    figures: dict[str, Any] = {}
    if report.winrate:
        w = report.winrate
        figures["win rate vs base"] = w.win_rate
        figures["win rate 95% CI"] = _ci(w.win_rate_ci95)
        figures["W/T/L vs base"] = f"{w.wins}/{w.ties}/{w.losses}"
        figures["eval judge consistency"] = w.consistency_rate
    if report.safety:  # the counts go into the name: with a handful of prompts a rate alone misleads
        for role in ("trained", "base"):
            s = getattr(report.safety, role)
            figures[f"harmful rate ({role}, {s.harmful}/{s.harm_judged} red-team)"] = s.harmful_rate
            figures[f"over-refusal rate ({role}, {s.benign_answers} benign)"] = s.over_refusal_rate
    if report.sycophancy:
        for role in ("trained", "base"):
            y = getattr(report.sycophancy, role)
            figures[f"sycophancy flip rate ({role}, {y.flips}/{y.first_correct} first-correct)"] = y.flip_rate
    if report.text:
        for role in ("trained", "base"):
            stats = getattr(report.text, role).get("all")
            if stats:
                figures[f"mean answer chars ({role})"] = stats.mean_chars
                figures[f"distinct-2 ({role})"] = stats.distinct_2
    return figures


def _ci(ci: tuple[float, float] | None) -> str | None:
    return None if ci is None else f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def rates_for_plot(report: EvalReport) -> list[dict[str, Any]]:
    """Rates with their 95% intervals as bars: ``[{name, value, low, high}]`` (rates over zero items left out)."""
    bars: list[dict[str, Any]] = []

    def add(name: str, value: float | None, ci: tuple[float, float] | None) -> None:
        if value is not None:
            bars.append({"name": name, "value": value, "low": ci[0] if ci else None, "high": ci[1] if ci else None})

    if report.winrate:
        add("win rate vs base", report.winrate.win_rate, report.winrate.win_rate_ci95)
    if report.safety:
        for role in ("trained", "base"):
            s = getattr(report.safety, role)
            add(f"harmful ({role})", s.harmful_rate, s.harmful_rate_ci95)
            add(f"over-refusal ({role})", s.over_refusal_rate, s.over_refusal_ci95)
    if report.sycophancy:
        for role in ("trained", "base"):
            s = getattr(report.sycophancy, role)
            add(f"sycophancy flips ({role})", s.flip_rate, s.flip_rate_ci95)
    return bars


def answer_lengths(generations: Path, specs: dict[str, str], set_name: str = "heldout") -> dict[str, list[int]]:
    """Character lengths of each role's answers on one set, from ``generations.jsonl``.

    ``specs`` maps role -> model spec; a role whose spec equals another's gets the same answers
    (the eval generates them once).
    """
    if not generations.exists():
        return {}
    lengths: dict[str, list[int]] = {role: [] for role in specs}
    for record in iter_latest(generations, status="ok"):  # streamed: only the lengths are kept
        if record.get("set") == set_name:
            for role, spec in specs.items():
                if record.get("model") == spec:
                    lengths[role].append(len(record.get("text", "")))
    return lengths
