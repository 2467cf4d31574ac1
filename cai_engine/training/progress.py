"""The trainer's progress as our own line: step, loss, reward margin or accuracy, step/s, ETA.

TRL/transformers print a dict per logging step (``PrinterCallback``) or a tqdm bar
(``ProgressCallback``); both are replaced by :class:`StepProgress`, a rich bar on stderr whose
fields are the figures people watch. Every logged value still goes to ``metrics.jsonl``.
"""

from __future__ import annotations

from typing import Any

#: The figures shown, in order, when the trainer logs them (first match per slot).
_SHOWN = (("loss", ("loss",)), ("margin", ("rewards/margins", "margin")),
          ("acc", ("rewards/accuracies", "accuracy", "eval_accuracy")), ("reward", ("reward", "rewards/mean", "objective/scores")),
          ("kl", ("kl", "objective/kl")))


def step_text(logs: dict[str, Any]) -> str:
    parts = []
    for label, keys in _SHOWN:
        for key in keys:
            value = logs.get(key)
            if isinstance(value, (int, float)):
                parts.append(f"{label} {value:.4g}")
                break
    return "  ".join(parts)


def make_step_progress(stage: str) -> Any:
    from cai_engine.logs import stderr_console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from transformers import TrainerCallback

    class StepProgress(TrainerCallback):
        """A rich progress bar over optimizer steps with the last logged figures."""

        def __init__(self) -> None:
            self._progress: Progress | None = None
            self._task: Any = None
            self._fields = ""

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if not state.is_world_process_zero:
                return
            self._progress = Progress(
                TextColumn(f"[bold]train {stage}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[stats]}"),
                TimeElapsedColumn(), TextColumn("ETA"),
                TimeRemainingColumn(), console=stderr_console(), transient=False,
            )
            self._task = self._progress.add_task(stage, total=state.max_steps or None, stats="", completed=state.global_step)
            self._progress.start()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self._progress is not None:
                self._progress.update(self._task, completed=state.global_step)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
            if self._progress is not None and logs:
                text = step_text(logs)
                if text:
                    task = self._progress.tasks[0]
                    speed = f"  {task.speed:.2f} step/s" if task.speed else ""
                    self._progress.update(self._task, stats=text + speed)

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self._progress is not None:
                self._progress.update(self._task, completed=state.global_step)
                self._progress.stop()
                self._progress = None

    return StepProgress()


def use_our_progress(trainer: Any, stage: str) -> None:
    """Swap the trainer's printer / tqdm callbacks for :class:`StepProgress`."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(make_step_progress(stage))
