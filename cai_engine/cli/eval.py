"""``cai eval``: the trained model against its base - win rate, harmfulness, over-refusal, sycophancy, length."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from cai_engine.cli import options as opt

SetFile = Optional[Path]


def eval_command(
    model: Annotated[str, typer.Option("--model", "-m", help="Trained model spec, e.g. local/runs/demo/dpo/model.")],
    base_model: Annotated[str, typer.Option("--base-model", "-b", help="The base it was trained from, e.g. local/smollm2.")],
    out: opt.OutDir,
    judge_model: Annotated[str, typer.Option("--judge-model", "-j", help="Judge for win rate and harm classification.")] = "local/smollm2",
    constitution: opt.ConstitutionOpt = "general",
    model_config: Annotated[Optional[Path], typer.Option("--model-config", help="YAML of ModelConfig fields for the trained model.")] = None,
    base_config: Annotated[Optional[Path], typer.Option("--base-config", help="YAML of ModelConfig fields for the base model.")] = None,
    judge_config: Annotated[Optional[Path], typer.Option("--judge-config", help="YAML of ModelConfig fields for the judge.")] = None,
    heldout: Annotated[SetFile, typer.Option("--heldout", help="Held-out prompts JSONL (prompt); default: shipped set.")] = None,
    redteam: Annotated[SetFile, typer.Option("--redteam", help="Red-team prompts JSONL (prompt, category); default: shipped set.")] = None,
    benign: Annotated[SetFile, typer.Option("--benign", help="Benign-but-risky prompts JSONL (prompt, category); default: shipped.")] = None,
    sycophancy: Annotated[SetFile, typer.Option("--sycophancy", help="Probes JSONL (prompt, answer, pushback, aliases?); default: shipped.")] = None,
    metrics: Annotated[str, typer.Option("--metrics", help="Comma-separated subset of winrate,safety,sycophancy,text.")] = "winrate,safety,sycophancy,text",
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Only the first N prompts of each set.")] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, help="Max tokens per answer (both models).")] = 256,
    temperature: Annotated[float, typer.Option("--temperature", min=0, max=2, help="Sampling temperature of both models (0 = greedy).")] = 0.0,
    seed: opt.SeedOpt = 0,
    system_prompt: Annotated[bool, typer.Option("--system-prompt", help="Give both models the constitution's system prompt.")] = False,
    principles_per_judgment: Annotated[Optional[int], typer.Option("--principles-per-judgment", "-k", min=1, help="Principles per win-rate pair.")] = None,
    cot: Annotated[bool, typer.Option("--cot", help="Win-rate judge reasons before its verdict.")] = False,
    no_logprobs: Annotated[bool, typer.Option("--no-logprobs", help="Never ask the judge for logprobs; parse its replies.")] = False,
    judge_refusals: Annotated[bool, typer.Option("--judge-refusals", help="Also let the judge classify refusals.")] = False,
    concurrency: opt.ConcurrencyOpt = None,
    retry_failed: opt.RetryFailedOpt = False,
    no_cache: opt.NoCacheOpt = False,
    max_cost: opt.MaxCostOpt = None,
) -> None:
    """Compare a trained model with its base: win rate under the judge (both orders, bootstrap 95% CI),
    harmful-answer and refusal rates on red-team prompts, over-refusal on benign prompts that sound
    risky, sycophancy flips under pushback, answer length and distinct-n.

    Writes OUT/eval.json plus the raw records (generations.jsonl, winrate_pairs.jsonl,
    classifications.jsonl); rerunning the same command resumes.

    Example:

        cai eval --model local/runs/demo/dpo/model --base-model local/smollm2 --judge-model local/smollm2 -c general -o runs/demo/eval --limit 4
    """
    import time

    from pydantic import ValidationError

    from cai_engine.cli.progress import RunProgress, console
    from cai_engine.errors import ConfigError
    from cai_engine.evaluation.config import METRICS, EvalConfig
    from cai_engine.api.evaluate import evaluate
    from cai_engine.manifest import write_manifest

    chosen = [m.strip() for m in metrics.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in METRICS]
    if unknown or not chosen:
        raise ConfigError(f"--metrics {metrics!r}: use a comma-separated subset of {','.join(METRICS)}")
    try:
        config = EvalConfig(
            model=model, base_model=base_model, judge_model=judge_model, constitution=constitution,
            model_config_file=model_config, base_model_config_file=base_config, judge_config_file=judge_config,
            heldout=heldout, redteam=redteam, benign_risky=benign, sycophancy=sycophancy, metrics=chosen, limit=limit,
            max_tokens=max_tokens, temperature=temperature, seed=seed, system_prompt=system_prompt,
            principles_per_judgment=principles_per_judgment, cot=cot, logprobs=not no_logprobs, judge_refusals=judge_refusals,
            concurrency=concurrency, use_cache=not no_cache, max_cost_usd=max_cost, retry_failed=retry_failed,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None
    started = time.perf_counter()
    report = evaluate(out, config, progress=RunProgress)
    write_manifest(out, "eval", {"config": config.model_dump(mode="json"), "engines": report.engines,
                                 "wall_s": round(time.perf_counter() - started, 2)})
    _print_summary(report)
    console.print(f"[green]wrote[/green] {out / 'eval.json'}")


def _fmt(value: Any, ci: Any = None) -> str:
    if value is None:
        return "-"
    text = f"{value:.3f}" if isinstance(value, float) else str(value)
    return f"{text} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else text


def _print_summary(report: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    from cai_engine.cli.progress import console

    table = Table(title=f"eval: {report.model} vs {report.base_model} (judge {report.judge_model})")
    table.add_column("figure")
    table.add_column("trained")
    table.add_column("base")
    if report.winrate:
        w = report.winrate
        table.add_row("win rate vs base (95% CI)", _fmt(w.win_rate, w.win_rate_ci95), f"W/T/L {w.wins}/{w.ties}/{w.losses}")
        table.add_row("judge consistency", _fmt(w.consistency_rate), f"{w.judged_by_judge} compared, {w.failed} failed")
    if report.safety:
        s = report.safety
        table.add_row("harmful rate, red-team (judge)", _fmt(s.trained.harmful_rate, s.trained.harmful_rate_ci95),
                      _fmt(s.base.harmful_rate, s.base.harmful_rate_ci95))
        table.add_row("refusal rate, red-team (detector)", _fmt(s.trained.refusal_rate_redteam), _fmt(s.base.refusal_rate_redteam))
        table.add_row("over-refusal, benign (detector)", _fmt(s.trained.over_refusal_rate, s.trained.over_refusal_ci95),
                      _fmt(s.base.over_refusal_rate, s.base.over_refusal_ci95))
    if report.sycophancy:
        t, b = report.sycophancy.trained, report.sycophancy.base
        table.add_row("sycophancy flip rate", f"{_fmt(t.flip_rate)} ({t.flips}/{t.first_correct})", f"{_fmt(b.flip_rate)} ({b.flips}/{b.first_correct})")
    if report.text:
        t, b = report.text.trained["all"], report.text.base["all"]
        table.add_row("mean chars / words", f"{t.mean_chars or 0:.0f} / {t.mean_words or 0:.1f}", f"{b.mean_chars or 0:.0f} / {b.mean_words or 0:.1f}")
        table.add_row("distinct-1 / distinct-2", f"{_fmt(t.distinct_1)} / {_fmt(t.distinct_2)}", f"{_fmt(b.distinct_1)} / {_fmt(b.distinct_2)}")
    Console().print(table)  # the result goes to stdout; progress and notes stay on stderr
    for note in report.notes:
        console.print(f"[yellow]note[/yellow] {note}")
    if report.generation_failures:
        console.print(f"[yellow]{report.generation_failures} answers failed[/yellow]; rerun with --retry-failed to redo them")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
