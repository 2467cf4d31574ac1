"""``train kto``: KTO on unpaired good/bad answers derived from our pairs (chosen -> True, rejected -> False)."""

from __future__ import annotations

from pydantic import Field

from cai_engine.training.common import (
    StageResult, build_trl_args, load_causal_lm, load_tokenizer, make_metrics_writer,
    peft_config, prepare_output, quantization_config, resolve_model_path, train_and_save,
)
from cai_engine.training.data import load_preference, to_kto
from cai_engine.training.dpo import PreferenceFilter


class KTOStageConfig(PreferenceFilter):
    learning_rate: float = Field(5e-6, gt=0, description="Peak learning rate.")
    beta: float = Field(0.1, gt=0, description="Strength of the pull towards the reference model.")
    desirable_weight: float = Field(1.0, gt=0, description="Loss weight of good (chosen) answers.")
    undesirable_weight: float = Field(1.0, gt=0, description="Loss weight of bad (rejected) answers.")


def train_kto(config: KTOStageConfig) -> StageResult:
    pairs = load_preference(
        config.dataset, stage="kto", limit=config.limit, min_confidence=config.min_confidence, consistent_only=config.consistent_only
    )
    dataset = to_kto(pairs)
    model_path = resolve_model_path(config.model)
    from trl import KTOConfig, KTOTrainer

    fields = {
        "beta": config.beta, "desirable_weight": config.desirable_weight,
        "undesirable_weight": config.undesirable_weight, "max_length": config.max_length,
    }
    args = build_trl_args(KTOConfig, config, fields)
    out = prepare_output(config, "kto")
    tokenizer = load_tokenizer(model_path)
    quant = quantization_config(config.lora)
    peft = peft_config(config.lora)
    trainer = KTOTrainer(
        model=load_causal_lm(model_path) if quant is None else str(model_path),
        ref_model=None if peft is not None else load_causal_lm(model_path),
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft,
        quantization_config=quant,
        callbacks=[make_metrics_writer(out / "metrics.jsonl")],
    )
    return train_and_save(trainer, tokenizer, config, "kto")
