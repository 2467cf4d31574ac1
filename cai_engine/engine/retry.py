"""The engine's one retry policy (tenacity), driven by the backend's ``classify(exc)``.

Jittered exponential backoff, except when the server said how long to wait (``Retry-After`` /
``retry-after-ms``): then exactly that, plus a little jitter so waiters do not stampede together.
Non-retryable errors (400/403/404 ...) fail the request at once; a fatal one (401) or several
refusals in a row (403/404: wrong model or permissions) stop the whole run with one line.
Messages passed to the user go through :func:`~cai_engine.models.keys.scrub`.
"""

from __future__ import annotations

import random
from typing import Awaitable, Callable, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_random_exponential

from cai_engine.errors import CaiError, FatalBackendError
from cai_engine.models.keys import scrub
from cai_engine.models.retryable import RetryDecision

T = TypeVar("T")
Classify = Callable[[BaseException], RetryDecision]


class RequestFailed(CaiError):
    """One request failed for good (not retryable, or retries used up). The item becomes a failed record."""

    def __init__(self, message: str, decision: RetryDecision):
        super().__init__(message)
        self.decision = decision


def one_line(exc: BaseException, limit: int = 300) -> str:
    """``Type: message`` on one line, keys scrubbed, bounded length."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return scrub(text)[:limit]


class RetryPolicy:
    """Retries for one model. ``on_retry(decision)`` lets the engine count and slow down."""

    def __init__(
        self,
        spec: str,
        classify: Classify,
        *,
        max_retries: int = 6,
        base_s: float = 1.0,
        max_wait_s: float = 60.0,
        refusals_to_stop: int = 3,
        key_hint: str = "",
        on_retry: Callable[[RetryDecision], None] | None = None,
    ):
        self.spec = spec
        self.classify = classify
        self.max_retries = max_retries
        self.max_wait_s = max_wait_s
        self.refusals_to_stop = refusals_to_stop
        self.key_hint = key_hint
        self.on_retry = on_retry
        self._backoff = wait_random_exponential(multiplier=base_s, max=max_wait_s)
        self._refusals = 0
        self.fatal: FatalBackendError | None = None

    def decide(self, exc: BaseException) -> RetryDecision:
        cached = getattr(exc, "_cai_decision", None)
        if cached is not None:
            return cached
        decision = self.classify(exc)
        try:
            exc._cai_decision = decision  # type: ignore[attr-defined]
        except AttributeError:
            pass
        return decision

    def _retryable(self, exc: BaseException) -> bool:
        return not isinstance(exc, CaiError) and self.decide(exc).retryable

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        decision = self.decide(exc) if exc is not None else None
        if decision is not None and decision.retry_after_s is not None:
            return min(self.max_wait_s, decision.retry_after_s) + random.uniform(0, 0.05)
        return self._backoff(state)

    def _before_sleep(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if exc is not None and self.on_retry is not None:
            self.on_retry(self.decide(exc))

    async def call(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run ``attempt`` until it succeeds, fails for good, or stops the run.

        The first attempt is a plain await (setting up tenacity costs ~50 us of CPU per call,
        5-10% of a request's client-side cost at hundreds of requests/s); only a retryable
        failure hands over to tenacity, whose first "attempt" re-raises that failure so waits
        and attempt numbers are exactly as if tenacity had run from the start.
        """
        if self.fatal is not None:
            raise self.fatal
        try:
            result = await attempt()
        except CaiError:
            raise
        except Exception as exc:
            if not self._retryable(exc) or self.max_retries == 0:
                raise self._give_up(exc, 1) from None
            result = await self._retry_after_failure(attempt, exc)
        self._refusals = 0
        return result

    async def _retry_after_failure(self, attempt: Callable[[], Awaitable[T]], first: BaseException) -> T:
        pending = [first]

        async def run() -> T:  # tenacity awaits only real coroutine functions, not lambdas
            if pending:
                raise pending.pop()
            return await attempt()

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1),
            retry=retry_if_exception(self._retryable),
            wait=self._wait,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        try:
            return await retrying(run)
        except CaiError:
            raise
        except Exception as exc:
            raise self._give_up(exc, retrying.statistics.get("attempt_number", 1)) from None

    def _give_up(self, exc: BaseException, attempts: int) -> CaiError:
        decision = self.decide(exc)
        status = f"HTTP {decision.status}" if decision.status else decision.kind
        if decision.fatal or (decision.kind == "auth" or decision.status == 404) and self._note_refusal():
            what = "authentication failed" if decision.status == 401 else "the provider refuses every request"
            self.fatal = FatalBackendError(
                f"{self.spec}: {what} ({status}): {one_line(exc, 200)}; {self.key_hint or 'check the model name and key'}"
            )
            return self.fatal
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        return RequestFailed(f"{self.spec}: {status}{tries}: {one_line(exc)}", decision)

    def _note_refusal(self) -> bool:
        self._refusals += 1
        return self._refusals >= self.refusals_to_stop
