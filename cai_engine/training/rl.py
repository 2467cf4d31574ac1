"""What PPO and GRPO/RLOO share: the RL config fields, reward-model resolution with the accuracy gate, and the
reward shaping (running normalisation, length penalty) that also feeds the monitors."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pydantic import Field

from cai_engine.errors import CaiError
from cai_engine.training.common import StageConfig, resolve_model_path
from cai_engine.training.monitors import MonitorSettings
from cai_engine.training.rl_rewards import check_reward_gate, check_reward_model, reward_model_dir


class RLStageConfig(StageConfig):
    """Fields of every online RL stage."""

    learning_rate: float = Field(1e-5, gt=0, description="Peak learning rate.")
    reward_model: Path | None = Field(None, description="`train reward` output dir (or its model/ dir).")
    min_reward_accuracy: float = Field(0.70, ge=0, le=1, description="Refuse reward models with lower held-out accuracy.")
    force: bool = Field(False, description="Start even when the reward model is below min_reward_accuracy.")
    length_penalty: float = Field(0.0, description="Subtracted from the reward per response token (negative = length bonus).")
    normalize_rewards: bool = Field(True, description="Scale rewards by running mean/std before the length penalty.")
    temperature: float = Field(0.7, gt=0, description="Sampling temperature of the policy during rollouts.")
    max_prompt_length: int = Field(256, ge=8, description="Prompts longer than this (tokens) are dropped.")
    monitor: MonitorSettings = Field(default_factory=MonitorSettings, description="Reward-hacking / mode-collapse thresholds.")


def resolve_reward_model(config: RLStageConfig, *, required: bool = True) -> tuple[Path | None, float | None]:
    """The reward model dir and its held-out accuracy, after the score-head check and the accuracy gate."""
    if config.reward_model is None:
        if required:
            raise CaiError("reward_model is not set; pass the output dir of `cai train reward`")
        return None, None
    given = Path(config.reward_model)
    if not given.exists():
        raise CaiError(f"reward model {given} not found; pass the output dir of `cai train reward`")
    model_dir = resolve_model_path(str(reward_model_dir(given)), what="reward model")
    check_reward_model(model_dir)
    accuracy = check_reward_gate(given if (given / "model").is_dir() else model_dir, min_accuracy=config.min_reward_accuracy, force=config.force)
    return model_dir, accuracy


def check_same_vocab(policy_dir: Path, reward_dir: Path) -> None:
    """PPO feeds policy token ids straight into the reward model: their vocabularies must match."""
    from cai_engine.training.common import model_config_dict

    a, b = model_config_dict(policy_dir).get("vocab_size"), model_config_dict(reward_dir).get("vocab_size")
    if a != b:
        raise CaiError(f"policy vocab_size {a} != reward model vocab_size {b}; train the reward model from the same base model as the policy")


class RewardShaper:
    """Running reward normalisation + length penalty, applied to raw reward-model/judge scores."""

    def __init__(self, *, normalize: bool, length_penalty: float):
        self.normalize = normalize
        self.length_penalty = length_penalty
        self._n = 0
        self._mean = 0.0
        self._m2 = 0.0

    def _update(self, values: list[float]) -> None:
        for x in values:  # Welford
            self._n += 1
            delta = x - self._mean
            self._mean += delta / self._n
            self._m2 += delta * (x - self._mean)

    def __call__(self, raw: list[float], lengths: list[int]) -> list[float]:
        values = [x for x in raw if not math.isnan(x)]
        out = list(raw)
        if self.normalize and values:
            self._update(values)
            std = math.sqrt(self._m2 / (self._n - 1)) if self._n > 1 else 1.0
            std = std if std > 1e-6 else 1.0
            out = [(x - self._mean) / std for x in raw]
        return [x - self.length_penalty * n for x, n in zip(out, lengths)]


def wrap_reward_func(func: Any, shaper: RewardShaper, monitor: Any) -> Any:
    """A GRPO/RLOO reward function = ``func`` + shaping; records token ids and final rewards for the monitors."""
    import inspect

    def _finish(raw: list[Any], completion_ids: list[list[int]]) -> list[float | None]:
        floats = [float("nan") if r is None else float(r) for r in raw]
        shaped = shaper(floats, [len(ids) for ids in completion_ids])
        monitor.record(completion_ids, shaped)
        return [None if math.isnan(x) else x for x in shaped]

    if inspect.iscoroutinefunction(func):

        async def shaped_async(prompts: list[Any], completions: list[Any], completion_ids: list[list[int]], **kw: Any) -> list[float | None]:
            return _finish(await func(prompts=prompts, completions=completions, completion_ids=completion_ids, **kw), completion_ids)

        shaped_async.__name__ = getattr(func, "__name__", "reward")
        return shaped_async

    def shaped(prompts: list[Any], completions: list[Any], completion_ids: list[list[int]], **kw: Any) -> list[float | None]:
        return _finish(func(prompts=prompts, completions=completions, completion_ids=completion_ids, **kw), completion_ids)

    shaped.__name__ = getattr(func, "__name__", "reward")
    return shaped
