"""Graceful stop on Ctrl-C and SIGTERM: paid requests in flight are finished and saved.

Why: Slurm and Kubernetes send SIGTERM some seconds before they kill a job, and a Ctrl-C in the
middle of a hosted run used to throw away every request in flight (already paid for). First
signal: the runner takes no new item, the requests in flight get ``grace_s`` to finish and be
written, then the command exits 130 (SIGINT) or 143 (SIGTERM) and prints how to resume. A second
Ctrl-C cancels what is left at once; finished records are on disk either way.
"""

from __future__ import annotations

import asyncio
import shlex
import signal
import sys
from typing import Callable

from cai_engine.errors import CaiError


class Stopped(CaiError):
    """The command was stopped by a signal; what finished is saved. ``exit_code`` = 128 + signal."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


def resume_command() -> str:
    """The command line that resumes this command (the same command: finished items are skipped)."""
    return "cai " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "the same command"


class GracefulStop:
    """Signal state of one command; the runner polls :attr:`requested` before each new item."""

    def __init__(self, grace_s: float = 30.0, notify: Callable[[str], None] | None = None):
        self.grace_s = grace_s
        self.signum: int | None = None
        self.hard = False
        self._notify = notify or (lambda text: sys.stderr.write(text + "\n"))
        self._task: asyncio.Task[object] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._installed: list[int] = []

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def install(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[object]) -> None:
        """Handle SIGINT/SIGTERM on ``loop`` for the command running as ``task``."""
        self._loop, self._task = loop, task
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, self._on_signal, signum)
                self._installed.append(signum)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
                pass

    def uninstall(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._loop is not None:
            for signum in self._installed:
                try:
                    self._loop.remove_signal_handler(signum)
                except (RuntimeError, ValueError):
                    pass
        self._installed.clear()

    def request(self, signum: int = signal.SIGINT) -> None:
        """Ask for a graceful stop (what the first signal does); callable from tests and the API."""
        self._on_signal(signum)

    def _on_signal(self, signum: int) -> None:
        if self.signum is None:
            self.signum = signum
            name = signal.Signals(signum).name
            self._notify(
                f"\n{name}: finishing the requests in flight (up to {self.grace_s:g} s) and saving them; "
                + ("press Ctrl-C again to stop now" if signum == signal.SIGINT else "send SIGINT to stop now")
            )
            if self._loop is not None:
                self._timer = self._loop.call_later(self.grace_s, self._cancel)
            return
        if signum == signal.SIGINT:
            self._notify("second Ctrl-C: stopping now (finished records are saved)")
            self._cancel()

    def _cancel(self) -> None:
        self.hard = True
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def stopped_error(self, saved: int) -> Stopped:
        assert self.signum is not None
        name = signal.Signals(self.signum).name
        how = "in-flight requests were cut off" if self.hard else "the requests in flight finished"
        return Stopped(
            self.signum,
            f"stopped by {name}: {saved} records saved by this run ({how}); resume with: {resume_command()}",
        )
