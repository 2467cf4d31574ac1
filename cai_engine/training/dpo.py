"""``train dpo``: DPO and its relatives (IPO, hinge, robust, ...): every loss type TRL 1.12's DPOTrainer offers."""

from __future__ import annotations

import dataclasses
import re
from functools import lru_cache

from pydantic import Field, field_validator

from cai_engine.training.common import (
    StageConfig,
    StageResult,
    build_trl_args,
    load_causal_lm,
    load_tokenizer,
    make_metrics_writer,
    peft_config,
    prepare_output,
    quantization_config,
    resolve_model_path,
    train_and_save,
)
from cai_engine.training.data import load_preference


@lru_cache(maxsize=1)
def dpo_loss_types() -> tuple[str, ...]:
    """The loss types TRL's DPOConfig documents (read from its field help, so a TRL upgrade updates the list)."""
    from trl import DPOConfig

    field = next(f for f in dataclasses.fields(DPOConfig) if f.name == "loss_type")
    return tuple(re.findall(r"`'([a-z_]+)'`", field.metadata.get("help", "")))


class PreferenceFilter(StageConfig):
    """Fields shared by the stages that read judged pairs."""

    min_confidence: float | None = Field(None, ge=0.5, le=1.0, description="Drop pairs whose judge P(chosen better) is lower.")
    consistent_only: bool = Field(False, description="Keep only pairs judged the same in both A/B orders.")


class DPOStageConfig(PreferenceFilter):
    learning_rate: float = Field(5e-6, gt=0, description="Peak learning rate.")
    beta: float = Field(0.1, gt=0, description="Strength of the pull towards the reference model (IPO: tau).")
    loss_type: list[str] = Field(default_factory=lambda: ["sigmoid"], description="One or more TRL DPO loss types (sigmoid, ipo, hinge, ...).")
    loss_weights: list[float] | None = Field(None, description="Weights when several loss types are combined.")

    @field_validator("loss_type", mode="before")
    @classmethod
    def _listify(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("loss_type")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        valid = dpo_loss_types()
        bad = [v for v in value if v not in valid]
        if bad:
            raise ValueError(f"unknown DPO loss type(s) {bad}; TRL offers: {', '.join(valid)}")
        return value


def train_dpo(config: DPOStageConfig) -> StageResult:
    dataset = load_preference(
        config.dataset, stage="dpo", limit=config.limit, min_confidence=config.min_confidence, consistent_only=config.consistent_only
    )
    model_path = resolve_model_path(config.model)
    from trl import DPOConfig, DPOTrainer

    fields = {"beta": config.beta, "loss_type": config.loss_type, "loss_weights": config.loss_weights, "max_length": config.max_length}
    args = build_trl_args(DPOConfig, config, fields)
    out = prepare_output(config, "dpo")
    tokenizer = load_tokenizer(model_path)
    quant = quantization_config(config.lora)
    peft = peft_config(config.lora)
    model = load_causal_lm(model_path) if quant is None else str(model_path)
    # With LoRA the reference is the base model with the adapter switched off: no second copy in memory.
    ref_model = None if peft is not None else load_causal_lm(model_path)
    trainer = DPOTrainer(
        model=model,
        ref_model=ref_model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft,
        quantization_config=quant,
        callbacks=[make_metrics_writer(out / "metrics.jsonl")],
    )
    return train_and_save(trainer, tokenizer, config, "dpo")
