"""What every training stage shares: the base config, model resolution, LoRA, TRL args, output layout.

A stage folder looks like::

    OUT/model/               the adapter (LoRA, default) or the full model (``merge: true`` / ``lora.enabled: false``)
    OUT/metrics.jsonl        one JSON line per logging step (see :class:`MetricsWriter`)
    OUT/config.resolved.yaml the stage config with every default filled in
    OUT/trainer/             TRL's own output_dir (checkpoints, only if you turn saving on in ``trl_args``)

Heavy imports (torch, transformers, trl, peft) stay inside functions so ``cai --help`` is instant.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from cai_engine.errors import CaiError, ConfigError

log = logging.getLogger("cai_engine.training")

EMBEDDED_SPECS = {"local/smollm2", "vllm/smollm2", "smollm2"}


class LoraSettings(BaseModel):
    """LoRA adapter settings (peft). QLoRA (4-bit base) is used when asked, or by default when CUDA + bitsandbytes exist."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Train a LoRA adapter instead of all weights.")
    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA scaling alpha.")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA path.")
    target_modules: list[str] | str = Field("all-linear", description="Modules to adapt ('all-linear' or names).")
    qlora: bool | None = Field(None, description="4-bit base model; None = on when CUDA and bitsandbytes are available.")


class StageConfig(BaseModel):
    """Fields common to every stage. Each field is defined once; YAML files and ``--set`` use these names."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="Base model: a local checkpoint dir, local/PATH, or local/smollm2 (the embedded model).")
    dataset: Path = Field(description="Our export dir (with dataset/), a save_to_disk dir, or a .parquet/.jsonl file.")
    output_dir: Path = Field(description="Stage folder: model/, metrics.jsonl, config.resolved.yaml.")
    lora: LoraSettings = Field(default_factory=LoraSettings, description="LoRA / QLoRA settings.")
    merge: bool = Field(False, description="Merge the LoRA adapter into the base and save a full model.")
    learning_rate: float = Field(5e-5, gt=0, description="Peak learning rate.")
    num_train_epochs: float = Field(1.0, gt=0, description="Epochs over the dataset (ignored when max_steps > 0).")
    max_steps: int = Field(-1, description="Stop after this many optimizer steps (-1 = use epochs).")
    per_device_train_batch_size: int = Field(4, ge=1, description="Batch size per device.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    max_length: int = Field(1024, ge=8, description="Longest tokenized sequence (prompt + answer).")
    logging_steps: int = Field(1, ge=1, description="Write metrics every N steps.")
    seed: int = Field(42, description="Seed for data order, initialisation and sampling.")
    bf16: bool | None = Field(None, description="bfloat16 mixed precision; None = on when CUDA supports it.")
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory.")
    limit: int | None = Field(None, ge=1, description="Only the first N rows of the dataset (quick trials).")
    save_steps: int = Field(
        200, ge=0,
        description="Keep a resumable checkpoint every N steps (newest only); a rerun into the same output_dir "
                    "resumes from it. 0 = no checkpoints (PPO never resumes: TRL's PPOTrainer cannot).")
    report_to: list[str] = Field(
        default_factory=list,
        description="Where the trainer also reports metrics: tensorboard (event files under output_dir/trainer/runs/), "
                    "wandb, trackio, mlflow, ... (the integration's package must be installed). metrics.jsonl is always "
                    "written. Empty = nowhere else.")
    push_to_hub: str | None = Field(
        None, description="After training, push the saved adapter/model to this Hub repo (ORG/NAME); needs a token "
                          "(HF_TOKEN or `hf auth login`). The local copy is kept whatever happens.")
    hub_private: bool = Field(False, description="Create the push_to_hub repo as private.")
    trl_args: dict[str, Any] = Field(default_factory=dict, description="Extra TRL/TrainingArguments fields passed through.")

    @field_validator("report_to", mode="before")
    @classmethod
    def _report_to_list(cls, value: Any) -> Any:
        """``tensorboard`` or ``tensorboard,wandb`` (as ``--set`` writes it) or a YAML list; ``none`` = []."""
        if value is None:
            return []
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        return [v for v in value if v != "none"]


class StageResult(BaseModel):
    """What a finished stage hands back (and what the CLI prints)."""

    stage: str
    output_dir: Path
    model_dir: Path
    metrics_path: Path
    final_metrics: dict[str, Any] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)


# ---------------------------------------------------------------- models


def resolve_model_path(spec: str, *, what: str = "model") -> Path:
    """A local checkpoint dir for ``spec``; one CaiError line when there is none (checked before any loading)."""
    if spec in EMBEDDED_SPECS:
        from cai_engine.models.embedded import ensure_embedded_checkpoint

        return ensure_embedded_checkpoint()
    # local/PATH and vllm/PATH both name a checkpoint dir (a vLLM policy trains with transformers)
    raw = next((spec[len(prefix):] for prefix in ("local/", "vllm/") if spec.startswith(prefix)), spec)
    path = Path(raw).expanduser()
    if (path / "model" / "config.json").is_file() or (path / "model" / "adapter_config.json").is_file():
        path = path / "model"  # a stage folder: use the model it saved
    if not path.is_dir():
        raise CaiError(
            f"{what} path {spec!r} is not a directory; pass a local checkpoint dir (download hub models first) "
            "or local/smollm2 for the embedded model"
        )
    if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
        raise CaiError(f"{what} dir {path} has no config.json or adapter_config.json; point at a saved model or a stage's model/ dir")
    return path.resolve()


def model_config_dict(path: Path) -> dict[str, Any]:
    """The model's config.json (for an adapter dir: its base model's), read without loading weights."""
    if (path / "config.json").is_file():
        return json.loads((path / "config.json").read_text())
    adapter = json.loads((path / "adapter_config.json").read_text())
    base = Path(adapter.get("base_model_name_or_path") or "")
    if not (base / "config.json").is_file():
        raise CaiError(f"adapter {path} names base model {str(base)!r}, which is not a local dir; merge the adapter (merge: true)")
    return json.loads((base / "config.json").read_text())


def is_adapter_dir(path: Path) -> bool:
    return (path / "adapter_config.json").is_file() and not (path / "config.json").is_file()


def load_causal_lm(path: Path, dtype: Any = None) -> Any:
    """A causal LM from a full checkpoint or a LoRA adapter dir (merged in memory so it can be trained further)."""
    from transformers import AutoModelForCausalLM

    if is_adapter_dir(path):
        from peft import AutoPeftModelForCausalLM

        return AutoPeftModelForCausalLM.from_pretrained(str(path), dtype=dtype).merge_and_unload()
    return AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)


def load_tokenizer(path: Path, *, padding_side: str | None = None) -> Any:
    """The tokenizer saved with a model; pad token falls back to EOS; a chat template is required."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not getattr(tokenizer, "chat_template", None):
        raise CaiError(f"tokenizer in {path} has no chat template; our datasets are conversational, use a chat/instruct model")
    if padding_side:
        tokenizer.padding_side = padding_side
    return tokenizer


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def peft_config(lora: LoraSettings, task_type: str = "CAUSAL_LM", modules_to_save: list[str] | None = None) -> Any:
    """A peft LoraConfig, or None when LoRA is off."""
    if not lora.enabled:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type=task_type,
        modules_to_save=modules_to_save,
    )


def quantization_config(lora: LoraSettings) -> Any:
    """BitsAndBytes 4-bit config for QLoRA, or None. Asking for QLoRA without CUDA/bitsandbytes is an error."""
    import importlib.util

    available = cuda_available() and importlib.util.find_spec("bitsandbytes") is not None
    wanted = lora.enabled and (available if lora.qlora is None else lora.qlora)
    if not wanted:
        return None
    if not available:
        raise CaiError("lora.qlora: true needs a CUDA GPU and the bitsandbytes package; set lora.qlora: false")
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16, bnb_4bit_use_double_quant=True
    )


# ---------------------------------------------------------------- TRL args


def _bf16(config: StageConfig) -> bool:
    if config.bf16 is not None:
        return config.bf16
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def build_trl_args(config_cls: type, config: StageConfig, stage_fields: dict[str, Any]) -> Any:
    """Instantiate a TRL config dataclass from our common fields + the stage's fields + ``trl_args``.

    Unknown ``trl_args`` keys are one CaiError line naming the closest real fields, before anything loads.
    """
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(config.trl_args) - known)
    if unknown:
        import difflib

        hints = {k: difflib.get_close_matches(k, known, n=1) for k in unknown}
        shown = ", ".join(f"{k}" + (f" (did you mean {h[0]}?)" if h else "") for k, h in hints.items())
        raise ConfigError(f"trl_args: unknown {config_cls.__name__} field(s): {shown}")
    on_cuda = cuda_available()
    args: dict[str, Any] = {
        "output_dir": str(config.output_dir / "trainer"),
        "learning_rate": config.learning_rate,
        "num_train_epochs": config.num_train_epochs,
        "max_steps": config.max_steps,
        "per_device_train_batch_size": config.per_device_train_batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation_steps,
        "logging_steps": config.logging_steps,
        "seed": config.seed,
        "bf16": _bf16(config),
        "fp16": False,
        # transformers 5.24 renamed it (the old name still works, with a FutureWarning until v6)
        ("activation_checkpointing" if "activation_checkpointing" in known else "gradient_checkpointing"):
            config.gradient_checkpointing,
        "report_to": config.report_to or "none",
        **({"save_strategy": "steps", "save_steps": config.save_steps, "save_total_limit": 1}
           if config.save_steps else {"save_strategy": "no"}),
        "dataloader_num_workers": 0,
        "use_cpu": not on_cuda,
        "disable_tqdm": True,
    }
    args.update({k: v for k, v in stage_fields.items() if k in known})
    args.update(config.trl_args)
    try:
        return config_cls(**args)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{config_cls.__name__}: {str(exc).splitlines()[0]}") from None


# ---------------------------------------------------------------- output


def prepare_output(config: StageConfig, stage: str) -> Path:
    """Create the stage folder, write ``config.resolved.yaml`` and start a fresh ``metrics.jsonl``."""
    from cai_engine.logs import hush_loaded_libraries, log_to

    out = config.output_dir
    out.mkdir(parents=True, exist_ok=True)
    log_to(out / "log.txt")  # the trainer's library warnings and logs
    hush_loaded_libraries()
    from cai_engine.training.ranks import is_main_process

    if not is_main_process():  # other ranks of a distributed run write nothing
        return out
    resolved = {"stage": stage, **json.loads(config.model_dump_json())}
    (out / "config.resolved.yaml").write_text(yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True))
    metrics = out / "metrics.jsonl"
    checkpoint = resume_checkpoint(config)
    if checkpoint is None or not metrics.exists():
        metrics.write_text("")
    else:  # resuming: keep the rows up to the checkpoint; later ones will be logged again
        step = int(Path(checkpoint).name.rsplit("-", 1)[-1])
        kept = [line for line in metrics.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= step]
        metrics.write_text("".join(line + "\n" for line in kept))
    return out


def resume_checkpoint(config: StageConfig) -> str | None:
    """The newest checkpoint an interrupted run of this stage left in ``OUT/trainer`` (None: start fresh)."""
    if not config.save_steps:
        return None
    from transformers.trainer_utils import get_last_checkpoint

    folder = config.output_dir / "trainer"
    return get_last_checkpoint(str(folder)) if folder.is_dir() else None


def save_trained(trainer: Any, tokenizer: Any, config: StageConfig, *, model: Any = None) -> Path:
    """Save the adapter (or the merged/full model) and the tokenizer into ``OUT/model``."""
    out = config.output_dir / "model"
    model = model if model is not None else trainer.model
    if getattr(trainer, "accelerator", None) is not None:
        model = trainer.accelerator.unwrap_model(model)
    from peft import PeftModel

    if isinstance(model, PeftModel) and config.merge:
        model = model.merge_and_unload()
    from cai_engine.training.ranks import is_main_process

    if is_main_process():  # under Ray Train (or torchrun) rank 0 alone writes the stage folder
        model.save_pretrained(str(out))
        tokenizer.save_pretrained(str(out))
        push_trained(out, config)
    return out


def push_trained(model_dir: Path, config: StageConfig) -> None:
    """``push_to_hub``: upload the saved adapter/model (the local copy stays either way)."""
    if config.push_to_hub:
        from cai_engine.hub import push_folder

        push_folder(model_dir, config.push_to_hub, repo_type="model", private=config.hub_private)


def train_and_save(trainer: Any, tokenizer: Any, config: StageConfig, stage: str, extra: dict[str, Any] | None = None) -> "StageResult":
    """Train, save the model (adapter or merged), and describe the stage folder: the tail every
    supervised/preference stage shares."""
    from cai_engine.training.progress import use_our_progress

    use_our_progress(trainer, stage)
    trainer.train(resume_from_checkpoint=resume_checkpoint(config))
    model_dir = save_trained(trainer, tokenizer, config)
    out = config.output_dir
    return StageResult(stage=stage, output_dir=out, model_dir=model_dir, metrics_path=out / "metrics.jsonl",
                       final_metrics=last_metrics(config), extra=extra or {})


def last_metrics(config: StageConfig) -> dict[str, Any]:
    """The last line of metrics.jsonl (the final logged step), or {}."""
    path = config.output_dir / "metrics.jsonl"
    lines = [line for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    return json.loads(lines[-1]) if lines else {}


def make_metrics_writer(path: Path, extra_hooks: list[Any] | None = None) -> Any:
    """A TrainerCallback that appends one JSON line per ``on_log`` (training logs; eval logs too, tagged)."""
    from transformers import TrainerCallback

    class MetricsWriter(TrainerCallback):
        """Writes ``{"step", "epoch", ...logs}``; hooks may add fields (RL monitors) before the line is written."""

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
            if not logs or not state.is_world_process_zero:
                return
            row: dict[str, Any] = {"step": state.global_step, "epoch": state.epoch}
            row.update({k: _jsonable(v) for k, v in logs.items()})
            for hook in extra_hooks or []:
                row.update({k: (_jsonable(v) if k != "warnings" else v) for k, v in hook(row).items()})
            with path.open("a") as handle:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")

    return MetricsWriter()


def _jsonable(value: Any) -> Any:
    """Plain JSON values; NaN/inf become null so every line is strict JSON."""
    import math

    if isinstance(value, (str, bool)) or value is None:
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(number):
        return None
    return value if isinstance(value, int) else number
