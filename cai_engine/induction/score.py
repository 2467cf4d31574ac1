"""Step 3 of induction: test each candidate as the judge's only principle on held-out labelled pairs.

Every candidate judges every held-out pair through the real judge pipeline
(:func:`cai_engine.pipelines.judge.judge_pair`: both orders, soft labels from logprobs, the same
records as ``cai judge``), stored in ``tests.jsonl`` and resumable. Each pair then casts one
**vote** on the candidate, ICAI's votes (``rdnfn/icai``, ``algorithm/voting.py``) with the two
orders as its two seeds and its *unanimous* rule:

* ``for``: in both orders the principle prefers the answer the person chose;
* ``against``: in both orders it prefers the other one;
* ``abstain``: the orders disagree (the verdict follows the position, not the principle: ICAI's
  "not applicable");
* ``tie``: the judge puts exactly 0.5 on it (or the answers are identical).

A candidate's **agreement** is ``(for + 0.5 * (abstain + tie)) / n``: 0.5 is what a principle that
says nothing scores, so agreement above 0.5 is signal. Beside it: a bootstrap 95% interval, the
soft agreement (mean P(the chosen answer is better)), the position-consistency rate, the
relevance (share of pairs it decides, ``(for + against) / n``) and ICAI's ordering score, net
votes ``for - against``. :func:`select` keeps the candidates with agreement >= ``--min-agreement``
and more votes for than against, best net votes first, at most ``--max-principles``
(``--min-agreement 0`` keeps the best whatever their votes: for checking the pipeline).
"""

from __future__ import annotations

from pathlib import Path
from statistics import fmean
from typing import Any, Callable, Iterable

from cai_engine.constitution import Constitution, Principle
from cai_engine.engine.engine import Engine
from cai_engine.engine.runner import RunSummary, run_items
from cai_engine.engine.session import open_store
from cai_engine.evaluation.judge_eval import bootstrap_ci, pair_score
from cai_engine.pipelines.aggregate import preference
from cai_engine.pipelines.candidates import PairSpec
from cai_engine.engine.records import stable_hash
from cai_engine.pipelines.judge import JudgeSettings, judge_pair, pair_id

VOTES = ("for", "against", "abstain", "tie")


def candidate_constitution(principle: dict[str, str]) -> Constitution:
    """A one-principle constitution: how a candidate is tested."""
    return Constitution(name=f"candidate-{principle['id']}", principles=[Principle(
        id=principle["id"], critique=principle["critique"], revision=principle["revision"], judge=principle["judge"])])


def candidate_settings(principle: dict[str, str], *, logprobs: bool = True, seed: int = 0) -> JudgeSettings:
    """The judge settings a candidate is tested with: it alone, both orders, direct verdicts."""
    return JudgeSettings(constitution=candidate_constitution(principle), principles_per_judgment=1, logprobs=logprobs,
                         seed=seed)


JudgeItem = tuple[JudgeSettings, PairSpec]


def item_id(item: JudgeItem, engine: Engine) -> str:
    return pair_id(item[1], item[0], engine.spec)


async def judge_items(
    items: Iterable[JudgeItem], *, engine: Engine, out_path: Path, concurrency: int, retry_failed: bool = False,
    on_record: Callable[[dict[str, Any]], None] | None = None, on_skip: Callable[[int], None] | None = None,
) -> RunSummary:
    """Judge each (settings, pair) into ``out_path``: several constitutions' judgments in one resumable store."""
    with open_store(out_path) as store:
        return await run_items(
            items, record_id=lambda it: item_id(it, engine),
            worker=lambda it, rid: judge_pair(it[1], rid, engine, it[0]),
            store=store, concurrency=concurrency, retry_failed=retry_failed,
            failure_base=lambda it: {"prompt": it[1].prompt, "label": it[1].label, "judge_model": engine.spec,
                                     "constitution": {"name": it[0].constitution.name, "hash": it[0].constitution_hash}},
            on_record=on_record, on_skip=on_skip,
        )


def _label_side(p_a: float, label: str) -> str:
    """'chosen', 'other' or 'tie' for a P(a better) against the label."""
    pick = preference(p_a)
    return "tie" if pick == "tie" else "chosen" if pick == label else "other"


def vote(record: dict[str, Any], principle_id: str) -> str:
    """The vote one judged, labelled pair casts on one principle (see the module docstring)."""
    if record.get("identical"):
        return "tie"
    stats = (record.get("per_principle") or {}).get(principle_id)
    if stats is None:
        raise KeyError(principle_id)
    label = record["label"]
    sides = [_label_side(p, label) for p in (stats.get("p_a_ab"), stats.get("p_a_ba")) if p is not None]
    if sides and all(s == "tie" for s in sides):
        return "tie"
    if len(sides) == 2 and sides[0] == sides[1]:
        return "for" if sides[0] == "chosen" else "against"
    if len(sides) == 1:
        return "for" if sides[0] == "chosen" else "against" if sides[0] == "other" else "tie"
    return "abstain"


def figures(records: list[dict[str, Any]], principle_id: str, *, seed: int = 0) -> dict[str, Any]:
    """Votes and agreement figures of one principle over its judged, labelled records."""
    ok = [r for r in records if r.get("status") == "ok" and r.get("label") in ("a", "b")]
    votes = {v: 0 for v in VOTES}
    scores: list[float] = []
    soft: list[float] = []
    consistent: list[bool] = []
    for r in ok:
        v = vote(r, principle_id)
        votes[v] += 1
        scores.append({"for": 1.0, "against": 0.0}.get(v, 0.5))
        stats = (r.get("per_principle") or {}).get(principle_id)
        p_a = stats["p_a_better"] if stats else 0.5
        soft.append(p_a if r["label"] == "a" else 1.0 - p_a)
        if stats and stats.get("consistent") is not None:
            consistent.append(bool(stats["consistent"]))
    n = len(ok)
    return {
        "n": n, "failed": len(records) - n, "votes": votes,
        "agreement": round(fmean(scores), 4) if scores else None,
        "agreement_ci95": bootstrap_ci(scores, seed=seed),
        "soft_agreement": round(fmean(soft), 4) if soft else None,
        "position_consistency": round(sum(consistent) / len(consistent), 4) if consistent else None,
        "relevance": round((votes["for"] + votes["against"]) / n, 4) if n else None,
        "abstain_rate": round((votes["abstain"] + votes["tie"]) / n, 4) if n else None,
        "net_votes": votes["for"] - votes["against"],
    }


def reject_reason(fig: dict[str, Any], min_agreement: float) -> str | None:
    """Why a tested candidate is not kept on its own figures, or None if it qualifies."""
    if not fig["n"]:
        return "no held-out pair could be judged with it"
    if min_agreement > 0 and fig["votes"]["for"] <= fig["votes"]["against"]:
        return "no more votes for than against"
    if fig["agreement"] < min_agreement:
        return f"agreement {fig['agreement']} < --min-agreement {min_agreement}"
    return None


def select(tested: list[dict[str, Any]], *, min_agreement: float, max_principles: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(kept, rejected) candidates; each gets ``kept`` and, when rejected, ``reason``. Best first."""
    ranked = sorted(tested, key=lambda c: (-c["figures"]["net_votes"], -(c["figures"]["agreement"] or 0.0),
                                           -c["support"]))
    kept: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    for c in ranked:
        reason = reject_reason(c["figures"], min_agreement)
        if reason is None and len(kept) >= max_principles:
            reason = f"beyond --max-principles {max_principles}"
        (rejected if reason else kept).append({**c, "kept": reason is None, **({"reason": reason} if reason else {})})
    return kept, rejected


def pair_key(record: dict[str, Any]) -> str:
    """What identifies a judged pair's inputs across constitutions: the conversation and both answers."""
    return stable_hash({"messages": record.get("messages"), "prompt": record.get("prompt"),
                        "texts": [c.get("text") for c in record.get("candidates", [])]})


def pair_scores(records: list[dict[str, Any]]) -> dict[str, float]:
    """Per pair (by :func:`pair_key`), the judge's score against the label: 1, 0.5 (tie) or 0."""
    return {pair_key(r): pair_score(r["chosen"], r["label"]) for r in records
            if r.get("status") == "ok" and r.get("label") in ("a", "b")}


def compare(induced: dict[str, float], baseline: dict[str, float] | None, *, seed: int = 0) -> dict[str, Any]:
    """Agreement of the induced and the baseline constitution on the same pairs, with bootstrap intervals
    (and of their per-pair difference, on the pairs both judged)."""
    def side(scores: dict[str, float]) -> dict[str, Any]:
        values = list(scores.values())
        return {"n": len(values), "agreement": round(fmean(values), 4) if values else None,
                "agreement_ci95": bootstrap_ci(values, seed=seed)}

    out: dict[str, Any] = {"induced": side(induced)}
    if baseline is not None:
        out["baseline"] = side(baseline)
        common = sorted(set(induced) & set(baseline))
        diffs = [induced[k] - baseline[k] for k in common]
        out["difference"] = {"n": len(diffs), "mean": round(fmean(diffs), 4) if diffs else None,
                             "ci95": bootstrap_ci(diffs, seed=seed)}
    return out
