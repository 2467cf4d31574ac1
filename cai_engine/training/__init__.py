"""Built-in training stages over TRL 1.12 + peft: one config + one thin module per stage.

``STAGES`` maps a stage name to ``(module, config class, train function)`` names, resolved lazily
so importing this package never loads torch or TRL. Python API::

    from cai_engine.training import load_stage_config, run_stage
    result = run_stage("dpo", load_stage_config("dpo", "configs/train/dpo.yaml"))
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

STAGES: dict[str, tuple[str, str, str]] = {
    "sft": ("cai_engine.training.sft", "SFTStageConfig", "train_sft"),
    "reward": ("cai_engine.training.reward", "RewardStageConfig", "train_reward"),
    "dpo": ("cai_engine.training.dpo", "DPOStageConfig", "train_dpo"),
    "orpo": ("cai_engine.training.orpo", "ORPOStageConfig", "train_orpo"),
    "kto": ("cai_engine.training.kto", "KTOStageConfig", "train_kto"),
    "ppo": ("cai_engine.training.ppo", "PPOStageConfig", "train_ppo"),
    "grpo": ("cai_engine.training.grpo", "GRPOStageConfig", "train_grpo"),
    "rloo": ("cai_engine.training.grpo", "GRPOStageConfig", "train_grpo"),
}


def stage_parts(stage: str) -> tuple[type, Any]:
    from cai_engine.errors import CaiError

    if stage not in STAGES:
        raise CaiError(f"unknown training stage {stage!r}; choose one of {', '.join(STAGES)}")
    module_name, config_name, func_name = STAGES[stage]
    module = importlib.import_module(module_name)
    return getattr(module, config_name), getattr(module, func_name)


def load_stage_config(stage: str, path: Path | str | None, overrides: list[str] | None = None, **fields: Any) -> Any:
    from cai_engine.training.config_io import load_stage_config as _load

    return _load(stage, path, overrides or [], fields)


def run_stage(stage: str, config: Any) -> Any:
    _, func = stage_parts(stage)
    return func(config)
