"""The closing lines of a generation command, and its exit code.

A run whose records all failed, or more than ``--max-failure-rate`` of them, is not a success: it
exits 1, says why, and prints no ``next:`` line (an export would find nothing to export).
"""

from __future__ import annotations

from pathlib import Path

import typer

from cai_engine.cli.progress import console
from cai_engine.engine.runner import RunSummary


def failure_verdict(summary: RunSummary, max_failure_rate: float) -> str | None:
    """Why this run counts as failed, or None."""
    attempted = summary.done + summary.failed
    if not summary.failed or max_failure_rate >= 1.0:  # 1 = a failed record never fails the command
        return None
    if summary.done == 0 and summary.skipped == 0:
        return f"all {summary.failed} records failed"
    rate = summary.failed / attempted
    if rate > max_failure_rate:
        return f"{summary.failed} of {attempted} records failed ({rate:.0%} > --max-failure-rate {max_failure_rate:g})"
    return None


def report_summary(summary: RunSummary, records_path: Path, max_failure_rate: float, *, next_step: str) -> None:
    console.print(f"[green]done[/green] {summary.done} new, {summary.skipped} already done, "
                  f"{summary.failed} failed -> {records_path}")
    if summary.failed:
        console.print(f"[yellow]{summary.failed} failed[/yellow] (first: {summary.failures[0]}); "
                      "rerun with --retry-failed to redo them")
    verdict = failure_verdict(summary, max_failure_rate)
    if verdict is not None:
        console.print(f"[red]error[/red]: {verdict}; fix the cause above and rerun with --retry-failed")
        raise typer.Exit(1)
    console.print(f"next: {next_step}")
