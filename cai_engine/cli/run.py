"""``cai run``, ``cai status``, ``cai report``, ``cai merge``: end-to-end runs and shard joins."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def run_command(
    config: Annotated[Path, typer.Argument(help="Run config YAML, e.g. runs/demo.yaml.")],
    from_stage: Annotated[Optional[str], typer.Option("--from", help="Rerun from this stage on, even if done.")] = None,
) -> None:
    """Run every stage of a run config: revise -> sft -> pairs -> dpo | (reward -> ppo | grpo) -> eval.

    Outputs go to runs/NAME/ (run.yaml, state.json, manifest.json, one folder per stage, report.md).
    Stages already done for the same inputs are skipped; an interrupted stage resumes.

    Example:

        cai run runs/demo.yaml
        cai run runs/demo.yaml --from dpo
    """
    from cai_engine.cli.progress import RunProgress, console
    from cai_engine.runs.orchestrator import run

    run_dir = run(config, from_stage=from_stage, echo=console.print, progress=RunProgress)
    console.print(f"[green]run complete[/green]: {run_dir} (report: {run_dir / 'report.md'})")


def status_command(run_dir: Annotated[Path, typer.Argument(help="A run dir, e.g. runs/demo.")]) -> None:
    """Show where a run stands: each stage's status and wall time.

    Example:

        cai status runs/demo
    """
    from rich.console import Console
    from rich.table import Table

    from cai_engine.runs.orchestrator import status

    table = Table("stage", "status", "detail", title=str(run_dir))
    for stage, state, detail in status(run_dir):
        colour = {"done": "green", "running": "yellow", "failed": "red"}.get(state, "dim")
        table.add_row(stage, f"[{colour}]{state}[/{colour}]", detail)
    Console().print(table)  # the answer goes to stdout (progress and notes use stderr)


def report_command(run_dir: Annotated[Path, typer.Argument(help="A run dir, e.g. runs/demo.")]) -> None:
    """Regenerate runs/NAME/report.md and its plots from the stage outputs (no model calls).

    Example:

        cai report runs/demo
    """
    from cai_engine.cli.progress import console
    from cai_engine.errors import CaiError
    from cai_engine.runs.report import write_report

    if not (run_dir / "state.json").exists():
        raise CaiError(f"{run_dir} has no state.json; pass a run dir created by `cai run`")
    console.print(f"report: {write_report(run_dir)}")


def merge_command(
    shards: Annotated[list[Path], typer.Argument(help="Shard output dirs or record files (revisions.jsonl / pairs.jsonl).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Merged output dir.")],
) -> None:
    """Join shard outputs into one record file: one record per id, none duplicated.

    Example:

        cai revise -c general -p prompts.jsonl -o out/s0 --shard 0/2   # machine 1
        cai revise -c general -p prompts.jsonl -o out/s1 --shard 1/2   # machine 2
        cai merge out/s0 out/s1 --out out/all
    """
    from cai_engine.cli.progress import console
    from cai_engine.runs.merge import merge_shards

    path, counts = merge_shards(shards, out)
    console.print(f"[green]merged[/green] {counts['records']} records ({counts['duplicates']} duplicate ids dropped) -> {path}")


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
    app.command("status")(status_command)
    app.command("report")(report_command)
    app.command("merge")(merge_command)
