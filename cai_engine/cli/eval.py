"""``cai eval``: the trained model against its base - win rate, harmfulness, over-refusal, sycophancy, length."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from cai_engine.cli import options as opt
from cai_engine.cli.model_options import options_from_model
from cai_engine.evaluation.config import EvalConfig

#: Options whose spelling is not ``--field-name``: short flags, and the names the command had before
#: its options were derived from ``EvalConfig`` (kept so existing scripts keep working).
OPTION_NAMES: dict[str, tuple[str, ...]] = {
    "model": ("--model", "-m"), "base_model": ("--base-model", "-b"), "judge_model": ("--judge-model", "-j"),
    "constitution": ("--constitution", "-c"), "model_config_file": ("--model-config",),
    "base_model_config_file": ("--base-config",), "judge_config_file": ("--judge-config",),
    "benign_risky": ("--benign",), "principles_per_judgment": ("--principles-per-judgment", "-k"),
    "max_cost_usd": ("--max-cost",), "use_cache": ("--cache/--no-cache",),
}


def eval_command(
    *,
    out: opt.OutDir,
    config_file: Annotated[Optional[Path], typer.Option(
        "--config", help="YAML of EvalConfig fields (the eval section of a run YAML has the same schema); options given here win.")] = None,
    ray: opt.RayOpt = False,
    ray_address: opt.RayAddressOpt = None,
    ray_workers: opt.RayWorkersOpt = None,
    **fields: Any,
) -> None:
    """Compare a trained model with its base: win rate under the judge (both orders, bootstrap 95% CI),
    harmful-answer and refusal rates on red-team prompts, over-refusal on benign prompts that sound
    risky, sycophancy flips under pushback, answer length and distinct-n.

    Writes OUT/eval.json plus the raw records (generations.jsonl, winrate_pairs.jsonl,
    classifications.jsonl); rerunning the same command resumes.

    Every option but --out, --config and --ray* is a field of EvalConfig, as are evaluate()'s keywords.

    Example:

        cai eval --model local/runs/demo/dpo/model --base-model local/smollm2 --judge-model local/smollm2 -c general -o runs/demo/eval --limit 4
    """
    from cai_engine.api.evaluate import evaluate
    from cai_engine.cli.progress import RunProgress, console

    config = eval_config_from_cli(config_file, fields)
    report = evaluate(out, config, progress=RunProgress, ray=opt.ray_choice(ray, ray_address, ray_workers))
    _print_summary(report)
    console.print(f"[green]wrote[/green] {out / 'eval.json'}")


# The derived options: typer reads the signature, so the fields of EvalConfig become options here.
_own = [p for p in inspect.signature(eval_command, eval_str=True).parameters.values()
        if p.kind is not inspect.Parameter.VAR_KEYWORD]
eval_command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    _own + options_from_model(EvalConfig, names=OPTION_NAMES))


def eval_config_from_cli(config_file: Path | None, values: dict[str, Any]) -> EvalConfig:
    """The EvalConfig of ``--config FILE`` plus the options typed; errors in one line naming the
    option (or the file and line) that is wrong."""
    from pydantic import ValidationError

    from cai_engine.cli.model_options import flag_of, given_fields
    from cai_engine.errors import ConfigError
    from cai_engine.evaluation.config import METRICS
    from cai_engine.yamlfile import read_mapping, validation_error

    given = given_fields(EvalConfig, values)
    if "metrics" in given:
        unknown = [m for m in given["metrics"] if m not in METRICS]
        if unknown or not given["metrics"]:
            raise ConfigError(f"--metrics {values['metrics']!r}: use a comma-separated subset of {','.join(METRICS)}")
    doc = read_mapping(config_file, "eval config") if config_file is not None else None
    data = {**(doc.data if doc is not None else {}), **given}
    try:
        return EvalConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        if first["type"] == "missing":
            raise ConfigError(f"{flag_of(field, OPTION_NAMES)} is required"
                              + (f" (or `{field}:` in {config_file})" if config_file else "")) from None
        if field in given or doc is None:
            raise ConfigError(f"{flag_of(field, OPTION_NAMES)}: {first['msg']}") from None
        raise validation_error(exc, doc) from None


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
