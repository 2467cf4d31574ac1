"""Where third-party output goes: a log file, not the terminal (``--verbose`` shows it).

Our commands print our progress and results only. Library warnings (``FutureWarning:
past_key_values is deprecated...``), library loggers (transformers, datasets, httpx, ...) and
library progress bars (tqdm bars per tensor conversion, "Generating train split", "Saving the
dataset") go to the command's log: ``OUT/log.txt`` once a command knows its output folder
(:func:`log_to`), ``$CAI_HOME/logs/cai.log`` before that. Set up once at the CLI edge, before
any heavy import, so the libraries read the environment switches when they load.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import warnings
from pathlib import Path
from typing import Any, TextIO

THIRD_PARTY_LOGGERS = ("transformers", "datasets", "huggingface_hub", "torch", "accelerate", "peft", "trl", "httpx",
                       "httpcore", "openai", "anthropic", "urllib3", "filelock", "fsspec", "vllm", "ray", "tensorboard")

# Read by the libraries at import time: progress bars off, warnings-level verbosity.
_QUIET_ENV = {
    "TQDM_DISABLE": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "DATASETS_VERBOSITY": "error",
    "TOKENIZERS_PARALLELISM": "false",
}


class _LogTarget:
    """The current log file (switched when a command learns its output folder)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._path: Path | None = None
        self._fh: TextIO | None = None

    def switch(self, path: Path) -> None:
        with self._lock:
            if self._path == path:
                return
            if self._fh is not None:
                self._fh.close()
            path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = path.open("a", encoding="utf-8")
            self._path = path

    def write(self, text: str) -> None:
        with self._lock:
            if self._fh is None:
                return
            self._fh.write(text if text.endswith("\n") else text + "\n")
            self._fh.flush()

    @property
    def path(self) -> Path | None:
        return self._path


_TARGET = _LogTarget()
_ACTIVE = False


class _TargetHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            _TARGET.write(self.format(record))
        except Exception:  # noqa: BLE001 - logging must never break the command
            pass


def quiet_third_party(default_log: Path) -> None:
    """Route library warnings, loggers and progress bars to the log file (call once, early)."""
    global _ACTIVE
    for key, value in _QUIET_ENV.items():
        os.environ.setdefault(key, value)
    _TARGET.switch(default_log)

    def showwarning(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None,
                    line: str | None = None) -> None:
        _TARGET.write(warnings.formatwarning(message, category, filename, lineno, line))

    warnings.showwarning = showwarning
    handler = _TargetHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    for name in THIRD_PARTY_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = False
    _ACTIVE = True


def log_to(path: Path) -> None:
    """From now on the command's third-party output goes to ``path`` (e.g. ``OUT/log.txt``)."""
    if _ACTIVE:
        _TARGET.switch(path)


def current_log() -> Path | None:
    return _TARGET.path if _ACTIVE else None


def hush_loaded_libraries() -> None:
    """Libraries that install their own stderr handler when imported (transformers) get it removed;
    call after importing them. Harmless when they are not loaded."""
    if not _ACTIVE:
        return
    transformers_logging = sys.modules.get("transformers.utils.logging")
    if transformers_logging is not None:
        transformers_logging.disable_default_handler()
        transformers_logging.disable_progress_bar()
    datasets_logging = sys.modules.get("datasets.utils.logging")
    if datasets_logging is not None:
        datasets_logging.disable_progress_bar()


#: Width of our progress lines when stderr is not a terminal (a pipe, a CI log, ``| tee``): rich would
#: assume 80 columns there and cut the training line (``0:0… ETA 0:00…``).
PIPE_WIDTH = 120


def stderr_console() -> Any:
    """The rich console our progress and notes go to: stderr, as wide as the terminal, or
    ``PIPE_WIDTH`` columns when stderr is not one and ``COLUMNS`` does not say otherwise (both read
    at every print, as rich does, so a later ``COLUMNS`` still counts)."""
    from rich.console import Console, ConsoleDimensions

    class StderrConsole(Console):
        @property
        def size(self) -> ConsoleDimensions:
            dims = Console.size.fget(self)  # type: ignore[attr-defined]
            if self._width is None and not self._environ.get("COLUMNS") and not self.is_terminal:
                return ConsoleDimensions(PIPE_WIDTH, dims.height)
            return dims

        @size.setter
        def size(self, new_size: tuple[int, int]) -> None:
            Console.size.fset(self, new_size)  # type: ignore[attr-defined]

    return StderrConsole(stderr=True)
