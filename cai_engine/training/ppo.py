"""``train ppo``: PPO over TRL 1.12's ``trl.experimental.ppo.PPOTrainer``.

Policy from the SFT stage (LoRA on it by default, so the reference is the same weights with the
adapter off), reward model from the reward stage (accuracy-gated), value model initialised from the
reward model. TRL's loop is one monolithic ``train()``, so we observe it from two seams that it
already calls: the policy's ``generate`` (tells us where prompts end) and the reward model's
backbone/score (sees every scored response). The :class:`ShapedRewardModel` there applies our
reward normalisation and length penalty and feeds the monitors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from cai_engine.errors import CaiError
from cai_engine.training.common import (
    StageResult,
    build_trl_args,
    last_metrics,
    load_causal_lm,
    load_tokenizer,
    make_metrics_writer,
    peft_config,
    prepare_output,
    resolve_model_path,
    save_trained,
)
from cai_engine.training.data import load_prompts
from cai_engine.training.monitors import RLMonitor
from cai_engine.training.progress import use_our_progress
from cai_engine.training.rl import RewardShaper, RLStageConfig, check_same_vocab, resolve_reward_model


class PPOStageConfig(RLStageConfig):
    save_steps: int = Field(0, ge=0, le=0, description="Always 0: TRL's PPOTrainer cannot resume, so an interrupted PPO stage restarts.")
    kl_coef: float = Field(0.05, ge=0, le=1, description="KL penalty towards the reference policy (0.01-0.1 is the usual range).")
    kl_estimator: Literal["k1", "k3"] = Field("k1", description="KL estimator (k3: lower variance).")
    whiten_rewards: bool = Field(False, description="TRL's per-batch reward whitening (needs mini-batches of 8+).")
    value_model: Path | None = Field(None, description="Value model init (default: the reward model).")
    response_length: int = Field(64, ge=1, description="Most tokens generated per rollout.")
    total_episodes: int | None = Field(None, ge=1, description="Prompts to roll out in total (default: epochs x dataset).")
    num_ppo_epochs: int = Field(4, ge=1, description="PPO epochs per rollout batch.")
    num_mini_batches: int = Field(1, ge=1, description="Mini-batches per rollout batch.")
    missing_eos_penalty: float | None = Field(1.0, description="Subtracted from responses that never stop (None = off).")


class _State:
    context_length: int = 0


def _shaped_reward_model(reward_model: Any, state: _State, shaper: RewardShaper, monitor: RLMonitor) -> Any:
    import torch
    from torch import nn

    class _Backbone(nn.Module):
        def __init__(self, inner: nn.Module):
            super().__init__()
            self.inner = inner
            self.last_mask: torch.Tensor | None = None
            self.last_ids: torch.Tensor | None = None

        def forward(self, **kwargs: Any) -> Any:
            self.last_mask, self.last_ids = kwargs["attention_mask"], kwargs["input_ids"]
            return self.inner(**kwargs)

    class ShapedRewardModel(nn.Module):
        """Looks like a reward model to TRL's ``get_reward``; shapes the score of each sequence's last token."""

        base_model_prefix = "backbone"

        def __init__(self) -> None:
            super().__init__()
            self.rm = reward_model
            self.backbone = _Backbone(getattr(reward_model, reward_model.base_model_prefix))
            self.config = reward_model.config

        def score(self, hidden: torch.Tensor) -> torch.Tensor:
            logits = self.rm.score(hidden)
            ctx = state.context_length
            mask = self.backbone.last_mask[:, ctx:]
            # TRL reads the score at the last non-pad token: response length = first pad position.
            has_pad = (~mask.bool()).any(dim=1)
            lengths = torch.where(has_pad, (~mask.bool()).int().argmax(dim=1), torch.full_like(has_pad, mask.shape[1], dtype=torch.long))
            last = (ctx + lengths - 1).clamp_min(0)
            raw = logits[torch.arange(logits.shape[0]), last, 0].float()
            shaped = torch.tensor(shaper(raw.tolist(), lengths.tolist()), dtype=logits.dtype, device=logits.device)
            ids = self.backbone.last_ids[:, ctx:]
            monitor.record([ids[i, : int(n)].tolist() for i, n in enumerate(lengths)], shaped.tolist())
            return logits + (shaped.to(logits.dtype) - raw.to(logits.dtype))[:, None, None]

    return ShapedRewardModel()


def _tokenize_prompts(dataset: Any, tokenizer: Any, max_prompt_length: int) -> Any:
    def encode(row: dict[str, Any]) -> dict[str, Any]:
        ids = tokenizer.apply_chat_template(list(row["prompt"]), add_generation_prompt=True, tokenize=True, return_dict=False)
        return {"input_ids": list(ids)}

    encoded = dataset.map(encode, remove_columns=dataset.column_names)
    encoded = encoded.filter(lambda row: len(row["input_ids"]) <= max_prompt_length)
    if len(encoded) == 0:
        raise CaiError(f"every prompt is longer than max_prompt_length={max_prompt_length} tokens; raise it")
    return encoded


def _pad_token(tokenizer: Any) -> None:
    """PPO masks by pad id, so pad must differ from EOS (SmolLM2's chat template puts EOS inside prompts)."""
    if tokenizer.pad_token_id != tokenizer.eos_token_id:
        return
    if tokenizer.unk_token is not None and tokenizer.unk_token_id != tokenizer.eos_token_id:
        tokenizer.pad_token = tokenizer.unk_token
        return
    raise CaiError("PPO needs a pad token distinct from EOS and this tokenizer has none; use a model whose tokenizer defines one")


def train_ppo(config: PPOStageConfig) -> StageResult:
    prompts = load_prompts(config.dataset, stage="ppo", limit=config.limit)
    policy_dir = resolve_model_path(config.model, what="policy model")
    reward_dir, accuracy = resolve_reward_model(config)
    assert reward_dir is not None
    value_dir = resolve_model_path(str(config.value_model), what="value model") if config.value_model else reward_dir
    check_same_vocab(policy_dir, reward_dir)
    from transformers import AutoModelForSequenceClassification
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    fields = {
        "kl_coef": config.kl_coef, "kl_estimator": config.kl_estimator, "whiten_rewards": config.whiten_rewards,
        "response_length": config.response_length, "total_episodes": config.total_episodes,
        "num_ppo_epochs": config.num_ppo_epochs, "num_mini_batches": config.num_mini_batches,
        "missing_eos_penalty": config.missing_eos_penalty, "temperature": config.temperature,
        "stop_token": "eos", "num_sample_generations": 0, "sft_model_path": str(policy_dir),
        "reward_model_path": str(reward_dir),
    }
    args = build_trl_args(PPOConfig, config, fields)
    out = prepare_output(config, "ppo")
    tokenizer = load_tokenizer(policy_dir, padding_side="left")
    _pad_token(tokenizer)
    train_set = _tokenize_prompts(prompts, tokenizer, config.max_prompt_length)

    policy = load_causal_lm(policy_dir)
    peft = peft_config(config.lora)
    ref = None if peft is not None else load_causal_lm(policy_dir)
    reward_model = AutoModelForSequenceClassification.from_pretrained(str(reward_dir), num_labels=1)
    value_model = AutoModelForSequenceClassification.from_pretrained(str(value_dir), num_labels=1)
    for m in (policy, ref, reward_model, value_model):
        if m is not None:
            m.config.pad_token_id = tokenizer.pad_token_id
    policy.generation_config.pad_token_id = tokenizer.pad_token_id

    state, monitor = _State(), RLMonitor(settings=config.monitor)
    shaper = RewardShaper(normalize=config.normalize_rewards, length_penalty=config.length_penalty)
    trainer = PPOTrainer(
        args=args,
        processing_class=tokenizer,
        model=policy,
        ref_model=ref,
        reward_model=_shaped_reward_model(reward_model, state, shaper, monitor),
        value_model=value_model,
        train_dataset=train_set,
        eval_dataset=train_set.select(range(min(len(train_set), args.per_device_eval_batch_size))),
        peft_config=peft,
        callbacks=[make_metrics_writer(out / "metrics.jsonl", extra_hooks=[monitor.on_log])],
    )
    generate = trainer.policy_model.generate

    def recording_generate(*a: Any, **kw: Any) -> Any:
        state.context_length = kw["input_ids"].shape[1]
        return generate(*a, **kw)

    trainer.policy_model.generate = recording_generate
    use_our_progress(trainer, "ppo")
    trainer.train()
    del trainer.policy_model.generate  # drop the instance attribute before saving
    model_dir = save_trained(trainer, tokenizer, config, model=trainer.policy_model)
    extra = {"reward_model_accuracy": accuracy, "warnings": sorted({w for row in _rows(out) for w in row.get("warnings", [])})}
    return StageResult(stage="ppo", output_dir=out, model_dir=model_dir, metrics_path=out / "metrics.jsonl", final_metrics=last_metrics(config), extra=extra)


def _rows(out: Path) -> list[dict[str, Any]]:
    import json

    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
