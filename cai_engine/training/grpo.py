"""``train grpo`` (and RLOO): group-relative policy optimisation with a reward model, the online AI judge or a reward service.

The reward is the gated reward model from ``train reward``; or, for d-RLAIF, the judge scoring
every sampled completion through the engine (any backend: hosted API, vLLM, local); or a reward
service (``reward_url``: ``cai reward serve``, shared by several trainers, with its own limits,
cache and budget). Each passes through the same shaping (normalisation, length penalty) and feeds
the monitors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cai_engine.training.common import (
    StageResult, build_trl_args, load_causal_lm, load_tokenizer, make_metrics_writer,
    peft_config, prepare_output, resolve_model_path, train_and_save,
)
from cai_engine.training.data import load_prompts
from cai_engine.training.monitors import RLMonitor
from cai_engine.training.rl import RewardShaper, RLStageConfig, resolve_reward_model, wrap_reward_func
from cai_engine.training.rl_rewards import judge_reward_func, remote_reward_func, reward_model_func


class JudgeRewardSettings(BaseModel):
    """The AI judge as the online reward (d-RLAIF)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="Judge model spec, e.g. openai/gpt-4o-mini, vllm/PATH, local/smollm2.")
    model_config_file: Path | None = Field(None, description="YAML of ModelConfig fields (base_urls, api_key_env, rpm...).")
    principles: list[str] = Field(default_factory=list, description="What the judge rates; default: helpful, honest, harmless.")
    constitution: str | None = Field(None, description="Take the principles' judge questions from this constitution.")


class GRPOStageConfig(RLStageConfig):
    algorithm: Literal["grpo", "rloo"] = Field("grpo", description="GRPO (group-normalised) or RLOO (leave-one-out baseline).")
    judge: JudgeRewardSettings | None = Field(None, description="Use the AI judge instead of a reward model.")
    reward_url: str | None = Field(None, description=(
        "Use a reward service instead: the URL of `cai reward serve` (or any server that takes OpenRLHF's "
        "remote-reward payload), e.g. http://127.0.0.1:8000/reward."))
    num_generations: int = Field(4, ge=2, description="Samples per prompt (the group).")
    max_completion_length: int = Field(128, ge=1, description="Most tokens per sampled completion.")
    beta: float = Field(0.04, ge=0, description="KL coefficient towards the reference policy (0 = no reference).")

    @model_validator(mode="after")
    def _one_reward(self) -> "GRPOStageConfig":
        if sum(source is not None for source in (self.reward_model, self.judge, self.reward_url)) != 1:
            raise ValueError("set exactly one reward source: reward_model (a `train reward` dir), judge (a model spec) "
                             "or reward_url (a `cai reward serve` URL)")
        return self


def _judge_principles(settings: JudgeRewardSettings) -> list[str]:
    if settings.principles or not settings.constitution:
        return settings.principles
    from cai_engine.constitution.loader import load_constitution

    constitution = load_constitution(settings.constitution)
    return [p.judge or p.critique for p in constitution.principles]


def build_reward_func(config: GRPOStageConfig, reward_dir: Path | None) -> Any:
    """The raw reward function: reward-model scores, judge ratings or a reward service's answers."""
    if config.reward_url is not None:
        return remote_reward_func(config.reward_url)
    if config.judge is not None:
        from cai_engine.engine.factory import build_engine, load_model_config

        engine = build_engine(load_model_config(config.judge.model, config.judge.model_config_file))
        return judge_reward_func(engine, principles=_judge_principles(config.judge))
    from transformers import AutoModelForSequenceClassification

    assert reward_dir is not None
    tokenizer = load_tokenizer(reward_dir, padding_side="right")
    model = AutoModelForSequenceClassification.from_pretrained(str(reward_dir), num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    return reward_model_func(model, tokenizer)


def train_grpo(config: GRPOStageConfig, *, reward_func: Any = None) -> StageResult:
    """Run GRPO/RLOO. ``reward_func`` (prompts, completions, completion_ids) -> floats overrides the configured source."""
    stage = config.algorithm
    prompts = load_prompts(config.dataset, stage=stage, limit=config.limit)
    policy_dir = resolve_model_path(config.model, what="policy model")
    reward_dir, accuracy = resolve_reward_model(
        config, required=config.judge is None and config.reward_url is None and reward_func is None)
    if stage == "rloo":
        from trl import RLOOConfig as TrlConfig, RLOOTrainer as Trainer
    else:
        from trl import GRPOConfig as TrlConfig, GRPOTrainer as Trainer

    fields = {
        "num_generations": config.num_generations, "max_completion_length": config.max_completion_length,
        "beta": config.beta, "temperature": config.temperature, "log_completions": False,
    }
    args = build_trl_args(TrlConfig, config, fields)
    out = prepare_output(config, stage)
    tokenizer = load_tokenizer(policy_dir, padding_side="left")
    monitor = RLMonitor(settings=config.monitor)
    shaper = RewardShaper(normalize=config.normalize_rewards, length_penalty=config.length_penalty)
    raw = reward_func if reward_func is not None else build_reward_func(config, reward_dir)
    trainer = Trainer(
        model=load_causal_lm(policy_dir),
        reward_funcs=[wrap_reward_func(raw, shaper, monitor)],
        args=args,
        train_dataset=prompts,
        processing_class=tokenizer,
        peft_config=peft_config(config.lora),
        callbacks=[make_metrics_writer(out / "metrics.jsonl", extra_hooks=[monitor.on_log])],
    )
    result = train_and_save(trainer, tokenizer, config, stage, extra={"reward_model_accuracy": accuracy})
    if hasattr(raw, "stats"):
        result.extra["reward_service" if config.reward_url is not None else "judge"] = dict(raw.stats)
    return result
