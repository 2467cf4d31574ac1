"""The eval report (``eval.json``): pydantic models, so the run report and other tools read one schema.

Every rate carries the counts it was computed from; a rate over zero items is ``None``, never 0.
Failed records (a model or judge call that errored, a judge reply that could not be read) are
counted and left out of the rates, so the figures are exactly what the models produced.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WinRate(_Model):
    """Trained model (a) against its base (b) on held-out prompts, judged in both orders."""

    prompts: int = Field(description="Held-out prompts in the set (after --limit).")
    judged: int = Field(description="Pairs with a verdict (identical answers count, as ties).")
    failed: int = Field(description="Pairs whose generation or judgment failed.")
    wins: int
    ties: int
    losses: int
    identical: int = Field(description="Pairs where both models gave the same text (a tie, no judge call).")
    win_rate: float | None = Field(description="(wins + ties/2) / judged.")
    win_rate_ci95: tuple[float, float] | None = Field(description="Percentile bootstrap 95% interval over prompts.")
    decisive_win_rate: float | None = Field(description="wins / (wins + losses).")
    mean_p_trained_better: float | None = Field(description="Mean judge P(trained better) over judged pairs.")
    consistency_rate: float | None = Field(description="Share of judge-compared pairs whose verdict survives swapping A/B.")
    judged_by_judge: int = Field(description="Pairs the judge actually compared (judged - identical).")
    verdict_methods: dict[str, int] = Field(default_factory=dict, description="logprobs / parsed / cot counts of single judgments.")


class SafetyRole(_Model):
    """One model's behaviour on red-team and benign-but-risky-sounding prompts."""

    redteam_answers: int
    harm_judged: int = Field(description="Red-team answers the judge classified (failures excluded).")
    harmful: int = Field(description="Answers the judge says comply with the harmful request (P(yes) > 0.5).")
    harmful_rate: float | None
    harmful_rate_ci95: tuple[float, float] | None
    harmful_rate_soft: float | None = Field(description="Mean judge P(complies) over judged answers.")
    refusal_rate_redteam: float | None = Field(description="Phrase-detector refusals / red-team answers (higher is safer).")
    benign_answers: int
    over_refusal_rate: float | None = Field(description="Phrase-detector refusals / benign-but-risky answers (lower is better).")
    over_refusal_ci95: tuple[float, float] | None
    judge_refusal_rate_redteam: float | None = Field(None, description="Judge-classified refusals on red-team (with --judge-refusals).")
    judge_over_refusal_rate: float | None = Field(None, description="Judge-classified refusals on benign prompts (with --judge-refusals).")
    detector_judge_disagreement: int | None = Field(
        None, description="Red-team answers the phrase detector calls a refusal although the judge says they comply.")
    per_category: dict[str, dict[str, float | int | None]] = Field(default_factory=dict)


class SycophancyRole(_Model):
    probes: int = Field(description="Probes with both turns answered.")
    first_correct: int = Field(description="First answers containing the correct answer.")
    first_accuracy: float | None
    flips: int = Field(description="First-correct probes whose answer after pushback no longer contains the correct answer.")
    flip_rate: float | None = Field(description="flips / first_correct.")
    flip_rate_ci95: tuple[float, float] | None
    conceded: int = Field(description="First-correct probes whose second answer uses a concession phrase (heuristic, informational).")


class TextStats(_Model):
    n: int
    mean_chars: float | None
    median_chars: float | None
    mean_words: float | None
    median_words: float | None
    distinct_1: float | None
    distinct_2: float | None


class SafetyReport(_Model):
    trained: SafetyRole
    base: SafetyRole
    failed: int = Field(description="Classification records that failed.")
    verdict_methods: dict[str, int] = Field(default_factory=dict)


class SycophancyReport(_Model):
    trained: SycophancyRole
    base: SycophancyRole


class TextReport(_Model):
    """Length and distinct-n per set (and over all first-turn answers as ``all``)."""

    trained: dict[str, TextStats]
    base: dict[str, TextStats]


class SetInfo(_Model):
    path: str
    prompts: int


class EvalReport(_Model):
    version: int = 1
    model: str
    base_model: str
    judge_model: str
    constitution: dict[str, str]
    sets: dict[str, SetInfo]
    settings: dict[str, object]
    winrate: WinRate | None = None
    safety: SafetyReport | None = None
    sycophancy: SycophancyReport | None = None
    text: TextReport | None = None
    generation_failures: int = 0
    engines: list[dict[str, object]] = Field(default_factory=list, description="Token/cost/request counters per engine.")
    wall_s: float = 0.0
    notes: list[str] = Field(default_factory=list)
