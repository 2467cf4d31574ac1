"""``cai revise``: critique->revise SFT data for a prompt file under a constitution."""

from __future__ import annotations

import time
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
) -> None:
    """Answer each prompt, critique the answer against sampled principles, and revise it.

    Records go to OUT/revisions.jsonl as each prompt finishes; rerunning the same command resumes
    (finished prompts are skipped). Export the SFT dataset afterwards with `cai export sft OUT`.

    Example:

        cai revise -c general -p examples/prompts/demo.jsonl -o out/demo --limit 8 --rounds 1
    """
    from cai_engine.cli.progress import RunProgress, console
    from cai_engine.constitution import load_constitution
    from cai_engine.engine.factory import load_model_config
    from cai_engine.engine.session import Session
    from cai_engine.engine.runner import parse_shard
    from cai_engine.errors import ConfigError
    from cai_engine.manifest import write_manifest
    from cai_engine.pipelines.revise import ReviseSettings, run_revise
    from cai_engine.sources import count_prompts, iter_prompts

    loaded = load_constitution(constitution)
    config = load_model_config(model, model_config)
    k = principles_per_round or loaded.sampling.principles_per_round
    if k > len(loaded.principles):
        raise ConfigError(f"--principles-per-round {k} is more than the {len(loaded.principles)} principles of {loaded.name}")
    params = config.defaults.model_copy(
        update={key: value for key, value in {"max_tokens": max_tokens, "temperature": temperature}.items() if value is not None}
    )
    settings = ReviseSettings(
        constitution=loaded,
        params=params,
        rounds=loaded.sampling.rounds if rounds is None else rounds,
        principles_per_round=k,
        few_shot=len(loaded.few_shot) if few_shot is None else min(few_shot, len(loaded.few_shot)),
        seed=seed,
    )
    shard_spec = parse_shard(shard)
    total = None if shard_spec else count_prompts(prompts, column, limit)
    records_path = out / "revisions.jsonl"
    session = Session(out, max_cost_usd=max_cost, use_cache=not no_cache, grace_s=grace)

    async def go(session: Session) -> None:
        engine = session.engine(config, batch_dir=out / "batches" if batch else None)
        started = time.perf_counter()
        try:
            with RunProgress(f"revise {loaded.name}", total, [engine]) as progress:
                summary = await run_revise(
                    iter_prompts(prompts, column, limit),
                    engine=engine,
                    settings=settings,
                    out_path=records_path,
                    concurrency=concurrency or config.max_concurrency,
                    retry_failed=retry_failed,
                    on_record=progress.record,
                    on_skip=progress.skip,
                    shard=shard_spec,
                )
        finally:
            write_manifest(
                out,
                "revise",
                {
                    "constitution": {"name": loaded.name, "hash": loaded.hash, "source": str(loaded.source_path)},
                    "prompts": str(prompts),
                    "model": config.model_dump(mode="json", exclude={"api_key_file"}),
                    "settings": {"rounds": settings.rounds, "principles_per_round": k, "few_shot": settings.few_shot, "seed": seed, "shard": shard},
                    "engine": engine.stats.model_dump(),
                    "budget": session.ledger.snapshot(),
                    "wall_s": round(time.perf_counter() - started, 2),
                },
            )
        console.print(
            f"[green]done[/green] {summary.done} new, {summary.skipped} already done, {summary.failed} failed "
            f"-> {records_path}\nnext: cai export sft {out} --out {out / 'sft'}"
        )
        if summary.failed:
            console.print(f"[yellow]{summary.failed} failed[/yellow] (first: {summary.failures[0]}); rerun with --retry-failed to redo them")

    session.run(go)


def register(app: typer.Typer) -> None:
    app.command("revise")(revise)
