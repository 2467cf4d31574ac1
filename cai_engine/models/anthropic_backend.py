"""``anthropic/MODEL``: the official ``anthropic`` SDK (async).

The request maps onto the Messages API as :mod:`.anthropic_wire` describes (shared with the
Message Batches adapter, :mod:`.anthropic_batch`); ``n > 1`` is ``n`` requests (the API returns
one message). The API has no seed or logprobs: a seed is ignored (documented), logprobs come back
as ``None`` so the judge falls back to parsed verdicts.

Requests go through the SDK's raw path, ``client.post("/v1/messages", body=..., cast_to=httpx2.Response)``
(the SDK's client, auth, timeouts and errors without its per-request parameter transform and typed
model); the reply's ``anthropic-ratelimit-*`` headers (requests, input and output tokens) go to the
engine's limiter, its JSON body is parsed into our response. Prefix reuse: the request
gets ``cache_control`` breakpoints on its stable prefix (the end of the conversation so far and the
learned shared boundaries, never the final turn; :mod:`.prompt_cache`) where the estimated prefix
reaches the model's minimum cacheable length; ``prompt_cache: false`` turns them off.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from cai_engine.models.anthropic_batch import AnthropicBatch
from cai_engine.models.anthropic_wire import STOP_REASONS, parse_message, request_body
from cai_engine.models.base import ChatRequest, ChatResponse, Choice, ModelConfig, Usage
from cai_engine.models.hosted import HostedBackend, classify_sdk_error
from cai_engine.models.prompt_cache import anthropic_min_tokens
from cai_engine.models.ratelimits import QuotaReading, anthropic_quota
from cai_engine.models.retryable import RetryDecision

__all__ = ["DEFAULT_ENV", "STOP_REASONS", "AnthropicBackend", "classify", "create", "parse_message", "request_body"]

DEFAULT_ENV = "ANTHROPIC_API_KEY"


def classify(exc: BaseException) -> RetryDecision:
    """Map an ``anthropic`` SDK exception onto the engine's retry classes (529 overloaded is 5xx)."""
    import anthropic

    return classify_sdk_error(anthropic, exc)


class AnthropicBackend(HostedBackend):
    provider = "anthropic"
    default_env = DEFAULT_ENV
    default_url = "https://api.anthropic.com"

    def make_client(self, api_key: str, base_url: str | None) -> Any:
        import anthropic

        import httpx2

        self._http_response = httpx2.Response
        extra: dict[str, Any] = {}
        size = self.pool_size()
        if size is not None:
            extra["http_client"] = anthropic.DefaultAsyncHttpxClient(
                limits=httpx2.Limits(max_connections=max(1000, 4 * size), max_keepalive_connections=size),
                timeout=self.config.timeout_s)
        return anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url, max_retries=0,
                                        timeout=self.config.timeout_s, **extra)

    @staticmethod
    def read_quota(headers: Any) -> QuotaReading | None:
        return anthropic_quota(headers)

    def __init__(self, name: str, config: ModelConfig):
        super().__init__(name, config)
        self._min_tokens = anthropic_min_tokens(name)

    def __repr__(self) -> str:
        return f"AnthropicBackend({self.spec!r})"

    def classify(self, exc: BaseException) -> RetryDecision:
        return classify(exc)

    async def _one(self, body: dict[str, Any]) -> tuple[Choice, Usage]:
        async def send(client: Any) -> tuple[Choice, Usage]:
            reply = await client.post("/v1/messages", body=body, cast_to=self._http_response)
            self.observe(reply.headers)
            return parse_message(json.loads(reply.content))

        return await self.call(send)

    async def generate(self, request: ChatRequest) -> ChatResponse:
        breakpoints: list[int] = []
        if self.planner is not None and request.messages:
            hashes = self.planner.prefix_hashes(request.messages)
            self.planner.conversation_key(request.messages, hashes)  # learns conversations and shared prefixes
            breakpoints = self.planner.breakpoints(request.messages, self._min_tokens, hashes)
        body = request_body(self.name, request, breakpoints)
        started = time.perf_counter()
        parts = await asyncio.gather(*(self._one(body) for _ in range(request.params.n)))
        usage = Usage()
        for _, u in parts:
            usage = usage + u
        return ChatResponse(choices=[c for c, _ in parts], usage=usage, model=self.spec,
                            latency_s=time.perf_counter() - started)

    def batch_adapter(self) -> AnthropicBatch:
        """The Message Batches adapter over this backend's first endpoint."""
        return AnthropicBatch(self.pool.endpoints[0].client, self.name, self.spec)


def create(name: str, config: ModelConfig) -> AnthropicBackend:
    return AnthropicBackend(name, config)
