"""``anthropic/MODEL``: the official ``anthropic`` SDK (async).

The request maps onto the Messages API as :mod:`.anthropic_wire` describes (shared with the
Message Batches adapter, :mod:`.anthropic_batch`); ``n > 1`` is ``n`` requests (the API returns
one message). The API has no seed or logprobs: a seed is ignored (documented), logprobs come back
as ``None`` so the judge falls back to parsed verdicts.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from cai_engine.models.anthropic_batch import AnthropicBatch
from cai_engine.models.anthropic_wire import STOP_REASONS, parse_message, request_body
from cai_engine.models.base import ChatRequest, ChatResponse, Choice, ModelConfig, Usage
from cai_engine.models.hosted import HostedBackend, classify_sdk_error
from cai_engine.models.retryable import RetryDecision

__all__ = ["DEFAULT_ENV", "STOP_REASONS", "AnthropicBackend", "classify", "create", "parse_message", "request_body"]

DEFAULT_ENV = "ANTHROPIC_API_KEY"
_SDK_ARGS = frozenset({"model", "max_tokens", "messages", "system", "stop_sequences"})


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

        return anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url, max_retries=0, timeout=self.config.timeout_s)

    def __repr__(self) -> str:
        return f"AnthropicBackend({self.spec!r})"

    def classify(self, exc: BaseException) -> RetryDecision:
        return classify(exc)

    async def _one(self, body: dict[str, Any]) -> tuple[Choice, Usage]:
        async def send(client: Any) -> tuple[Choice, Usage]:
            return parse_message(await client.messages.create(**body))

        return await self.call(send)

    async def generate(self, request: ChatRequest) -> ChatResponse:
        wire = request_body(self.name, request)
        # Recent SDKs dropped temperature/top_p from create()'s signature; the wire API still takes them.
        body = {k: v for k, v in wire.items() if k in _SDK_ARGS}
        extra = {k: v for k, v in wire.items() if k not in _SDK_ARGS}
        if extra:
            body["extra_body"] = extra
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
