"""``cai train STAGE CONFIG.yaml``: the built-in training stages (sft, reward, dpo, orpo, kto, ppo, grpo, rloo)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

train_app = typer.Typer(help="Train on the generated datasets (TRL + peft; LoRA by default).", no_args_is_help=True)

_HELP = {
    "sft": "Supervised fine-tuning on a `cai export sft` dataset (messages).",
    "reward": "Bradley-Terry reward model on judged pairs; writes held-out accuracy (the PPO/GRPO gate).",
    "dpo": "DPO / IPO / other TRL loss types on judged pairs (prompt/chosen/rejected).",
    "orpo": "ORPO (no reference model) on judged pairs.",
    "kto": "KTO on unpaired good/bad answers derived from the pairs.",
    "ppo": "PPO from the SFT policy against the (accuracy-gated) reward model, with monitors.",
    "grpo": "GRPO with the reward model or the online AI judge (d-RLAIF), with monitors.",
    "rloo": "RLOO (leave-one-out baseline) with the reward model or the online AI judge.",
}


def _command(stage: str):  # type: ignore[no-untyped-def]
    def command(
        config: Annotated[Optional[Path], typer.Argument(help="YAML file of the stage's fields (see configs/train/).")] = None,
        set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override a field: --set beta=0.2 --set lora.r=8.")] = None,
        output_dir: Annotated[Optional[Path], typer.Option("--out", "-o", help="Stage folder (overrides output_dir).")] = None,
        push_to_hub: Annotated[Optional[str], typer.Option("--push-to-hub", help="Push the trained adapter/model to ORG/NAME.")] = None,
        private: Annotated[bool, typer.Option("--private", help="Create the --push-to-hub repo as private.")] = False,
        ray: Annotated[bool, typer.Option("--ray", help="Train under Ray Train (TorchTrainer): one process per worker.")] = False,
        ray_workers: Annotated[int, typer.Option("--ray-workers", min=1, help="Ray Train workers.")] = 2,
        ray_gpu: Annotated[bool, typer.Option("--ray-gpu", help="One GPU per Ray worker (NCCL); default CPU (gloo).")] = False,
        ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="Ray cluster to join (default: RAY_ADDRESS, else local).")] = None,
    ) -> None:
        from cai_engine.cli.progress import console
        from cai_engine.training import load_stage_config, run_stage

        hub = {"push_to_hub": push_to_hub, "hub_private": private} if push_to_hub else {}
        cfg = load_stage_config(stage, config, set_ or [], output_dir=output_dir, **hub)
        if ray:
            from cai_engine.training.ray_train import RayTrainSettings, run_stage_on_ray

            result = run_stage_on_ray(stage, cfg, RayTrainSettings(workers=ray_workers, use_gpu=ray_gpu, address=ray_address))
        else:
            result = run_stage(stage, cfg)
        console.print(f"[green]{stage} done[/green] -> {result.model_dir}  (metrics: {result.metrics_path})")
        for key, value in result.extra.items():
            if value not in (None, [], {}):
                console.print(f"  {key}: {value}")

    command.__doc__ = f"{_HELP[stage]}\n\nExample:\n\n    cai train {stage} configs/train/{stage}.yaml --set max_steps=10"
    return command


for _stage in _HELP:
    train_app.command(_stage)(_command(_stage))


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")
