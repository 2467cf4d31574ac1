"""The rich progress bar of the CLI and the API (the protocol and the silent default live in
:mod:`cai_engine.engine.progress`): done/total, tokens/s, failures, cost, ETA."""

from __future__ import annotations

import time
from typing import Any, Sequence, Union

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from cai_engine.engine.engine import Engine
from cai_engine.engine.progress import ProgressFactory, ProgressSink, no_progress
from cai_engine.logs import stderr_console

console = stderr_console()

__all__ = ["ProgressFactory", "ProgressOption", "ProgressSink", "RunProgress", "console", "no_progress", "resolve_progress"]

#: ``True``: the rich progress bar on stderr; ``False``/``None``: silent; or a factory of your own.
ProgressOption = Union[ProgressFactory, bool, None]


def resolve_progress(progress: Any) -> ProgressFactory:
    if progress is True:
        return RunProgress
    if progress is False or progress is None:
        return no_progress
    return progress


class RunProgress:
    """Progress bar fed by record callbacks; reads live token/cost counters from the engines."""

    def __init__(self, description: str, total: int | None, engines: Sequence[Engine]):
        self.engines = list(engines)
        self.failed = 0
        self.done = 0
        self.skipped = 0
        self._started = time.perf_counter()
        self._tokens_at_start = sum(e.stats.output_tokens for e in self.engines)
        self._last_refresh = 0.0
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._task = self._progress.add_task(description, total=total, stats="")

    def __enter__(self) -> "RunProgress":
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._refresh()
        self._progress.stop()

    def tokens_per_s(self) -> float:
        elapsed = max(time.perf_counter() - self._started, 1e-6)
        return (sum(e.stats.output_tokens for e in self.engines) - self._tokens_at_start) / elapsed

    def _refresh(self, force: bool = True) -> None:
        """Recompute the stats text (at most every 0.25 s unless forced: a rerun of 1M finished
        prompts calls :meth:`skip` a million times)."""
        now = time.perf_counter()
        if not force and now - self._last_refresh < 0.25:
            return
        self._last_refresh = now
        cost = sum(e.stats.cost_usd for e in self.engines)
        stats = f"{self.tokens_per_s():.1f} tok/s  {self.failed} failed"
        if self.skipped:
            stats += f"  {self.skipped} resumed"
        if cost:
            stats += f"  ${cost:.4f}"
        ledgers = {id(e.ledger): e.ledger for e in self.engines}
        earlier = sum(ledger.spent_before for ledger in ledgers.values())
        if earlier:
            stats += f" (+${earlier:.4f} earlier)"
        quota = " ".join(t for e in self.engines if (t := e.quota_text()))
        if quota:
            stats += f"  {quota}"
        self._progress.update(self._task, stats=stats)

    def record(self, record: dict[str, Any]) -> None:
        if record.get("status") == "failed":
            self.failed += 1
        else:
            self.done += 1
        self._progress.advance(self._task)
        self._refresh(force=False)

    def skip(self, n: int) -> None:
        self.skipped += n
        self._progress.advance(self._task, n)
        self._refresh(force=False)
