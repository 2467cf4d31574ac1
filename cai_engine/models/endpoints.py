"""Several base_urls for one model: pick the least-loaded healthy one; rest a failing one a while.

Load balancing is by outstanding requests (not round robin), so a slow replica gets less work.
A circuit breaker per endpoint opens after ``failures_to_open`` consecutive transport/5xx
failures and keeps the endpoint out for ``cooldown_s``; then one request probes it (half open)
and a success closes it again; a trial that ends with no outcome (cancelled, e.g. by the engine's
guard timeout or a stop) counts as a failure, so the endpoint rests again and is tried later instead
of staying "probing" for good. If every endpoint is open, the one that opened first is used, so
the pool never deadlocks; the engine's retries and the breaker together route around the fault.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Generic, Iterator, TypeVar

C = TypeVar("C")


@dataclass
class Endpoint(Generic[C]):
    url: str
    client: C
    outstanding: int = 0
    consecutive_failures: int = 0
    open_until: float = 0.0
    probing: bool = False
    served: int = 0
    failed: int = 0
    opened: int = field(default=0)

    def available(self, now: float) -> bool:
        return now >= self.open_until and not (self.consecutive_failures and self.probing)


class EndpointPool(Generic[C]):
    """Endpoint choice + breaker state. Single event loop; no locks needed."""

    def __init__(self, endpoints: list[Endpoint[C]], failures_to_open: int = 3, cooldown_s: float = 30.0):
        if not endpoints:
            raise ValueError("an endpoint pool needs at least one endpoint")
        self.endpoints = endpoints
        self.failures_to_open = failures_to_open
        self.cooldown_s = cooldown_s

    def pick(self) -> Endpoint[C]:
        now = time.monotonic()
        healthy = [e for e in self.endpoints if e.available(now)]
        if not healthy:
            return min(self.endpoints, key=lambda e: e.open_until)
        return min(healthy, key=lambda e: e.outstanding)

    @contextmanager
    def use(self) -> Iterator[Endpoint[C]]:
        """Hold an endpoint for one request; the caller reports the outcome via :meth:`record`."""
        ep = self.pick()
        trial = ep.consecutive_failures >= self.failures_to_open
        if trial:
            ep.probing = True  # half open: this request decides
        ep.outstanding += 1
        try:
            yield ep
        finally:
            ep.outstanding -= 1
            if trial and ep.probing:
                # The trial ended without record(): cancelled mid-request. It did not answer in time.
                self.record(ep, ok=False)

    def record(self, ep: Endpoint[C], ok: bool) -> None:
        """Outcome of one request on ``ep``. Only endpoint faults (transport, 5xx) count as failures."""
        ep.probing = False
        if ok:
            ep.served += 1
            ep.consecutive_failures = 0
            ep.open_until = 0.0
            return
        ep.failed += 1
        ep.consecutive_failures += 1
        if ep.consecutive_failures >= self.failures_to_open:
            ep.open_until = time.monotonic() + self.cooldown_s
            ep.opened += 1

    def snapshot(self) -> list[dict[str, object]]:
        now = time.monotonic()
        return [
            {"url": e.url, "served": e.served, "failed": e.failed, "open": now < e.open_until, "opened": e.opened}
            for e in self.endpoints
        ]
