"""``openai/MODEL``: the official ``openai`` SDK (async), for OpenAI and any OpenAI-compatible server.

``base_urls`` turns it into a client of vLLM serve, TGI, llama.cpp or Ollama; several are
load-balanced by outstanding requests with a circuit breaker per endpoint (:mod:`.endpoints`).
The SDK's own retries are off (``max_retries=0``): the engine's single policy retries, using
:meth:`OpenAIBackend.classify`, so nothing retries twice and malformed bodies are retried too.
"""

from __future__ import annotations

import time
from typing import Any

from cai_engine.models.base import ChatRequest, ChatResponse, Choice, ModelConfig, TokenLogprob, Usage
from cai_engine.models.endpoints import Endpoint, EndpointPool
from cai_engine.models.keys import resolve_key
from cai_engine.models.retryable import (
    MalformedResponse,
    RetryDecision,
    classify_status,
    classify_transport,
)

DEFAULT_ENV = "OPENAI_API_KEY"
#: Failures that say something about the endpoint (not about the quota or the request).
ENDPOINT_FAULTS = frozenset({"server", "timeout", "connection", "malformed"})
# Reasoning models take max_completion_tokens; compatible servers and older models take max_tokens.
_COMPLETION_TOKEN_MODELS = ("o1", "o3", "o4", "gpt-5")


def request_body(model_name: str, request: ChatRequest) -> dict[str, Any]:
    """The chat-completions JSON body for ``request`` (also one line of a Batch API input file)."""
    p = request.params
    body: dict[str, Any] = {
        "model": model_name,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        "temperature": p.temperature,
        "top_p": p.top_p,
    }
    token_field = "max_completion_tokens" if model_name.startswith(_COMPLETION_TOKEN_MODELS) else "max_tokens"
    body[token_field] = p.max_tokens
    if p.n > 1:
        body["n"] = p.n
    if p.seed is not None:
        body["seed"] = p.seed
    if p.stop:
        body["stop"] = p.stop
    if p.logprobs or p.top_logprobs:
        body["logprobs"] = True
        if p.top_logprobs:
            body["top_logprobs"] = p.top_logprobs
    return body


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def parse_completion(data: Any, spec: str, latency_s: float = 0.0) -> ChatResponse:
    """A ChatCompletion (SDK object or plain dict from a batch output file) as our response."""
    choices_raw = _get(data, "choices")
    if not choices_raw:
        raise MalformedResponse("chat completion without choices")
    choices = []
    for c in sorted(choices_raw, key=lambda c: _get(c, "index") or 0):
        message = _get(c, "message")
        if message is None:
            raise MalformedResponse("chat completion choice without a message")
        logprobs = None
        lp = _get(c, "logprobs")
        content = _get(lp, "content") if lp is not None else None
        if content:
            logprobs = [
                TokenLogprob(
                    token=_get(t, "token"),
                    logprob=_get(t, "logprob"),
                    top={_get(a, "token"): _get(a, "logprob") for a in (_get(t, "top_logprobs") or [])},
                )
                for t in content
            ]
        choices.append(Choice(text=_get(message, "content") or "", finish_reason=_get(c, "finish_reason"),
                              logprobs=logprobs))
    usage = _get(data, "usage")
    return ChatResponse(
        choices=choices,
        usage=Usage(input_tokens=(_get(usage, "prompt_tokens") or 0) if usage else 0,
                    output_tokens=(_get(usage, "completion_tokens") or 0) if usage else 0),
        model=spec,
        latency_s=latency_s,
    )


def classify(exc: BaseException) -> RetryDecision:
    """Map an ``openai`` SDK exception onto the engine's retry classes."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        return classify_status(exc.status_code, exc.response.headers)
    if isinstance(exc, openai.APITimeoutError):
        return RetryDecision(True, "timeout")
    if isinstance(exc, openai.APIConnectionError):
        return RetryDecision(True, "connection")
    if isinstance(exc, openai.APIResponseValidationError):
        return RetryDecision(True, "malformed")
    return classify_transport(exc)


class OpenAIBackend:
    """One model behind one or more OpenAI-compatible endpoints."""

    provider = "openai"

    def __init__(self, name: str, config: ModelConfig):
        import openai

        self.spec = f"openai/{name}"
        self.name = name
        self.config = config
        # Self-hosted servers need no key: allowed when base_urls are given and no key is configured.
        key = resolve_key(config, DEFAULT_ENV, allow_missing=bool(config.base_urls))
        urls: list[str | None] = list(config.base_urls) or [None]
        self.pool: EndpointPool[Any] = EndpointPool([
            Endpoint(url=u or "https://api.openai.com/v1",
                     client=openai.AsyncOpenAI(api_key=key.reveal(), base_url=u, max_retries=0,
                                               timeout=config.timeout_s))
            for u in urls
        ])

    def __repr__(self) -> str:
        return f"OpenAIBackend({self.spec!r}, endpoints={[e.url for e in self.pool.endpoints]})"

    def classify(self, exc: BaseException) -> RetryDecision:
        return classify(exc)

    async def generate(self, request: ChatRequest) -> ChatResponse:
        body = request_body(self.name, request)
        with self.pool.use() as ep:
            started = time.perf_counter()
            try:
                completion = await ep.client.chat.completions.create(**body)
                response = parse_completion(completion, self.spec, time.perf_counter() - started)
            except Exception as exc:
                self.pool.record(ep, ok=classify(exc).kind not in ENDPOINT_FAULTS)
                raise
            self.pool.record(ep, ok=True)
            return response

    def batch_adapter(self) -> Any:
        """The OpenAI Batch API adapter over this backend's first endpoint."""
        from cai_engine.models.openai_batch import OpenAIBatch

        return OpenAIBatch(self)

    async def aclose(self) -> None:
        for ep in self.pool.endpoints:
            await ep.client.close()


def create(name: str, config: ModelConfig) -> OpenAIBackend:
    return OpenAIBackend(name, config)
