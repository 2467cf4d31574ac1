"""``train reward``: a Bradley-Terry reward model on judged pairs, with a held-out accuracy that gates PPO/GRPO.

The held-out accuracy (share of held-out pairs where r(chosen) > r(rejected)) is written to
``OUT/reward_eval.json`` as ``eval_accuracy``; :func:`cai_engine.training.rl_rewards.check_reward_gate`
reads it before any RL stage starts. The saved model is always a full sequence classifier (LoRA is
merged) so the RL stages can load it directly.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field

from cai_engine.training.common import (
    StageResult,
    build_trl_args,
    last_metrics,
    load_tokenizer,
    make_metrics_writer,
    peft_config,
    prepare_output,
    push_trained,
    quantization_config,
    resolve_model_path,
    resume_checkpoint,
)
from cai_engine.training.data import load_preference, split_eval
from cai_engine.training.dpo import PreferenceFilter
from cai_engine.training.progress import use_our_progress

REWARD_EVAL_FILE = "reward_eval.json"


class RewardStageConfig(PreferenceFilter):
    learning_rate: float = Field(1e-4, gt=0, description="Peak learning rate.")
    eval_fraction: float = Field(0.2, gt=0, lt=1, description="Share of pairs held out to measure accuracy.")
    confidence_weighting: Literal["none", "weight", "soft"] = Field(
        "none",
        description="Use the judge's P(chosen better): 'weight' scales each pair's loss by 2p-1, "
        "'soft' trains on the soft label p (p*logsig(d) + (1-p)*logsig(-d)).",
    )
    use_margin: bool = Field(False, description="Pass the export's `margin` column to TRL (loss = -logsig(d - margin)).")
    center_rewards_coefficient: float | None = Field(None, ge=0, description="Pull rewards towards zero mean (TRL option).")


def _weighted_trainer_cls() -> type:
    """RewardTrainer that also reads a per-pair ``confidence`` and uses it as configured."""
    import torch
    from torch import nn
    from trl import RewardTrainer
    from trl.trainer.reward_trainer import DataCollatorForPreference

    class ConfidenceCollator(DataCollatorForPreference):
        def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
            out = super().torch_call(examples)
            if "confidence" in examples[0]:
                out["confidence"] = torch.tensor([float(e["confidence"]) for e in examples], dtype=torch.float)
            return out

    class ConfidenceRewardTrainer(RewardTrainer):
        mode: str = "none"

        def _set_signature_columns_if_needed(self) -> None:
            if self._signature_columns is None:
                self._signature_columns = ["chosen_ids", "rejected_ids", "margin", "confidence"]

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None) -> Any:
            confidence = inputs.pop("confidence", None)
            loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
            if confidence is not None and self.mode != "none":
                chosen, rejected = torch.chunk(outputs.logits.squeeze(-1), chunks=2)
                diff = chosen - rejected - inputs.get("margin", 0.0)
                p = confidence.to(diff.dtype).clamp(0.5, 1.0)
                if self.mode == "weight":
                    w = (2 * p - 1).clamp_min(1e-3)
                    loss = -(w * nn.functional.logsigmoid(diff)).sum() / w.sum()
                else:
                    loss = -(p * nn.functional.logsigmoid(diff) + (1 - p) * nn.functional.logsigmoid(-diff)).mean()
                if self.args.center_rewards_coefficient is not None:
                    loss = loss + self.args.center_rewards_coefficient * torch.mean((chosen + rejected) ** 2)
            return (loss, outputs) if return_outputs else loss

    return ConfidenceRewardTrainer, ConfidenceCollator


def score_conversations(model: Any, tokenizer: Any, conversations: list[list[dict[str, str]]], batch_size: int = 8) -> list[float]:
    """Reward-model scores of whole conversations, tokenized exactly as TRL's RewardTrainer does."""
    import torch
    from trl.data_utils import _tokenize

    scores: list[float] = []
    device = next(model.parameters()).device
    model.eval()
    for start in range(0, len(conversations), batch_size):
        batch = [_tokenize(tokenizer, conv)["input_ids"] for conv in conversations[start : start + batch_size]]
        width = max(len(ids) for ids in batch)
        pad = tokenizer.pad_token_id
        input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids in batch], device=device)
        mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids in batch], device=device)
        with torch.no_grad():
            logits = model(input_ids=input_ids, attention_mask=mask).logits
        scores.extend(float(x) for x in logits[:, 0].float().cpu())
    return scores


def pair_accuracy(model: Any, tokenizer: Any, pairs: Any) -> dict[str, float]:
    """Exact held-out accuracy and mean margin of a reward model over prompt/chosen/rejected rows."""
    chosen = score_conversations(model, tokenizer, [list(r["prompt"]) + list(r["chosen"]) for r in pairs])
    rejected = score_conversations(model, tokenizer, [list(r["prompt"]) + list(r["rejected"]) for r in pairs])
    wins = [c > r for c, r in zip(chosen, rejected)]
    return {
        "eval_accuracy": sum(wins) / len(wins),
        "eval_margin": sum(c - r for c, r in zip(chosen, rejected)) / len(wins),
        "eval_pairs": len(wins),
    }


def train_reward(config: RewardStageConfig) -> StageResult:
    dataset = load_preference(
        config.dataset, stage="reward", limit=config.limit, min_confidence=config.min_confidence, consistent_only=config.consistent_only
    )
    if config.confidence_weighting != "none" and "confidence" not in dataset.column_names:
        from cai_engine.errors import CaiError

        raise CaiError(f"confidence_weighting: {config.confidence_weighting} needs a `confidence` column in {config.dataset}; set it to none")
    model_path = resolve_model_path(config.model)
    keep = ["prompt", "chosen", "rejected"] + [c for c in ("confidence",) if config.confidence_weighting != "none"]
    keep += ["margin"] if config.use_margin and "margin" in dataset.column_names else []
    train_set, eval_set = split_eval(dataset.select_columns(keep), config.eval_fraction, seed=config.seed)

    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig

    fields = {"max_length": config.max_length, "center_rewards_coefficient": config.center_rewards_coefficient}
    args = build_trl_args(RewardConfig, config, fields)
    out = prepare_output(config, "reward")
    tokenizer = load_tokenizer(model_path)
    quant = quantization_config(config.lora)
    trainer_cls, collator_cls = _weighted_trainer_cls()
    trainer_cls.mode = config.confidence_weighting
    model: Any = str(model_path)
    if quant is None:
        model = AutoModelForSequenceClassification.from_pretrained(str(model_path), num_labels=1)
    trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=train_set,
        processing_class=tokenizer,
        data_collator=collator_cls(pad_token_id=tokenizer.pad_token_id),
        peft_config=peft_config(config.lora, task_type="SEQ_CLS", modules_to_save=["score"]),
        quantization_config=quant,
        callbacks=[make_metrics_writer(out / "metrics.jsonl")],
    )
    use_our_progress(trainer, "reward")
    trainer.train(resume_from_checkpoint=resume_checkpoint(config))

    trained = trainer.accelerator.unwrap_model(trainer.model)
    from peft import PeftModel

    if isinstance(trained, PeftModel):
        trained = trained.merge_and_unload()
    evaluation = pair_accuracy(trained, tokenizer, eval_set)
    model_dir = out / "model"
    trained.config.pad_token_id = tokenizer.pad_token_id
    trained.save_pretrained(str(model_dir))
    tokenizer.save_pretrained(str(model_dir))
    push_trained(model_dir, config)
    evaluation["train_pairs"] = len(train_set)
    (out / REWARD_EVAL_FILE).write_text(json.dumps(evaluation, indent=2))
    with (out / "metrics.jsonl").open("a") as handle:
        handle.write(json.dumps({"step": trainer.state.global_step, **evaluation}) + "\n")
    return StageResult(
        stage="reward", output_dir=out, model_dir=model_dir, metrics_path=out / "metrics.jsonl",
        final_metrics=last_metrics(config), extra=evaluation,
    )
