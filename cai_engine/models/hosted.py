"""What the hosted backends (``openai/``, ``anthropic/``) share: key resolution, the endpoint pool
with its circuit breaker, the SDK error mapping, reading SDK objects or plain dicts, usage, the
fingerprint (model + endpoint hosts), the rate-limit headers of every reply (handed to whoever
:meth:`HostedBackend.watch_quota` hooks up: the engine's limiter) and the prompt-cache planner.

A provider module subclasses :class:`HostedBackend` with its SDK client and its ``classify``;
its wire format (request bodies, response parsing) lives in its ``*_wire`` module, which the
backend and the Batch API adapter both import, so neither imports the other's twin.
"""

from __future__ import annotations

from abc import abstractmethod
from types import ModuleType
from typing import Any, Awaitable, Callable, ClassVar, TypeVar

from cai_engine.models.base import BaseChatModel, ModelConfig, Usage
from cai_engine.models.endpoints import Endpoint, EndpointPool
from cai_engine.models.fingerprint import endpoint_fingerprint
from cai_engine.models.keys import resolve_key
from cai_engine.models.prompt_cache import PrefixPlanner
from cai_engine.models.ratelimits import ADAPTIVE_CEILING, QuotaReading
from cai_engine.models.retryable import RetryDecision, classify_status, classify_transport

T = TypeVar("T")
QuotaListener = Callable[[QuotaReading], None]
#: Above this many requests in flight the SDK's default pool (100 keep-alive connections) would
#: close and reopen connections on every request; the client gets a pool as large as the cap.
SDK_KEEPALIVE = 100

#: Failures that say something about the endpoint (not about the quota or the request).
ENDPOINT_FAULTS = frozenset({"server", "timeout", "connection", "malformed"})


def get_field(obj: Any, name: str) -> Any:
    """``obj[name]`` of a dict (batch result files) or ``obj.name`` of an SDK object; None if absent."""
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def token_count(usage: Any, *fields: str) -> int:
    """Sum of the named usage fields (missing or null count 0; no usage at all is 0)."""
    if not usage:
        return 0
    return sum(int(get_field(usage, f) or 0) for f in fields)


def usage_from(usage: Any, input_fields: tuple[str, ...], output_fields: tuple[str, ...], *,
               cached: int = 0, written: int = 0) -> Usage:
    return Usage(input_tokens=token_count(usage, *input_fields), output_tokens=token_count(usage, *output_fields),
                 cached_input_tokens=cached, cache_write_input_tokens=written)


def classify_sdk_error(sdk: ModuleType, exc: BaseException) -> RetryDecision:
    """Map an exception of a Stainless-generated SDK (``openai``, ``anthropic``) onto the retry classes."""
    if isinstance(exc, sdk.APIStatusError):
        return classify_status(exc.status_code, exc.response.headers)
    if isinstance(exc, sdk.APITimeoutError):
        return RetryDecision(True, "timeout")
    if isinstance(exc, sdk.APIConnectionError):
        return RetryDecision(True, "connection")
    if isinstance(exc, sdk.APIResponseValidationError):
        return RetryDecision(True, "malformed")
    return classify_transport(exc)


class HostedBackend(BaseChatModel):
    """One model behind one or more endpoints of a hosted API; the SDK's own retries are off."""

    provider: ClassVar[str]
    #: The key's environment variable when the config names none.
    default_env: ClassVar[str]
    #: The endpoint used when the config gives no ``base_urls``.
    default_url: ClassVar[str]
    #: Self-hosted servers need no key: allowed when ``base_urls`` are given and no key is configured.
    keyless_with_base_urls: ClassVar[bool] = False
    #: Prompt caching is on by default for self-hosted ``base_urls`` too (``ModelConfig.prompt_cache``).
    prompt_cache_with_base_urls: ClassVar[bool] = True

    def __init__(self, name: str, config: ModelConfig):
        self.spec = f"{self.provider}/{name}"
        self.name = name
        self.config = config
        self._quota_listeners: list[QuotaListener] = []
        self._quota_misses = 0
        enabled = config.prompt_cache
        if enabled is None:
            enabled = self.prompt_cache_with_base_urls or not config.base_urls
        self.planner: PrefixPlanner | None = PrefixPlanner() if enabled else None
        key = resolve_key(config, self.default_env,
                          allow_missing=self.keyless_with_base_urls and bool(config.base_urls))
        urls: list[str | None] = list(config.base_urls) or [None]
        self.pool: EndpointPool[Any] = EndpointPool([
            Endpoint(url=u or self.default_url, client=self.make_client(key.reveal(), u)) for u in urls
        ])
        self._fingerprint = endpoint_fingerprint(self.spec, [self._served_url(ep) for ep in self.pool.endpoints])

    @abstractmethod
    def make_client(self, api_key: str, base_url: str | None) -> Any:
        """The SDK's async client for one endpoint (``base_url`` None: the SDK's default)."""

    @abstractmethod
    def classify(self, exc: BaseException) -> RetryDecision:
        """Map this SDK's exception onto the engine's retry classes."""

    @staticmethod
    @abstractmethod
    def read_quota(headers: Any) -> QuotaReading | None:
        """This provider's rate-limit headers as a reading (None when there are none)."""

    def pool_size(self) -> int | None:
        """Connections the SDK client should keep: None for the SDK's default (up to 100 in flight)."""
        explicit = "max_concurrency" in self.config.model_fields_set
        if explicit and self.config.max_concurrency <= SDK_KEEPALIVE:
            return None
        return max(self.config.max_concurrency, 0 if explicit else ADAPTIVE_CEILING)

    def watch_quota(self, listener: QuotaListener) -> None:
        """Call ``listener`` with the quota of every reply that carries rate-limit headers."""
        self._quota_listeners.append(listener)

    def observe(self, headers: Any) -> None:
        """Read one reply's rate-limit headers. A server that has sent none for a while (a
        compatible server) is only checked on every 64th reply."""
        if not self._quota_listeners or headers is None:
            return
        if self._quota_misses >= 64:
            self._quota_misses += 1
            if self._quota_misses % 64:
                return
        reading = self.read_quota(headers)
        if reading is None:
            self._quota_misses += 1
            return
        self._quota_misses = 0
        for listener in self._quota_listeners:
            listener(reading)

    @staticmethod
    def _served_url(ep: Endpoint[Any]) -> str:
        # The client's own base_url also reflects the SDK's environment overrides (OPENAI_BASE_URL).
        url = getattr(ep.client, "base_url", None)
        return str(url) if url else ep.url

    def fingerprint(self) -> str:
        return self._fingerprint

    def retry_classifier(self) -> Callable[[BaseException], RetryDecision]:
        return self.classify

    async def call(self, send: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``send(client)`` on the least-loaded healthy endpoint and feed its breaker the outcome.

        ``send`` should parse the reply too, so a malformed body counts against the endpoint.
        """
        with self.pool.use() as ep:
            try:
                result = await send(ep.client)
            except Exception as exc:
                response = getattr(exc, "response", None)
                if response is not None:
                    self.observe(getattr(response, "headers", None))
                self.pool.record(ep, ok=self.classify(exc).kind not in ENDPOINT_FAULTS)
                raise
            self.pool.record(ep, ok=True)
            return result

    async def aclose(self) -> None:
        for ep in self.pool.endpoints:
            await ep.client.close()
