"""``train orpo``: odds-ratio preference optimisation (no reference model) via ``trl.experimental.orpo``."""

from __future__ import annotations

from pydantic import Field

from cai_engine.training.common import (
    StageResult, build_trl_args, load_causal_lm, load_tokenizer, make_metrics_writer,
    peft_config, prepare_output, resolve_model_path, train_and_save,
)
from cai_engine.training.data import load_preference
from cai_engine.training.dpo import PreferenceFilter


class ORPOStageConfig(PreferenceFilter):
    learning_rate: float = Field(8e-6, gt=0, description="Peak learning rate.")
    beta: float = Field(0.1, gt=0, description="Weight of the odds-ratio term (lambda in the ORPO paper).")


def train_orpo(config: ORPOStageConfig) -> StageResult:
    dataset = load_preference(
        config.dataset, stage="orpo", limit=config.limit, min_confidence=config.min_confidence, consistent_only=config.consistent_only
    ).select_columns(["prompt", "chosen", "rejected"])
    model_path = resolve_model_path(config.model)
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    args = build_trl_args(ORPOConfig, config, {"beta": config.beta, "max_length": config.max_length})
    out = prepare_output(config, "orpo")
    tokenizer = load_tokenizer(model_path)
    trainer = ORPOTrainer(
        model=load_causal_lm(model_path),
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config(config.lora),
        callbacks=[make_metrics_writer(out / "metrics.jsonl")],
    )
    return train_and_save(trainer, tokenizer, config, "orpo")
