"""``cai judge``, ``cai judge-eval``, and ``cai export dpo`` / ``cai export reward``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from cai_engine.cli import options as opt

JudgeModel = Annotated[str, typer.Option("--judge-model", "-j", help="Judge model spec, e.g. local/smollm2, openai/gpt-4o-mini.")]
JudgeConfigFile = Annotated[Optional[Path], typer.Option("--judge-config", help="YAML of ModelConfig fields for the judge.")]
PerJudgment = Annotated[
    Optional[int], typer.Option("--principles-per-judgment", "-k", min=1, help="Principles ensembled per pair (default: the constitution's).")
]
CotOpt = Annotated[bool, typer.Option("--cot", help="Let the judge reason before its verdict; probabilities are clamped (--cot-clamp).")]
CotClampOpt = Annotated[str, typer.Option("--cot-clamp", help="LOW,HIGH band for chain-of-thought probabilities (CAI paper: 0.4,0.6).")]
NoLogprobsOpt = Annotated[bool, typer.Option("--no-logprobs", help="Do not ask for logprobs; always parse the verdict text.")]


def _clamp(value: str) -> tuple[float, float]:
    from cai_engine.errors import CaiError

    try:
        low, high = (float(v) for v in value.split(","))
    except ValueError:
        raise CaiError(f"--cot-clamp {value!r} is not LOW,HIGH; write e.g. 0.4,0.6") from None
    if not 0.0 <= low <= 0.5 <= high <= 1.0:
        raise CaiError(f"--cot-clamp {value!r} must satisfy 0 <= LOW <= 0.5 <= HIGH <= 1, e.g. 0.4,0.6")
    return low, high


def _settings(loaded: Any, k: int | None, cot: bool, cot_clamp: str, no_logprobs: bool, seed: int, max_tokens: int | None) -> Any:
    from cai_engine.errors import ConfigError
    from cai_engine.pipelines.judge import JudgeSettings

    k = k or loaded.sampling.principles_per_judgment
    if k > len(loaded.principles):
        raise ConfigError(f"--principles-per-judgment {k} is more than the {len(loaded.principles)} principles of {loaded.name}")
    return JudgeSettings(
        constitution=loaded, principles_per_judgment=k, cot=cot, cot_clamp=_clamp(cot_clamp),
        logprobs=not no_logprobs, seed=seed, max_tokens=max_tokens,
    )


def _run(pairs: Any, total: int | None, out: Path, settings: Any, judge_config: Any, *, what: str,
         policy: Any = None, model_b: Any = None, kind: str = "file", gen_params: Any = None,
         concurrency: int | None, retry_failed: bool, no_cache: bool, max_cost: float | None,
         manifest: dict[str, Any], batch: bool = False, shard: tuple[int, int] | None = None,
         grace: float = 30.0) -> Any:
    """Run the judge in one :class:`Session` on OUT (one budget for judge and policy)."""
    from cai_engine.engine.session import Session

    session = Session(out, max_cost_usd=max_cost, use_cache=not no_cache, grace_s=grace)
    return session.run(lambda s: _judge_in_session(
        s, pairs, total, out, settings, judge_config, what=what, policy=policy, model_b=model_b, kind=kind,
        gen_params=gen_params, concurrency=concurrency, retry_failed=retry_failed, manifest=manifest, batch=batch,
        shard=shard))


async def _judge_in_session(session: Any, pairs: Any, total: int | None, out: Path, settings: Any, judge_config: Any, *,
                            what: str, policy: Any, model_b: Any, kind: str, gen_params: Any, concurrency: int | None,
                            retry_failed: bool, manifest: dict[str, Any], batch: bool,
                            shard: tuple[int, int] | None) -> Any:
    """Build engines, stream pairs through the judge with progress, write the manifest.

    ``pairs`` is an iterable of :class:`PairSpec`, or for generated sources a function of the
    generator's recipe returning one (the recipe goes into every pair id). A policy with the same
    config as the judge shares the judge's engine, so a local model is loaded once.
    """
    from cai_engine.cli.progress import RunProgress, console
    from cai_engine.manifest import write_manifest
    from cai_engine.pipelines.candidates import CandidateGenerator
    from cai_engine.pipelines.judge import run_judge

    engines = [session.engine(judge_config, batch_dir=out / "batches" if batch else None)]
    generator = None
    if policy is not None:

        def engine_for(config: Any) -> Any:
            same = next((e for e in engines if e.config == config), None)
            if same is None:
                same = session.engine(config)
                engines.append(same)
            return same

        first = engine_for(policy)
        second = engine_for(model_b) if model_b is not None else None
        generator = CandidateGenerator(kind, first, gen_params, model_b=second,
                                       system_prompt=settings.constitution.system_prompt, seed=settings.seed)
        pairs = pairs(generator.recipe())
    started = time.perf_counter()
    summary = None
    try:
        with RunProgress(what, total, engines) as progress:
            summary = await run_judge(
                pairs, engine=engines[0], settings=settings, out_path=out / "pairs.jsonl", generator=generator,
                concurrency=concurrency or engines[0].suggested_concurrency, retry_failed=retry_failed,
                on_record=progress.record, on_skip=progress.skip, shard=shard,
            )
    finally:
        write_manifest(out, what.split()[0], {
            **manifest,
            "constitution": {"name": settings.constitution.name, "hash": settings.constitution.hash},
            "settings": settings.fingerprint(engines[0].spec),
            "engines": [e.stats.model_dump() for e in engines],
            "budget": session.ledger.snapshot(),
            "wall_s": round(time.perf_counter() - started, 2),
        })
    console.print(f"[green]done[/green] {summary.done} new, {summary.skipped} already done, {summary.failed} failed -> {out / 'pairs.jsonl'}")
    if summary.failed:
        console.print(f"[yellow]{summary.failed} failed[/yellow] (first: {summary.failures[0]}); rerun with --retry-failed to redo them")
    return summary


def judge(
    constitution: opt.ConstitutionOpt,
    pairs_from: Annotated[str, typer.Option("--pairs-from", help="revisions:OUT_DIR | samples:PROMPTS | models:PROMPTS | file:PAIRS.jsonl")],
    out: opt.OutDir,
    judge_model: JudgeModel = "local/smollm2",
    judge_config: JudgeConfigFile = None,
    policy_model: Annotated[Optional[str], typer.Option("--policy-model", help="Policy that writes candidates (samples:/models:).")] = None,
    policy_config: Annotated[Optional[Path], typer.Option("--policy-config", help="YAML of ModelConfig fields for the policy.")] = None,
    model_b: Annotated[Optional[str], typer.Option("--model-b", help="Second model for models:PROMPTS.")] = None,
    principles_per_judgment: PerJudgment = None,
    cot: CotOpt = False,
    cot_clamp: CotClampOpt = "0.4,0.6",
    no_logprobs: NoLogprobsOpt = False,
    column: opt.ColumnOpt = None,
    limit: opt.LimitOpt = None,
    concurrency: opt.ConcurrencyOpt = None,
    max_tokens: opt.MaxTokensOpt = None,
    temperature: Annotated[float, typer.Option("--temperature", min=0, max=2, help="Policy temperature for samples:/models: candidates.")] = 1.0,
    seed: opt.SeedOpt = 0,
    retry_failed: opt.RetryFailedOpt = False,
    no_cache: opt.NoCacheOpt = False,
    max_cost: opt.MaxCostOpt = None,
    batch: opt.BatchOpt = False,
    shard: opt.ShardOpt = None,
    grace: opt.GraceOpt = 30.0,
) -> None:
    """Judge pairs of answers under a constitution, in both orders, into OUT/pairs.jsonl.

    Rerunning the same command resumes. Export afterwards with `cai export dpo OUT` or `cai export reward OUT`.

    Example:

        cai judge -c general --pairs-from revisions:out/demo --judge-model local/smollm2 -o out/demo-pairs
    """
    from cai_engine.constitution import load_constitution
    from cai_engine.engine.factory import load_model_config
    from cai_engine.engine.runner import parse_shard
    from cai_engine.errors import CaiError
    from cai_engine.pipelines import candidates as cands
    from cai_engine.sources import count_prompts

    shard_spec = parse_shard(shard)
    kind, path = cands.parse_pairs_from(pairs_from)
    loaded = load_constitution(constitution)
    settings = _settings(loaded, principles_per_judgment, cot, cot_clamp, no_logprobs, seed, max_tokens)
    judge_cfg = load_model_config(judge_model, judge_config)
    policy = second = gen_params = None
    if kind in ("samples", "models"):
        if not policy_model and policy_config is None:
            raise CaiError(f"--pairs-from {kind}:... needs --policy-model SPEC to write the candidates")
        policy = load_model_config(policy_model, policy_config)
        if kind == "models":
            if not model_b:
                raise CaiError("--pairs-from models:... needs --model-b SPEC (the second model)")
            second = load_model_config(model_b, None)
        gen_params = policy.defaults.model_copy(update={"temperature": temperature if kind == "samples" else policy.defaults.temperature})

        def pairs(recipe: dict[str, Any]) -> Any:
            return cands.prompt_pairs(kind, path, recipe, column, limit)

        total: int | None = count_prompts(path, column, limit)
        source: Any = pairs
    elif kind == "revisions":
        source = cands.revision_pairs(path, limit)
        total = sum(1 for _ in cands.revision_pairs(path, limit))
    else:
        source = cands.file_pairs(path, limit)
        total = sum(1 for _ in cands.file_pairs(path, limit))
    _run(
        source, None if shard_spec else total, out, settings, judge_cfg, what=f"judge {loaded.name}", policy=policy, model_b=second,
        kind=kind, gen_params=gen_params, concurrency=concurrency, retry_failed=retry_failed, no_cache=no_cache, max_cost=max_cost,
        batch=batch, shard=shard_spec, grace=grace,
        manifest={"pairs_from": pairs_from, "shard": shard,
                  "judge_model": judge_cfg.model_dump(mode="json", exclude={"api_key_file"})},
    )


def judge_eval(
    labels: Annotated[
        Optional[Path], typer.Option("--labels", "-l", help="Human-labelled pairs: JSONL of prompt/chosen/rejected (default: the shipped set).")
    ] = None,
    constitution: opt.ConstitutionOpt = "general",
    out: opt.OutDir = Path("out/judge-eval"),
    judge_model: JudgeModel = "local/smollm2",
    judge_config: JudgeConfigFile = None,
    principles_per_judgment: PerJudgment = None,
    cot: CotOpt = False,
    cot_clamp: CotClampOpt = "0.4,0.6",
    no_logprobs: NoLogprobsOpt = False,
    limit: opt.LimitOpt = None,
    concurrency: opt.ConcurrencyOpt = None,
    seed: opt.SeedOpt = 0,
    retry_failed: opt.RetryFailedOpt = False,
    no_cache: opt.NoCacheOpt = False,
    max_cost: opt.MaxCostOpt = None,
    grace: opt.GraceOpt = 30.0,
) -> None:
    """Measure a judge against human labels: agreement (bootstrap 95% CI), position consistency, length bias, calibration.

    Writes OUT/pairs.jsonl, OUT/judge_eval.json, OUT/judge_eval.md and OUT/reliability.png.

    Example:

        cai judge-eval --labels cai_engine/data/judge_eval/labels.jsonl --judge-model local/smollm2 -c general -o out/judge-eval
    """
    from cai_engine.cli.progress import console
    from cai_engine.constitution import load_constitution
    from cai_engine.engine.factory import load_model_config
    from cai_engine.engine.records import iter_latest
    from cai_engine.errors import CaiError
    from cai_engine.evaluation.judge_eval import SHIPPED_LABELS, evaluate, write_report
    from cai_engine.pipelines.candidates import file_pairs

    labels = labels or SHIPPED_LABELS
    if not labels.exists():
        raise CaiError(f"labels file {labels} not found; pass --labels FILE (JSONL of prompt/chosen/rejected)")
    specs = list(file_pairs(labels, limit))
    if any(s.label is None for s in specs):
        raise CaiError(f"{labels}: every row of a labels file needs 'chosen' and 'rejected' (the human-preferred answer first)")
    loaded = load_constitution(constitution)
    settings = _settings(loaded, principles_per_judgment, cot, cot_clamp, no_logprobs, seed, None)
    judge_cfg = load_model_config(judge_model, judge_config)
    _run(
        specs, len(specs), out, settings, judge_cfg, what=f"judge-eval {loaded.name}", concurrency=concurrency,
        retry_failed=retry_failed, no_cache=no_cache, max_cost=max_cost, grace=grace,
        manifest={"labels": str(labels), "judge_model": judge_cfg.model_dump(mode="json", exclude={"api_key_file"})},
    )
    from cai_engine.pipelines.judge import pair_id

    wanted = {pair_id(s, settings, judge_cfg.spec) for s in specs}
    records = [r for r in iter_latest(out / "pairs.jsonl") if r["id"] in wanted]
    report = {"judge_model": judge_cfg.spec, "constitution": f"{loaded.name}@{loaded.hash}", "labels": str(labels),
              **evaluate(records, seed=seed)}
    paths = write_report(report, out)
    from rich.console import Console
    from rich.markdown import Markdown

    Console().print(Markdown(paths["markdown"].read_text()))
    console.print(f"[green]wrote[/green] {paths['json']}, {paths['markdown']}, {paths['png']}")


def _export(kind: str, source: Path, out: Path, min_confidence: float, drop_inconsistent: bool, length_balanced: bool) -> None:
    from cai_engine.cli.progress import console
    from cai_engine.exports.preference import export_preference

    figures = export_preference(source, out, kind=kind, min_confidence=min_confidence,  # type: ignore[arg-type]
                                drop_inconsistent=drop_inconsistent, length_balanced=length_balanced)
    console.print(
        f"[green]exported[/green] {figures['rows_exported']} {kind} rows (dropped: {figures['dropped']}) -> {out}\n"
        f"longer-wins rate {figures['exported_pairs']['longer_wins_rate']}, position consistency "
        f"{figures['all_pairs']['position_consistency_rate']}; load with datasets.load_from_disk('{out / 'dataset'}')"
    )


PairsSource = Annotated[Path, typer.Argument(help="The --out dir of `cai judge` (or its pairs.jsonl).")]
ExportOut = Annotated[Path, typer.Option("--out", "-o", help="Export dir (dataset/, data.parquet, README.md).")]
MinConfidence = Annotated[float, typer.Option("--min-confidence", min=0.5, max=1.0, help="Keep pairs with P(chosen better) >= this.")]
DropInconsistent = Annotated[bool, typer.Option("--drop-inconsistent", help="Drop pairs whose verdict flips when A/B are swapped.")]
LengthBalanced = Annotated[bool, typer.Option("--length-balanced", help="Keep as many shorter-chosen as longer-chosen pairs.")]


def export_dpo_command(source: PairsSource, out: ExportOut, min_confidence: MinConfidence = 0.5,
                       drop_inconsistent: DropInconsistent = False, length_balanced: LengthBalanced = False) -> None:
    """DPO dataset: prompt/chosen/rejected (TRL conversational preference) + confidence/consistent.

    Example:

        cai export dpo out/demo-pairs --out out/demo-dpo --min-confidence 0.6 --drop-inconsistent
    """
    _export("dpo", source, out, min_confidence, drop_inconsistent, length_balanced)


def export_reward_command(source: PairsSource, out: ExportOut, min_confidence: MinConfidence = 0.5,
                          drop_inconsistent: DropInconsistent = False, length_balanced: LengthBalanced = False) -> None:
    """Reward-model dataset: prompt/chosen/rejected + margin (2*confidence-1) and confidence.

    Example:

        cai export reward out/demo-pairs --out out/demo-rm --drop-inconsistent
    """
    _export("reward", source, out, min_confidence, drop_inconsistent, length_balanced)


def register(app: typer.Typer) -> None:
    from cai_engine.cli.export import export_app

    app.command("judge")(judge)
    app.command("judge-eval")(judge_eval)
    export_app.command("dpo")(export_dpo_command)
    export_app.command("reward")(export_reward_command)
