"""What a progress display is, for every layer that streams records: a factory, a sink, a silent one.

Long work (a stage of ``cai run``, an eval phase, a revise or judge call) takes a factory
``(description, total, engines) -> context manager`` whose value has ``record(record)`` and
``skip(n)``. The CLI passes its rich bar; the library's default shows nothing. Nothing below the
CLI picks a display on its own.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Callable, ContextManager, Protocol, Sequence

from cai_engine.engine.engine import Engine


class ProgressSink(Protocol):
    def record(self, record: dict[str, Any]) -> None: ...

    def skip(self, n: int) -> None: ...


#: ``(description, total, engines) -> context manager`` yielding a :class:`ProgressSink`.
ProgressFactory = Callable[[str, "int | None", Sequence[Engine]], ContextManager[ProgressSink]]


class _Silent:
    def record(self, record: dict[str, Any]) -> None:
        pass

    def skip(self, n: int) -> None:
        pass


def no_progress(description: str, total: int | None, engines: Sequence[Engine]) -> ContextManager[ProgressSink]:
    """Show nothing: the default wherever a caller passes no progress factory."""
    return nullcontext(_Silent())
