"""``cai judge``, ``cai judge-eval``, and ``cai export dpo`` / ``cai export reward``."""

from __future__ import annotations

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


def judge(
    constitution: opt.ConstitutionOpt,
    pairs_from: Annotated[str, typer.Option("--pairs-from", help=(
        "revisions:OUT_DIR | samples:PROMPTS | models:PROMPTS | file:PAIRS (PROMPTS/PAIRS: a file, a datasets dir "
        "or hf:NAME_OR_DIR[:CONFIG])"))],
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
    format: opt.FormatOpt = "auto",
    split: opt.SplitOpt = None,
    streaming: opt.StreamingOpt = False,
    skip_bad_rows: opt.SkipBadRowsOpt = False,
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
    max_failure_rate: opt.MaxFailureRateOpt = 0.5,
    new_settings: opt.NewSettingsOpt = False,
    ray: opt.RayOpt = False,
    ray_address: opt.RayAddressOpt = None,
    ray_workers: opt.RayWorkersOpt = None,
) -> None:
    """Judge pairs of answers under a constitution, in both orders, into OUT/pairs.jsonl.

    Rerunning the same command resumes. Export afterwards with `cai export dpo OUT` or `cai export reward OUT`.

    Example:

        cai judge -c general --pairs-from revisions:out/demo --judge-model local/smollm2 -o out/demo-pairs
    """
    from cai_engine.api.judge import judge as api_judge
    from cai_engine.cli.progress import RunProgress

    result = api_judge(
        pairs_from, constitution=constitution, out=out, judge_model=judge_model, judge_config=judge_config,
        policy_model=policy_model, policy_config=policy_config, model_b=model_b,
        principles_per_judgment=principles_per_judgment, cot=cot, cot_clamp=cot_clamp, no_logprobs=no_logprobs,
        column=column, limit=limit, concurrency=concurrency, max_tokens=max_tokens, temperature=temperature, seed=seed,
        retry_failed=retry_failed, no_cache=no_cache, max_cost=max_cost, batch=batch, shard=shard, grace=grace,
        new_settings=new_settings, format=format, split=split, streaming=streaming, skip_bad_rows=skip_bad_rows,
        progress=RunProgress, with_dataset=False, ray=opt.ray_choice(ray, ray_address, ray_workers),
    )
    from cai_engine.cli.revise import report_bad_rows
    from cai_engine.cli.summary import report_summary

    report_bad_rows(getattr(result, "bad_rows", 0))

    report_summary(result.summary, out / "pairs.jsonl", max_failure_rate,
                   next_step=f"cai export dpo {out} --out {out / 'dpo'}")


def judge_eval(
    labels: Annotated[
        Optional[Path], typer.Option("--labels", "-l", help=(
            "Human-labelled pairs with prompt/chosen/rejected (or chosen/rejected whole transcripts): JSONL, parquet, "
            "a datasets dir or hf:NAME_OR_DIR (default: the shipped set)."))
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
    column: opt.ColumnOpt = None,
    format: opt.FormatOpt = "auto",
    split: opt.SplitOpt = None,
    streaming: opt.StreamingOpt = False,
    skip_bad_rows: opt.SkipBadRowsOpt = False,
) -> None:
    """Measure a judge against human labels: agreement (bootstrap 95% CI), position consistency, length bias, calibration.

    Writes OUT/pairs.jsonl, OUT/judge_eval.json, OUT/judge_eval.md and OUT/reliability.png.

    Example:

        cai judge-eval --labels cai_engine/data/judge_eval/labels.jsonl --judge-model local/smollm2 -c general -o out/judge-eval
    """
    from cai_engine.api.judge import judge_eval as api_judge_eval
    from cai_engine.cli.progress import RunProgress, console

    report = api_judge_eval(
        labels, constitution=constitution, out=out, judge_model=judge_model, judge_config=judge_config,
        principles_per_judgment=principles_per_judgment, cot=cot, cot_clamp=cot_clamp, no_logprobs=no_logprobs,
        limit=limit, concurrency=concurrency, seed=seed, retry_failed=retry_failed, no_cache=no_cache,
        max_cost=max_cost, grace=grace, column=column, format=format, split=split, streaming=streaming,
        skip_bad_rows=skip_bad_rows, progress=RunProgress,
    )
    from rich.console import Console
    from rich.markdown import Markdown

    paths = report["paths"]
    Console().print(Markdown(Path(paths["markdown"]).read_text()))
    console.print(f"[green]wrote[/green] {paths['json']}, {paths['markdown']}, {paths['png']}")


def _export(kind: str, source: Path, out: Path, min_confidence: float, drop_inconsistent: bool, length_balanced: bool,
            push_to_hub: str | None = None, private: bool = False, keep_truncated: bool = False,
            all_settings: bool = False) -> None:
    from cai_engine.cli.progress import console
    from cai_engine.exports.preference import export_preference
    from cai_engine.pipelines.quality import dropped_line

    figures = export_preference(source, out, kind=kind, min_confidence=min_confidence,  # type: ignore[arg-type]
                                drop_inconsistent=drop_inconsistent, length_balanced=length_balanced,
                                keep_truncated=keep_truncated, all_settings=all_settings)
    quality = figures["quality"]
    console.print(
        f"[green]exported[/green] {figures['rows_exported']} {kind} rows -> {out}\n"
        f"{dropped_line(quality)}\n"
        f"truncation rate {quality['truncation_rate']}, position consistency {quality['position_consistency_rate']}, "
        f"tie rate {quality['tie_rate']}, longer-wins rate {quality['longer_wins_rate']['kept']} (kept); "
        f"report: {out / 'quality.json'}\n"
        f"load with datasets.load_from_disk('{out / 'dataset'}')"
    )
    from cai_engine.cli.export import push_export

    push_export(out, push_to_hub, private)


PairsSource = Annotated[Path, typer.Argument(help="The --out dir of `cai judge` (or its pairs.jsonl).")]
ExportOut = Annotated[Path, typer.Option("--out", "-o", help="Export dir (dataset/, data.parquet, README.md, quality.json).")]
MinConfidence = Annotated[float, typer.Option("--min-confidence", min=0.5, max=1.0, help=(
    "Keep pairs with P(chosen better) >= this (0.5 keeps every decided pair; see docs/data-quality.md)."))]
DropInconsistent = Annotated[bool, typer.Option("--drop-inconsistent/--keep-inconsistent", help=(
    "Drop pairs whose verdict flips when A/B are swapped (the default), or keep them."))]
LengthBalanced = Annotated[bool, typer.Option("--length-balanced", help="Keep as many shorter-chosen as longer-chosen pairs.")]
KeepTruncated = Annotated[bool, typer.Option("--keep-truncated", help="Keep pairs whose candidate stopped at the token limit.")]
AllSettings = Annotated[bool, typer.Option("--all-settings", help="Export the records of every settings the folder holds, not only the current.")]


def export_dpo_command(source: PairsSource, out: ExportOut, min_confidence: MinConfidence = 0.6,
                       drop_inconsistent: DropInconsistent = True, length_balanced: LengthBalanced = False,
                       keep_truncated: KeepTruncated = False, all_settings: AllSettings = False,
                       push_to_hub: opt.PushToHubOpt = None, private: opt.PrivateOpt = False) -> None:
    """DPO dataset: prompt/chosen/rejected (TRL conversational preference) + confidence/consistent.

    By default only real preferences of complete answers: truncated, position-inconsistent and
    below-0.6-confidence pairs are dropped and counted (quality.json, the card).

    Example:

        cai export dpo out/demo-pairs --out out/demo-dpo --min-confidence 0.7
    """
    _export("dpo", source, out, min_confidence, drop_inconsistent, length_balanced, push_to_hub, private,
            keep_truncated, all_settings)


def export_reward_command(source: PairsSource, out: ExportOut, min_confidence: MinConfidence = 0.6,
                          drop_inconsistent: DropInconsistent = True, length_balanced: LengthBalanced = False,
                          keep_truncated: KeepTruncated = False, all_settings: AllSettings = False,
                          push_to_hub: opt.PushToHubOpt = None, private: opt.PrivateOpt = False) -> None:
    """Reward-model dataset: prompt/chosen/rejected + margin (2*confidence-1) and confidence.

    The same default filters as `cai export dpo`.

    Example:

        cai export reward out/demo-pairs --out out/demo-rm --keep-inconsistent
    """
    _export("reward", source, out, min_confidence, drop_inconsistent, length_balanced, push_to_hub, private,
            keep_truncated, all_settings)


def register(app: typer.Typer) -> None:
    from cai_engine.cli.export import export_app

    app.command("judge")(judge)
    app.command("judge-eval")(judge_eval)
    export_app.command("dpo")(export_dpo_command)
    export_app.command("reward")(export_reward_command)
