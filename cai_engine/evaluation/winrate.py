"""Win rate of the trained model over its base on held-out prompts, under the constitution's judge.

Both models answer each held-out prompt with the same sampling; the pair (a = trained, b = base)
goes through the engine's pairwise judge (:func:`cai_engine.pipelines.judge.judge_pair`: every
sampled principle, both orders, soft verdicts from logprobs). A prompt scores 1 for a trained win,
0.5 for a tie (identical answers are ties without a judge call) and 0 for a loss; the win rate is
the mean score, with a percentile bootstrap 95% interval over prompts.
"""

from __future__ import annotations

from typing import Any

from cai_engine.evaluation.judge_eval import bootstrap_ci
from cai_engine.pipelines.candidates import Candidate, PairSpec, conversation_spec

SCORES = {"a": 1.0, "tie": 0.5, "b": 0.0}


def pair_spec(trained: dict[str, Any], base: dict[str, Any]) -> PairSpec:
    """The judge's pair for one held-out prompt from the two ok generation records."""
    def source(record: dict[str, Any], role: str) -> dict[str, Any]:
        return {"kind": "eval", "role": role, "model": record["model"], "generation_id": record["id"]}

    return conversation_spec(
        trained.get("messages") or [{"role": "user", "content": trained["prompt"]}],
        origin={"kind": "eval", "set": "heldout", "index": trained["index"]},
        a=Candidate(trained["text"], source(trained, "trained")),
        b=Candidate(base["text"], source(base, "base")),
        meta={"index": trained["index"]},
    )


def score(records: list[dict[str, Any]], prompts: int, *, n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Win/tie/loss figures from the judge's pair records (one per held-out prompt that got one)."""
    ok = [r for r in records if r.get("status") == "ok"]
    picks = [r["chosen"] for r in ok]
    scores = [SCORES[p] for p in picks]
    compared = [r for r in ok if not r.get("identical")]
    wins, ties, losses = picks.count("a"), picks.count("tie"), picks.count("b")
    methods: dict[str, int] = {}
    for r in compared:
        for j in r.get("judgments", []):
            methods[j["method"]] = methods.get(j["method"], 0) + 1
    return {
        "prompts": prompts,
        "judged": len(ok),
        "failed": prompts - len(ok),
        "wins": wins,
        "ties": ties,
        "losses": losses,
        "identical": len(ok) - len(compared),
        "win_rate": round(sum(scores) / len(scores), 4) if scores else None,
        "win_rate_ci95": bootstrap_ci(scores, n_boot=n_boot, seed=seed),
        "decisive_win_rate": round(wins / (wins + losses), 4) if wins + losses else None,
        "mean_p_trained_better": round(sum(r["p_a_better"] for r in ok) / len(ok), 4) if ok else None,
        "consistency_rate": round(sum(bool(r.get("consistent")) for r in compared) / len(compared), 4) if compared else None,
        "judged_by_judge": len(compared),
        "verdict_methods": methods,
    }

