"""One function per run stage. Each reads what earlier stages left in the run dir and returns its outputs.

Generation stages (revise, pairs) stream through the same pipelines as ``cai revise``/``cai judge``
and resume from their record files; training stages call :func:`cai_engine.training.run_stage`
with the model/dataset/output wiring filled in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from cai_engine.constitution import Constitution
from cai_engine.engine.engine import Engine
from cai_engine.engine.factory import build_engine
from cai_engine.engine.session import current_session
from cai_engine.engine.progress import ProgressFactory, no_progress
from cai_engine.executors import executor_for
from cai_engine.models.base import ModelConfig, SamplingParams
from cai_engine.runs.config import RunConfig


@dataclass
class RunContext:
    config: RunConfig
    run_dir: Path
    constitution: Constitution
    progress: ProgressFactory = no_progress  # ``(description, total, engines) -> context manager``, from the caller
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # stage -> its outputs (from state)
    engine_stats: dict[str, Any] = field(default_factory=dict)

    def stage_dir(self, stage: str) -> Path:
        return self.run_dir / stage

    def engine(self, config: ModelConfig) -> Engine:
        """An engine of the stage's :class:`Session` (the run's one ledger; closed with the stage)."""
        session = current_session()
        if session is None:
            return build_engine(config, use_cache=self.config.use_cache, max_cost_usd=self.config.max_cost_usd)
        return session.engine(config)

    def params(self, **update: Any) -> SamplingParams:
        gen = self.config.generation
        return self.config.models.policy.defaults.model_copy(
            update={"max_tokens": gen.max_tokens, "temperature": gen.temperature, **update}
        )

    def base_policy_path(self) -> Path:
        from cai_engine.training.common import resolve_model_path

        return resolve_model_path(self.config.models.policy.spec, what="policy model")

    def current_policy(self) -> Path:
        """The newest trained policy (after sft / dpo / ppo ...), else the base policy."""
        for stage in ("grpo", "ppo", "kto", "orpo", "dpo", "sft"):
            if stage in self.outputs and "model_dir" in self.outputs[stage]:
                return Path(self.outputs[stage]["model_dir"])
        return self.base_policy_path()

    def policy_config(self, path: Path) -> ModelConfig:
        """The policy's generation config pointed at a trained checkpoint, on the same backend (local or vLLM)."""
        policy = self.config.models.policy
        provider = policy.provider if policy.provider in ("local", "vllm") else "local"
        return policy.model_copy(update={"spec": f"{provider}/{path}"})


async def _records_stage(ctx: RunContext, description: str, engines: list[Engine], total: int,
                         run: Callable[..., Any]) -> Any:
    with ctx.progress(description, total, engines) as progress:
        return await run(on_record=progress.record, on_skip=progress.skip)


def _stage_export(fields: str, export: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """An export of a run stage; when its filters leave nothing, the error names the run config's fields."""
    from cai_engine.errors import CaiError
    from cai_engine.exports.common import NothingToExport

    try:
        return export()
    except NothingToExport:
        raise
    except CaiError as exc:
        if "passed the filters" not in str(exc):
            raise
        raise CaiError(f"{str(exc).split('; ')[0]}; loosen {fields} in the run config (docs/data-quality.md)") from None


async def stage_revise(ctx: RunContext) -> dict[str, Any]:
    from cai_engine.exports.sft import export_sft
    from cai_engine.pipelines.revise import ReviseSettings, run_revise
    from cai_engine.sources import count_prompts, iter_prompts

    cfg, constitution = ctx.config, ctx.constitution
    settings = ReviseSettings(
        constitution=constitution,
        params=ctx.params(),
        rounds=constitution.sampling.rounds if cfg.revise.rounds is None else cfg.revise.rounds,
        principles_per_round=cfg.revise.principles_per_round or constitution.sampling.principles_per_round,
        few_shot=len(constitution.few_shot) if cfg.revise.few_shot is None else min(cfg.revise.few_shot, len(constitution.few_shot)),
        seed=cfg.generation.seed,
    )
    out = ctx.stage_dir("revise")
    engine = ctx.engine(cfg.models.policy)
    try:
        read = cfg.prompts.reading()
        summary = await _records_stage(
            ctx,
            "revise",
            [engine],
            count_prompts(cfg.prompts.train, cfg.prompts.column, cfg.prompts.limit, **read),  # checks every row first
            lambda **cb: run_revise(
                iter_prompts(cfg.prompts.train, cfg.prompts.column, cfg.prompts.limit, **read),
                engine=engine, settings=settings, out_path=out / "revisions.jsonl",
                concurrency=engine.runner_concurrency(cfg.generation.concurrency),
                executor=executor_for(cfg.ray), **cb,
            ),
        )
    finally:
        ctx.engine_stats["revise"] = engine.stats.model_dump()
        await engine.aclose()
    # Drops truncated records (unless revise.keep_truncated) and other settings' records, counted in quality.json.
    figures = _stage_export("revise.keep_truncated", lambda: export_sft(out, out / "sft", keep_truncated=cfg.revise.keep_truncated))
    quality = figures["quality"]
    return {"records": out / "revisions.jsonl", "sft_export": out / "sft", "new": summary.done,
            "failed": figures["records_failed"], "rows": figures["rows_exported"],
            "dropped": {k: v for k, v in quality["rows"]["dropped"].items() if v},
            "truncation_rate": quality["truncation_rate"]}


async def stage_pairs(ctx: RunContext) -> dict[str, Any]:
    from cai_engine.exports.preference import export_preference
    from cai_engine.pipelines.candidates import CandidateGenerator, prompt_pairs, revision_pairs
    from cai_engine.engine.records import count_latest
    from cai_engine.pipelines.judge import JudgeSettings, run_judge
    from cai_engine.sources import count_prompts

    cfg, constitution = ctx.config, ctx.constitution
    out = ctx.stage_dir("pairs")
    judge = ctx.engine(cfg.models.judge)
    engines = [judge]
    generator = None
    if cfg.pairs.source == "revisions":
        records = Path(ctx.outputs["revise"]["records"])
        pairs: Any = revision_pairs(records)  # streamed: never a list of every pair
        total = count_latest(records, "ok")
    else:
        policy = ctx.engine(ctx.policy_config(ctx.current_policy()))
        engines.append(policy)
        generator = CandidateGenerator(
            "samples", policy, ctx.params(temperature=cfg.pairs.sample_temperature),
            system_prompt=None, seed=cfg.generation.seed,
        )
        read = cfg.prompts.reading()
        total = count_prompts(cfg.prompts.train, cfg.prompts.column, cfg.prompts.limit, **read)  # checks every row first
        pairs = prompt_pairs("samples", cfg.prompts.train, generator.recipe(), cfg.prompts.column, cfg.prompts.limit,
                             **read)
    settings = JudgeSettings(
        constitution=constitution,
        principles_per_judgment=cfg.pairs.principles_per_judgment or constitution.sampling.principles_per_judgment,
        cot=cfg.pairs.cot,
        seed=cfg.generation.seed,
    )
    try:
        summary = await _records_stage(
            ctx,
            "pairs",
            engines,
            total,
            lambda **cb: run_judge(
                pairs, engine=judge, settings=settings, out_path=out / "pairs.jsonl",
                concurrency=judge.runner_concurrency(cfg.generation.concurrency), generator=generator,
                executor=executor_for(cfg.ray), **cb,
            ),
        )
    finally:
        ctx.engine_stats["pairs"] = {e.spec: e.stats.model_dump() for e in engines}
        for engine in engines:
            await engine.aclose()
    exports = {}
    for kind in ("dpo", "reward"):
        figures = _stage_export("pairs.min_confidence / pairs.drop_inconsistent / pairs.keep_truncated", lambda: export_preference(
            out, out / kind, kind=kind, min_confidence=cfg.pairs.min_confidence, drop_inconsistent=cfg.pairs.drop_inconsistent,
            keep_truncated=cfg.pairs.keep_truncated,
        ))
        exports[kind] = figures
    return {"records": out / "pairs.jsonl", "dpo_export": out / "dpo", "reward_export": out / "reward", "new": summary.done,
            "rows": exports["dpo"].get("rows_exported", exports["dpo"].get("rows")), "figures": exports["dpo"]}


def _train(ctx: RunContext, stage: str, model: Path, dataset: Path, **wired: Any) -> dict[str, Any]:
    from cai_engine.training import load_stage_config, run_stage

    fields = {**ctx.config.train.get(stage, {}), "model": str(model), "dataset": str(dataset),
              "output_dir": str(ctx.stage_dir(stage)), **wired}
    if stage != "reward":
        # The next stage (and eval) starts from this policy as a full checkpoint, so merge the adapter
        # unless the config says otherwise.
        fields.setdefault("merge", True)
    config = load_stage_config(stage, None, **fields)
    ray = ctx.config.train.get("ray")
    if ray:  # `train: {ray: {workers: 2, use_gpu: true}}`: every training stage under Ray Train
        from cai_engine.training.ray_train import RayTrainSettings, run_stage_on_ray

        result = run_stage_on_ray(stage, config, RayTrainSettings.model_validate(ray))
    else:
        result = run_stage(stage, config)
    return {"model_dir": result.model_dir, "metrics": result.metrics_path, "final_metrics": result.final_metrics, **result.extra}


async def stage_sft(ctx: RunContext) -> dict[str, Any]:
    return _train(ctx, "sft", ctx.base_policy_path(), Path(ctx.outputs["revise"]["sft_export"]))


async def stage_reward(ctx: RunContext) -> dict[str, Any]:
    return _train(ctx, "reward", ctx.base_policy_path(), Path(ctx.outputs["pairs"]["reward_export"]))


async def stage_preference(ctx: RunContext, stage: str) -> dict[str, Any]:
    return _train(ctx, stage, ctx.current_policy(), Path(ctx.outputs["pairs"]["dpo_export"]))


async def stage_rl(ctx: RunContext, stage: str) -> dict[str, Any]:
    wired: dict[str, Any] = {}
    if "reward" in ctx.outputs:
        wired["reward_model"] = str(ctx.outputs["reward"]["model_dir"])
    return _train(ctx, stage, ctx.current_policy(), Path(ctx.outputs["pairs"]["dpo_export"]), **wired)


async def stage_eval(ctx: RunContext) -> dict[str, Any]:
    """The trained policy against the base policy under the judge (see :mod:`cai_engine.evaluation`)."""
    from cai_engine.evaluation import summary
    from cai_engine.evaluation.config import EvalConfig
    from cai_engine.evaluation.runner import FILES, engines_for, evaluate_async

    cfg = ctx.config
    trained_config = ctx.policy_config(ctx.current_policy())
    eval_config = EvalConfig(
        model=trained_config.spec, base_model=cfg.models.policy.spec, judge_model=cfg.models.judge.spec,
        constitution=str(ctx.constitution.source_path or cfg.constitution),
        heldout=cfg.prompts.heldout, limit=cfg.eval.limit, max_tokens=cfg.eval.max_tokens or cfg.generation.max_tokens,
        seed=cfg.generation.seed, use_cache=cfg.use_cache, max_cost_usd=cfg.max_cost_usd, metrics=cfg.eval.metrics,
    )
    out = ctx.stage_dir("eval")
    distinct = engines_for(trained_config, cfg.models.policy, cfg.models.judge, ctx.engine)  # a base that also judges loads once
    try:
        report = await evaluate_async(eval_config, out, engines=distinct, progress=ctx.progress, executor=executor_for(cfg.ray))
    finally:
        ctx.engine_stats["eval"] = {e.spec: e.stats.model_dump() for e in distinct.distinct()}
        for engine in distinct.distinct():
            await engine.aclose()
    return {"eval_json": out / FILES["report"], "headline": summary.headline(report)}
