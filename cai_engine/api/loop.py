"""Sync and async entry points over one :class:`Session`.

The sync functions (``revise``...) start their own event loop with the graceful stop installed,
which cannot happen inside a running loop (a notebook cell): there they say in one line to use the
async twin (``await arevise(...)``), which runs in the caller's loop without touching its signal
handlers.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, TypeVar

from cai_engine.engine.session import Session
from cai_engine.errors import CaiError

T = TypeVar("T")


def run_sync(name: str, body: Callable[[Session], Awaitable[T]], **session_args: Any) -> T:
    """``body(session)`` to completion in a fresh loop; refused inside a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return Session(**session_args).run(body)
    raise CaiError(f"{name}() was called inside a running event loop (a notebook?); use `await cai_engine.a{name}(...)`")


async def run_async(body: Callable[[Session], Awaitable[T]], **session_args: Any) -> T:
    """``body(session)`` in the caller's loop, the session active for the pipelines below."""
    async with Session(**session_args) as session:
        return await body(session)
