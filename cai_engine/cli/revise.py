"""``cai revise``: critique->revise SFT data for a prompt file under a constitution."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from cai_engine.cli import options as opt


def revise(
    constitution: opt.ConstitutionOpt,
    prompts: opt.PromptsOpt,
    out: opt.OutDir,
    model: opt.ModelSpec = "local/smollm2",
    model_config: opt.ModelConfigFile = None,
    rounds: Annotated[Optional[int], typer.Option("--rounds", min=0, help="Critique->revise rounds (default: the constitution's).")] = None,
    principles_per_round: Annotated[
        Optional[int], typer.Option("--principles-per-round", "-k", min=1, help="Principles sampled per round (default: the constitution's).")
    ] = None,
    few_shot: Annotated[Optional[int], typer.Option("--few-shot", min=0, help="Few-shot examples to prepend (default: all).")] = None,
    column: opt.ColumnOpt = None,
    format: opt.FormatOpt = "auto",
    split: opt.SplitOpt = None,
    streaming: opt.StreamingOpt = False,
    skip_bad_rows: opt.SkipBadRowsOpt = False,
    limit: opt.LimitOpt = None,
    concurrency: opt.ConcurrencyOpt = None,
    max_tokens: opt.MaxTokensOpt = None,
    temperature: opt.TemperatureOpt = None,
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
    """Answer each prompt, critique the answer against sampled principles, and revise it.

    Records go to OUT/revisions.jsonl as each prompt finishes; rerunning the same command resumes
    (finished prompts are skipped). Export the SFT dataset afterwards with `cai export sft OUT`.

    Example:

        cai revise -c general -p prompts.jsonl -o out/demo --limit 8 --rounds 1

        cai revise -c general -p hf:Anthropic/hh-rlhf/harmless-base --column chosen -o out/hh --limit 100
    """
    from cai_engine.api.revise import revise as api_revise
    from cai_engine.cli.progress import RunProgress
    from cai_engine.cli.summary import report_summary

    result = api_revise(
        prompts, constitution=constitution, model=model, model_config=model_config, out=out, rounds=rounds,
        principles_per_round=principles_per_round, few_shot=few_shot, column=column, limit=limit,
        concurrency=concurrency, max_tokens=max_tokens, temperature=temperature, seed=seed,
        retry_failed=retry_failed, no_cache=no_cache, max_cost=max_cost, batch=batch, shard=shard, grace=grace,
        new_settings=new_settings, format=format, split=split, streaming=streaming, skip_bad_rows=skip_bad_rows,
        progress=RunProgress, with_dataset=False, ray=opt.ray_choice(ray, ray_address, ray_workers),
    )
    report_bad_rows(getattr(result, "bad_rows", 0))
    report_summary(result.summary, out / "revisions.jsonl", max_failure_rate,
                   next_step=f"cai export sft {out} --out {out / 'sft'}")


def report_bad_rows(count: int) -> None:
    """The summary line of ``--skip-bad-rows`` (each skipped row was a warning line already)."""
    if count:
        from cai_engine.cli.progress import console

        console.print(f"[yellow]skipped {count} bad input row{'s' * (count != 1)}[/yellow] (--skip-bad-rows; see the warnings above)")


def register(app: typer.Typer) -> None:
    app.command("revise")(revise)
