"""What a backend tells the engine about a failure: retry it, how soon, or stop the run.

Backends know their SDK's exceptions; the engine owns the one retry policy. Each hosted backend
hands the engine a ``classify(exc) -> RetryDecision`` through ``ChatModel.retry_classifier()``,
built from :func:`classify_status` and :func:`classify_transport` below, so the rules (retry 408/409/429/5xx, timeouts, connection errors
and malformed bodies; never 400/401/403/404; 401 stops the run) live in one place.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from dataclasses import dataclass
from typing import Literal, Mapping

import pydantic

Kind = Literal["rate_limit", "server", "timeout", "connection", "malformed", "auth", "client", "unknown"]

RETRYABLE_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))


@dataclass(frozen=True)
class RetryDecision:
    """``retryable``: try again (after ``retry_after_s`` if the server said so); ``fatal``: every
    further request will fail the same way (bad key), so stop the run. ``kind`` feeds the
    accounting and the adaptive limiter (``rate_limit`` slows the model down)."""

    retryable: bool
    kind: Kind
    retry_after_s: float | None = None
    fatal: bool = False
    status: int | None = None


class MalformedResponse(ValueError):
    """The server answered 200 with a body we cannot use (bad JSON, missing choices)."""


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``retry-after`` (seconds or an HTTP date)."""
    if not headers:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000.0)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def classify_status(status: int, headers: Mapping[str, str] | None = None) -> RetryDecision:
    """Decision for an HTTP error status."""
    after = parse_retry_after(headers)
    if status == 429:
        return RetryDecision(True, "rate_limit", after, status=status)
    if status in RETRYABLE_STATUS:
        return RetryDecision(True, "server", after, status=status)
    if status == 401:
        return RetryDecision(False, "auth", fatal=True, status=status)
    if status == 403:
        return RetryDecision(False, "auth", status=status)
    return RetryDecision(False, "client", status=status)


def classify_transport(exc: BaseException) -> RetryDecision:
    """Decision for errors that are not HTTP statuses: timeouts, sockets, unusable bodies."""
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return RetryDecision(True, "timeout")
    if isinstance(exc, (ConnectionError, OSError, EOFError)):
        return RetryDecision(True, "connection")
    if isinstance(exc, (json.JSONDecodeError, MalformedResponse, pydantic.ValidationError, UnicodeDecodeError)):
        return RetryDecision(True, "malformed")
    module = type(exc).__module__ or ""
    if module.startswith(("httpx", "httpcore", "h11", "anyio")):
        # Transport-level failure that escaped the SDK's wrapping (e.g. a body cut mid-read).
        return RetryDecision(True, "connection")
    return RetryDecision(False, "unknown")
