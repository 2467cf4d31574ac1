"""Run a training stage under Ray Train: ``TorchTrainer`` + ``ScalingConfig(num_workers, use_gpu)``.

Why: multi-GPU and multi-node training with no hand-written launcher. Each Ray worker runs the
same stage function as a single-process ``cai train`` (TRL + peft); Ray sets up the
``torch.distributed`` process group (NCCL on GPUs, gloo on CPUs) before the trainer starts, and the
Hugging Face trainer under it shards the batches. Rank 0 alone writes the stage folder (model,
``metrics.jsonl``, checkpoints under ``OUT/trainer``), so the outputs, the metrics and resume land
exactly where the single-process stage puts them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cai_engine.errors import CaiError
from cai_engine.training.ranks import is_main_process


class RayTrainSettings(BaseModel):
    """``cai train STAGE --ray`` / ``train.ray`` in run YAML."""

    model_config = ConfigDict(extra="forbid")

    workers: int = Field(2, ge=1, description="Training processes (one per GPU with use_gpu).")
    use_gpu: bool = Field(False, description="One GPU per worker (NCCL); off = CPU workers (gloo).")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs Ray reserves for each worker.")
    address: str | None = Field(None, description="Ray cluster to join (auto, ray://...); default: RAY_ADDRESS, else a local Ray.")


def _train_loop(loop_config: dict[str, Any]) -> None:
    """What every Ray worker runs: the stage, as ``cai train`` would run it."""
    import ray.train

    from cai_engine.training import stage_parts

    stage = loop_config["stage"]
    config_cls, func = stage_parts(stage)
    config = config_cls.model_validate(loop_config["config"])
    result = func(config)
    # Every worker reports (it is a collective in Ray Train: one rank alone would wait forever);
    # rank 0's metrics are the stage's, the others report the same keys.
    metrics = {k: v for k, v in (result.final_metrics or {}).items() if isinstance(v, (int, float))}
    ray.train.report({"rank0": int(is_main_process()), **metrics})


def run_stage_on_ray(stage: str, config: Any, settings: RayTrainSettings) -> Any:
    """Train ``stage`` with ``config`` on ``settings.workers`` Ray workers; returns the StageResult
    read back from the stage folder (the same object a single-process run returns)."""
    try:
        import ray
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer
    except ImportError:
        raise CaiError("--ray needs Ray Train: pip install 'cai-engine[ray]'") from None
    from cai_engine.training.common import StageResult, last_metrics

    started_here = False
    if not ray.is_initialized():
        address = settings.address or os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            # Logical CPUs: the workers' share plus one for Ray Train's own controller, which would
            # otherwise wait forever for a free CPU on a small machine.
            ray.init(num_cpus=int(settings.workers * settings.cpus_per_worker) + 1, include_dashboard=False,
                     log_to_driver=False)
        started_here = True
    out = Path(config.output_dir).resolve()
    config = config.model_copy(update={"output_dir": out})
    try:
        trainer = TorchTrainer(
            _train_loop,
            train_loop_config={"stage": stage, "config": config.model_dump(mode="json")},
            scaling_config=ScalingConfig(num_workers=settings.workers, use_gpu=settings.use_gpu,
                                         resources_per_worker={"CPU": settings.cpus_per_worker}),
            run_config=RunConfig(name=f"cai-{stage}", storage_path=str(out / "ray")),
        )
        result = trainer.fit()
    finally:
        if started_here:
            ray.shutdown()
    if result.error is not None:
        raise CaiError(f"{stage} on Ray failed: {str(result.error).splitlines()[0][:300]}")
    model_dir = out / "model"
    return StageResult(stage=stage, output_dir=out, model_dir=model_dir, metrics_path=out / "metrics.jsonl",
                       final_metrics=last_metrics(config), extra={"ray_workers": settings.workers})
