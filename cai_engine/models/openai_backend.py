"""``openai/MODEL``: the official ``openai`` SDK (async), for OpenAI and any OpenAI-compatible server.

``base_urls`` turns it into a client of vLLM serve, TGI, llama.cpp or Ollama; several are
load-balanced by outstanding requests with a circuit breaker per endpoint (:mod:`.endpoints`).
The SDK's own retries are off (``max_retries=0``): the engine's single policy retries, using
:meth:`OpenAIBackend.retry_classifier`, so nothing retries twice and malformed bodies are retried
too. The wire format is in :mod:`.openai_wire`, shared with the Batch API adapter (:mod:`.openai_batch`).
"""

from __future__ import annotations

import time
from typing import Any

from cai_engine.models.base import ChatRequest, ChatResponse, ModelConfig
from cai_engine.models.fingerprint import endpoint_host
from cai_engine.models.hosted import ENDPOINT_FAULTS, HostedBackend, classify_sdk_error
from cai_engine.models.openai_batch import OpenAIBatch
from cai_engine.models.openai_wire import parse_completion, request_body
from cai_engine.models.retryable import RetryDecision

__all__ = ["DEFAULT_ENV", "ENDPOINT_FAULTS", "OpenAIBackend", "classify", "create", "parse_completion", "request_body"]

DEFAULT_ENV = "OPENAI_API_KEY"


def classify(exc: BaseException) -> RetryDecision:
    """Map an ``openai`` SDK exception onto the engine's retry classes."""
    import openai

    return classify_sdk_error(openai, exc)


class OpenAIBackend(HostedBackend):
    """One model behind one or more OpenAI-compatible endpoints."""

    provider = "openai"
    default_env = DEFAULT_ENV
    default_url = "https://api.openai.com/v1"
    keyless_with_base_urls = True

    def make_client(self, api_key: str, base_url: str | None) -> Any:
        import openai

        return openai.AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=self.config.timeout_s)

    def __repr__(self) -> str:
        # Hosts only: a base_url may carry credentials (https://user:pass@host).
        return f"OpenAIBackend({self.spec!r}, endpoints={[endpoint_host(e.url) if e.url else None for e in self.pool.endpoints]})"

    def classify(self, exc: BaseException) -> RetryDecision:
        return classify(exc)

    async def generate(self, request: ChatRequest) -> ChatResponse:
        body = request_body(self.name, request)

        async def send(client: Any) -> ChatResponse:
            started = time.perf_counter()
            completion = await client.chat.completions.create(**body)
            return parse_completion(completion, self.spec, time.perf_counter() - started)

        return await self.call(send)

    def batch_adapter(self) -> OpenAIBatch:
        """The OpenAI Batch API adapter over this backend's first endpoint."""
        return OpenAIBatch(self.pool.endpoints[0].client, self.name, self.spec)


def create(name: str, config: ModelConfig) -> OpenAIBackend:
    return OpenAIBackend(name, config)
