"""``train sft``: supervised fine-tuning on the revised answers (``messages`` column) with TRL's SFTTrainer."""

from __future__ import annotations

from pydantic import Field

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
from cai_engine.training.data import load_sft, to_prompt_completion


class SFTStageConfig(StageConfig):
    """SFT config. By default the loss covers only the final assistant answer (the revision), not the prompt."""

    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate (LoRA-friendly default).")
    packing: bool = Field(False, description="Pack several conversations into one sequence.")
    completion_only: bool = Field(
        True, description="Train on the final assistant turn only (split into TRL prompt/completion); false = whole conversation."
    )


def train_sft(config: SFTStageConfig) -> StageResult:
    dataset = load_sft(config.dataset, limit=config.limit)
    if config.completion_only:
        dataset = to_prompt_completion(dataset, config.dataset)
    model_path = resolve_model_path(config.model)
    from trl import SFTConfig, SFTTrainer

    args = build_trl_args(SFTConfig, config, {"max_length": config.max_length, "packing": config.packing})
    out = prepare_output(config, "sft")
    tokenizer = load_tokenizer(model_path)
    quant = quantization_config(config.lora)
    model = load_causal_lm(model_path) if quant is None else str(model_path)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config(config.lora),
        quantization_config=quant,
        callbacks=[make_metrics_writer(out / "metrics.jsonl")],
    )
    return train_and_save(trainer, tokenizer, config, "sft")
