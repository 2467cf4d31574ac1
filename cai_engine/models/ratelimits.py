"""The providers' rate-limit headers, read on every reply (successes and 429s alike).

OpenAI sends ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` (reset as a Go duration:
``1s``, ``6m0s``, ``20ms``); Anthropic sends ``anthropic-ratelimit-{requests,tokens,input-tokens,
output-tokens}-{limit,remaining,reset}`` (reset as an RFC 3339 time) and ``retry-after`` on 429.
Limits are per minute. A backend turns the headers into a :class:`QuotaReading` and hands it to
the engine's limiter (:mod:`cai_engine.engine.limits`), which paces below the limits it finds.
Compatible servers (vLLM, llama.cpp ...) send none: then there is no reading.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Mapping

from cai_engine.models.retryable import parse_retry_after

#: The most requests in flight a hosted model with no ``max_concurrency`` may climb to (the runner
#: keeps this many items open for it); ``--concurrency`` raises it.
ADAPTIVE_CEILING = 512

#: Bucket names: what one request consumes from each is estimated by the limiter.
BUCKETS = ("requests", "tokens", "input_tokens", "output_tokens")

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


@dataclass(frozen=True)
class Bucket:
    """One per-minute limit as the provider reported it on one reply."""

    limit: int
    remaining: int | None = None
    reset_s: float | None = None  # seconds until the bucket is full again


@dataclass(frozen=True)
class QuotaReading:
    buckets: dict[str, Bucket]
    retry_after_s: float | None = None


def parse_duration(text: str | None) -> float | None:
    """Seconds in a Go-style duration (``1s``, ``6m0s``, ``1h2m3.5s``, ``20ms``); None if unreadable."""
    if not text:
        return None
    text = text.strip()
    try:
        return max(0.0, float(text))  # plain seconds
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


def parse_reset_time(text: str | None, now: float | None = None) -> float | None:
    """Seconds from now until an RFC 3339 time (Anthropic's ``*-reset``); None if unreadable."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return parse_duration(text)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _int(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def _reading(headers: Mapping[str, str], names: dict[str, str], template: str, reset: Any) -> QuotaReading | None:
    buckets: dict[str, Bucket] = {}
    for bucket, header in names.items():
        limit = _int(headers.get(template.format(field="limit", name=header)))
        if not limit or limit <= 0:
            continue
        buckets[bucket] = Bucket(
            limit=limit,
            remaining=_int(headers.get(template.format(field="remaining", name=header))),
            reset_s=reset(headers.get(template.format(field="reset", name=header))),
        )
    if not buckets:
        return None
    return QuotaReading(buckets, parse_retry_after(headers))


def openai_quota(headers: Mapping[str, str] | None) -> QuotaReading | None:
    """The quota in OpenAI's ``x-ratelimit-*`` headers (None when the server sends none)."""
    if not headers or (headers.get("x-ratelimit-limit-requests") is None
                       and headers.get("x-ratelimit-limit-tokens") is None):
        return None
    return _reading(headers, {"requests": "requests", "tokens": "tokens"}, "x-ratelimit-{field}-{name}", parse_duration)


def anthropic_quota(headers: Mapping[str, str] | None) -> QuotaReading | None:
    """The quota in Anthropic's ``anthropic-ratelimit-*`` headers (input and output token limits apart)."""
    if not headers or headers.get("anthropic-ratelimit-requests-limit") is None and (
            headers.get("anthropic-ratelimit-input-tokens-limit") is None
            and headers.get("anthropic-ratelimit-tokens-limit") is None):
        return None
    return _reading(headers, {"requests": "requests", "tokens": "tokens", "input_tokens": "input-tokens",
                              "output_tokens": "output-tokens"},
                    "anthropic-ratelimit-{name}-{field}", parse_reset_time)
