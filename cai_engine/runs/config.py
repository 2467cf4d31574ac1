"""The schema of ``runs/NAME.yaml``: one file describes a whole RLAIF run.

Each section is a pydantic model with ``extra="forbid"``, so a typo is one
``file:line: field.path: message`` error. Training sections take any field of the matching stage
config (see ``cai train STAGE --help``) except ``model``/``dataset``/``output_dir``, which the run
wires from the previous stages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cai_engine.evaluation.config import METRICS, Metric
from cai_engine.executors.settings import RaySettings
from cai_engine.models.base import ModelConfig
from cai_engine.yamlfile import read_mapping, validation_error

STAGE_ORDER = ("revise", "sft", "pairs", "reward", "dpo", "orpo", "kto", "ppo", "grpo", "eval")
PREFERENCE_STAGES = ("dpo", "orpo", "kto")
RL_STAGES = ("ppo", "grpo")
TRAINING_STAGES = ("sft", "reward", *PREFERENCE_STAGES, *RL_STAGES)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PromptSources(_Strict):
    train: Path | str = Field(description=(
        "Prompts for revise/pairs/RL: jsonl/csv/parquet/txt, a datasets dir, or hf:NAME_OR_DIR[:CONFIG] "
        "(a Hub dataset or a local folder of parquet/JSON files; a local folder is relative to the config file)."))
    heldout: Path | None = Field(None, description="Held-out prompts for eval (default: the shipped eval set).")
    column: str | None = Field(None, description="Prompt column name (default: prompt/messages/instruction/question/...).")
    format: Literal["auto", "text", "messages", "hh"] = Field(
        "auto", description="How each prompt is read: detected per row, or one user turn, a messages list, an HH transcript.")
    split: str | None = Field(None, description="Split of an hf: dataset or datasets dir (default: train).")
    streaming: bool = Field(False, description="Stream an hf: dataset instead of downloading it first.")
    skip_bad_rows: bool = Field(False, description="Skip unusable prompt rows with a warning instead of stopping.")
    limit: int | None = Field(None, ge=1, description="Use only the first N training prompts.")

    @field_validator("train", mode="before")
    @classmethod
    def _hf_or_path(cls, value: Any) -> Any:
        """``hf:...`` stays a string (a dataset spec); anything else is a path."""
        if isinstance(value, str):
            return value if value.startswith("hf:") else Path(value)
        return value

    def reading(self) -> dict[str, Any]:
        """How the sources read :attr:`train` (keyword arguments of ``cai_engine.sources.iter_prompts``)."""
        return {"format": self.format, "split": self.split, "streaming": self.streaming,
                "skip_bad_rows": self.skip_bad_rows}


class RunModels(_Strict):
    policy: ModelConfig = Field(default_factory=ModelConfig, description="The model that answers and is trained (local/... for training).")
    judge: ModelConfig = Field(default_factory=ModelConfig, description="The AI judge (any backend).")

    @model_validator(mode="before")
    @classmethod
    def _specs_as_strings(cls, data: Any) -> Any:
        """Allow ``policy: local/smollm2`` as shorthand for ``policy: {spec: local/smollm2}``."""
        if isinstance(data, dict):
            return {k: {"spec": v} if isinstance(v, str) else v for k, v in data.items()}
        return data


class GenerationSettings(_Strict):
    max_tokens: int = Field(128, ge=1, description="Max tokens per generation step.")
    temperature: float = Field(0.0, ge=0, le=2, description="Sampling temperature (0 = greedy).")
    concurrency: int | None = Field(None, ge=1, description="Items in flight (default: the model's max_concurrency).")
    seed: int = Field(0, description="Seed for principle sampling and per-step seeds.")


class ReviseStage(_Strict):
    rounds: int | None = Field(None, ge=0, description="Critique->revise rounds (default: the constitution's).")
    principles_per_round: int | None = Field(None, ge=1, description="Principles per round (default: the constitution's).")
    few_shot: int | None = Field(None, ge=0, description="Few-shot examples prepended (default: all).")
    keep_truncated: bool = Field(False, description=(
        "Keep records whose answer depends on a generation that hit max_tokens in the SFT export (dropped and counted by default)."))


class PairsStage(_Strict):
    source: Literal["revisions", "samples"] = Field("revisions", description="initial vs revised answer, or two samples of the policy.")
    sample_temperature: float = Field(0.8, ge=0, le=2, description="Temperature for source=samples.")
    principles_per_judgment: int | None = Field(None, ge=1, description="Principles ensembled per pair.")
    cot: bool = Field(False, description="Chain of thought before the verdict (clamped).")
    min_confidence: float = Field(0.6, ge=0.5, le=1, description=(
        "Drop pairs below this judge confidence in the export (0.5 keeps every decided pair; docs/data-quality.md)."))
    drop_inconsistent: bool = Field(True, description="Drop pairs judged differently in the two orders (false keeps them).")
    keep_truncated: bool = Field(False, description="Keep pairs with a candidate that hit max_tokens in the exports (dropped by default).")


class EvalStage(_Strict):
    limit: int | None = Field(None, ge=1, description="Prompts per eval set.")
    max_tokens: int | None = Field(None, ge=1, description="Max tokens of eval answers (default: generation.max_tokens).")
    metrics: list[Metric] = Field(default_factory=lambda: list(METRICS), description="Which eval metrics to compute.")


class RunConfig(_Strict):
    name: str = Field(description="Run name; outputs go to runs/NAME/ next to the YAML unless out_dir is set.")
    out_dir: Path | None = Field(None, description="Where outputs go (default: runs/NAME beside the config file).")
    constitution: str = Field(description="Constitution path (relative to the config file) or shipped name.")
    prompts: PromptSources
    models: RunModels = Field(default_factory=RunModels)
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    stages: list[str] = Field(description=f"Stages in order, from: {', '.join(STAGE_ORDER)}.")
    revise: ReviseStage = Field(default_factory=ReviseStage)
    pairs: PairsStage = Field(default_factory=PairsStage)
    train: dict[str, dict[str, Any]] = Field(default_factory=dict, description=(
        "Per training stage: fields of its config; `ray: {workers, use_gpu, cpus_per_worker, address}` runs every "
        "training stage under Ray Train."))
    eval: EvalStage = Field(default_factory=EvalStage)
    use_cache: bool = Field(True, description="Use the response cache for model calls.")
    max_cost_usd: float | None = Field(None, ge=0, description="Stop generation stages once this much is spent.")
    ray: RaySettings | None = Field(None, description=(
        "Run the generation stages (revise, pairs, eval) on Ray workers: address, workers, num_cpus_per_worker, "
        "num_gpus_per_worker, batch_size (docs/scaling.md). Absent: in process."))

    @model_validator(mode="after")
    def _check_stages(self) -> "RunConfig":
        unknown = [s for s in self.stages if s not in STAGE_ORDER]
        if unknown:
            raise ValueError(f"unknown stage(s) {unknown}; choose from {', '.join(STAGE_ORDER)}")
        if len(set(self.stages)) != len(self.stages):
            raise ValueError("a stage is listed twice")
        positions = [STAGE_ORDER.index(s) for s in self.stages]
        if positions != sorted(positions):
            raise ValueError(f"stages must follow the order {' -> '.join(STAGE_ORDER)}")
        if sum(s in PREFERENCE_STAGES for s in self.stages) > 1 or sum(s in RL_STAGES for s in self.stages) > 1:
            raise ValueError("pick one preference stage (dpo|orpo|kto) and at most one RL stage (ppo|grpo)")
        if "sft" in self.stages and "revise" not in self.stages:
            raise ValueError("sft trains on the revise stage's output: add 'revise' before it")
        needs_pairs = [s for s in self.stages if s in (*PREFERENCE_STAGES, "reward")]
        if needs_pairs and "pairs" not in self.stages:
            raise ValueError(f"{needs_pairs[0]} trains on judged pairs: add 'pairs' before it")
        if self.pairs.source == "revisions" and "pairs" in self.stages and "revise" not in self.stages:
            raise ValueError("pairs.source 'revisions' needs the 'revise' stage (or set pairs.source: samples)")
        if "ppo" in self.stages and "reward" not in self.stages:
            raise ValueError("ppo needs a reward model: add 'reward' before it")
        for stage, fields in self.train.items():
            if stage not in TRAINING_STAGES:
                raise ValueError(f"train.{stage}: not a training stage ({', '.join(TRAINING_STAGES)})")
            wired = {"model", "dataset", "output_dir"} & set(fields)
            if wired:
                raise ValueError(f"train.{stage}: {', '.join(sorted(wired))} are wired by the run; remove them")
        return self


def load_run_config(path: Path, out_dir: Path | None = None) -> tuple[RunConfig, Path]:
    """Parse a run YAML; returns the config and its run dir. Errors name the file and field.

    ``out_dir`` (e.g. ``cai demo --out``) replaces the config's ``name``/``out_dir`` as the run dir;
    it is taken as given (relative to the working directory, not to the config file).
    """
    doc = read_mapping(path, "run config")
    try:
        config = RunConfig.model_validate(doc.data)
    except ValidationError as exc:
        raise validation_error(exc, doc) from None
    base = path.parent
    if out_dir is None:
        out_dir = _relative(base, config.out_dir or Path(config.name))
    else:
        config.out_dir = out_dir
    config.prompts.train = _relative_source(base, config.prompts.train)
    if config.prompts.heldout is not None:
        config.prompts.heldout = _relative(base, config.prompts.heldout)
    if config.constitution.endswith((".yaml", ".yml", ".json")):
        config.constitution = str(_relative(base, Path(config.constitution)))
    return config, out_dir


def _relative(base: Path, path: Path) -> Path:
    """Paths in a run config are relative to the config file, so a run works from any cwd."""
    return path if path.is_absolute() else base / path


def _relative_source(base: Path, source: Path | str) -> Path | str:
    """A path, or an ``hf:`` spec. ``hf:FOLDER`` (relative to the config file) is that folder's
    path: a folder is read the same way (``save_to_disk`` or data files) and stays hashable as
    the stage fingerprint's input; with ``:CONFIG``, or a Hub dataset id, the spec stays a string."""
    if isinstance(source, Path):
        return _relative(base, source)
    name, sep, config = source[len("hf:"):].partition(":")
    local = _relative(base, Path(name)) if name else None
    if local is None or not local.exists():
        return source
    return f"hf:{local}{sep}{config}" if config else local

