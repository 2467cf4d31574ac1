"""Learning checks on the embedded SmolLM2-135M: DPO raises the chosen-minus-rejected log-prob margin;
PPO runs a few steps and writes the monitored metrics."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from helpers_models import preference_rows, save_export

pytestmark = pytest.mark.slow


def _margins(model_dir: Path, rows: list[dict]) -> list[float]:
    """log p(chosen | prompt) - log p(rejected | prompt) per pair, with the chat template."""
    import torch

    from cai_engine.training.common import load_causal_lm, load_tokenizer

    model, tok = load_causal_lm(model_dir), load_tokenizer(model_dir)
    model.eval()

    def logp(prompt: list, answer: list) -> float:
        head = tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=False)
        full = tok.apply_chat_template(prompt + answer, tokenize=True, return_dict=False)
        ids = torch.tensor([full])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, :-1].log_softmax(-1)
        target = ids[0, 1:]
        token_lp = logits.gather(1, target[:, None])[:, 0]
        return float(token_lp[len(head) - 1 :].sum())

    return [logp(r["prompt"], r["chosen"]) - logp(r["prompt"], r["rejected"]) for r in rows]


def test_lora_dpo_raises_margin_on_embedded_model(tmp_path: Path) -> None:
    from cai_engine.models.embedded import ensure_embedded_checkpoint
    from cai_engine.training.dpo import DPOStageConfig, train_dpo

    base = ensure_embedded_checkpoint()
    rows = preference_rows(8)
    data = save_export(rows, tmp_path / "pairs")
    before = _margins(base, rows)
    result = train_dpo(DPOStageConfig(
        model="local/smollm2", dataset=data, output_dir=tmp_path / "dpo", max_steps=8, per_device_train_batch_size=4,
        learning_rate=5e-4, beta=0.1, max_length=128, lora={"r": 8, "alpha": 16},
    ))
    after = _margins(result.model_dir, rows)
    mean_before, mean_after = sum(before) / len(before), sum(after) / len(after)
    assert mean_after > mean_before + 1.0, (mean_before, mean_after)
    assert sum(a > b for a, b in zip(after, before)) >= 6


def test_ppo_on_embedded_model_writes_monitors(tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    from cai_engine.models.embedded import ensure_embedded_checkpoint
    from cai_engine.training.ppo import PPOStageConfig, train_ppo

    base = ensure_embedded_checkpoint()
    rm = tmp_path / "rm"
    model = AutoModelForSequenceClassification.from_pretrained(str(base), num_labels=1)  # untrained head: forced past the gate
    model.save_pretrained(str(rm / "model"))
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
        if (base / name).exists():
            shutil.copy(base / name, rm / "model" / name)
    (rm / "reward_eval.json").write_text(json.dumps({"eval_accuracy": 0.5}))
    data = save_export(preference_rows(4), tmp_path / "pairs")
    result = train_ppo(PPOStageConfig(
        model="local/smollm2", reward_model=rm, force=True, dataset=data, output_dir=tmp_path / "ppo",
        total_episodes=6, per_device_train_batch_size=2, response_length=12, num_ppo_epochs=1,
    ))
    rows = [json.loads(line) for line in result.metrics_path.read_text().splitlines()]
    assert len(rows) >= 3
    for row in rows:
        assert row["monitor/response_length"] > 0 and 0 < row["monitor/distinct_1"] <= 1
        assert row["monitor/kl"] is not None and row["monitor/reward_mean"] is not None
