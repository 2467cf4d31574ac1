"""``openai/MODEL``: the official ``openai`` SDK (async), for OpenAI and any OpenAI-compatible server.

``base_urls`` turns it into a client of vLLM serve, TGI, llama.cpp or Ollama; several are
load-balanced by outstanding requests with a circuit breaker per endpoint (:mod:`.endpoints`).
The SDK's own retries are off (``max_retries=0``): the engine's single policy retries, using
:meth:`OpenAIBackend.retry_classifier`, so nothing retries twice and malformed bodies are retried
too. The wire format is in :mod:`.openai_wire`, shared with the Batch API adapter (:mod:`.openai_batch`).

Requests go through the SDK's documented raw path, ``client.post("/chat/completions", body=...,
cast_to=httpx2.Response)``: the SDK's client, auth, timeouts and error classes, without its
per-request transform of the typed parameters and its typed response model (~1 ms of CPU a
request, a third of the client's cost at hundreds of requests/s). The reply's ``x-ratelimit-*``
headers go to the engine's limiter; its JSON body is parsed straight into our response.

Prefix reuse: OpenAI caches prompts of 1,024+ tokens by itself and routes by
``prompt_cache_key``; the backend sends one key per conversation (:mod:`.prompt_cache`), only to
OpenAI's own API unless ``prompt_cache: true`` (compatible servers cache prefixes themselves).
"""

from __future__ import annotations

import json
import time
from typing import Any

from cai_engine.models.base import ChatRequest, ChatResponse, ModelConfig
from cai_engine.models.fingerprint import endpoint_host
from cai_engine.models.hosted import ENDPOINT_FAULTS, HostedBackend, classify_sdk_error
from cai_engine.models.openai_batch import OpenAIBatch
from cai_engine.models.openai_wire import parse_completion, request_body
from cai_engine.models.ratelimits import QuotaReading, openai_quota
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
    prompt_cache_with_base_urls = False

    def make_client(self, api_key: str, base_url: str | None) -> Any:
        import openai

        import httpx2

        self._http_response = httpx2.Response
        extra: dict[str, Any] = {}
        size = self.pool_size()
        if size is not None:
            extra["http_client"] = openai.DefaultAsyncHttpxClient(
                limits=httpx2.Limits(max_connections=max(1000, 4 * size), max_keepalive_connections=size),
                timeout=self.config.timeout_s)
        return openai.AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=self.config.timeout_s,
                                  **extra)

    @staticmethod
    def read_quota(headers: Any) -> QuotaReading | None:
        return openai_quota(headers)

    def __repr__(self) -> str:
        # Hosts only: a base_url may carry credentials (https://user:pass@host).
        return f"OpenAIBackend({self.spec!r}, endpoints={[endpoint_host(e.url) if e.url else None for e in self.pool.endpoints]})"

    def classify(self, exc: BaseException) -> RetryDecision:
        return classify(exc)

    async def generate(self, request: ChatRequest) -> ChatResponse:
        key = self.planner.conversation_key(request.messages) if self.planner is not None and request.messages else None
        body = request_body(self.name, request, cache_key=key)

        async def send(client: Any) -> ChatResponse:
            started = time.perf_counter()
            reply = await client.post("/chat/completions", body=body, cast_to=self._http_response)
            self.observe(reply.headers)
            return parse_completion(json.loads(reply.content), self.spec, time.perf_counter() - started)

        return await self.call(send)

    def batch_adapter(self) -> OpenAIBatch:
        """The OpenAI Batch API adapter over this backend's first endpoint."""
        return OpenAIBatch(self.pool.endpoints[0].client, self.name, self.spec)


def create(name: str, config: ModelConfig) -> OpenAIBackend:
    return OpenAIBackend(name, config)
