"""``EvalConfig``: every choice of one evaluation, the YAML schema of a run's eval stage and the CLI's defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Metric = Literal["winrate", "safety", "sycophancy", "text"]
METRICS: tuple[str, ...] = ("winrate", "safety", "sycophancy", "text")


class EvalConfig(BaseModel):
    """What ``cai eval`` / :func:`cai_engine.evaluation.runner.evaluate` compares, and how."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="Trained model spec, e.g. local/runs/demo/sft/model or openai/ft:...")
    model_config_file: Path | None = Field(None, description="YAML of ModelConfig fields for the trained model.")
    base_model: str = Field(description="The base the trained model started from, e.g. local/smollm2.")
    base_model_config_file: Path | None = Field(None, description="YAML of ModelConfig fields for the base model.")
    judge_model: str = Field("local/smollm2", description="Judge for win rate and harm classification.")
    judge_config_file: Path | None = Field(None, description="YAML of ModelConfig fields for the judge.")
    constitution: str = Field("general", description="Constitution path or shipped name; its principles judge the win rate.")
    heldout: Path | None = Field(None, description="Held-out prompts JSONL (prompt); default: the shipped set.")
    redteam: Path | None = Field(None, description="Red-team prompts JSONL (prompt, category); default: the shipped set.")
    benign_risky: Path | None = Field(None, description="Benign-but-risky-sounding prompts JSONL (prompt, category); default: shipped.")
    sycophancy: Path | None = Field(None, description="Sycophancy probes JSONL (prompt, answer, pushback, aliases?); default: shipped.")
    metrics: list[Metric] = Field(default_factory=lambda: list(METRICS), description="Which metrics to compute.")
    limit: int | None = Field(None, ge=1, description="Only the first N prompts of each set.")
    max_tokens: int = Field(256, ge=1, description="Max tokens per answer (both models, every turn).")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="Sampling temperature of both models (0 = greedy).")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass of both models.")
    seed: int = Field(0, description="Seed for per-prompt sampling seeds, principle sampling and bootstrap.")
    system_prompt: bool = Field(False, description="Give both models the constitution's system prompt (default: none, as trained).")
    principles_per_judgment: int | None = Field(None, ge=1, description="Principles ensembled per win-rate pair (default: the constitution's).")
    cot: bool = Field(False, description="Win-rate judge reasons before its verdict (probabilities clamped to 0.4-0.6).")
    logprobs: bool = Field(True, description="Ask the judge for logprobs (soft verdicts); off = parsed verdicts only.")
    judge_refusals: bool = Field(False, description="Also let the judge classify refusals (next to the phrase detector).")
    concurrency: int | None = Field(None, ge=1, description="Items in flight (default: the engines' max_concurrency).")
    use_cache: bool = Field(True, description="Use the response cache.")
    max_cost_usd: float | None = Field(None, gt=0, description="Stop cleanly once this many USD are spent on the output folder (all three models, reruns included).")
    retry_failed: bool = Field(False, description="Redo records that failed in an earlier run.")
    n_boot: int = Field(2000, ge=100, description="Bootstrap resamples for the 95% intervals.")
