"""``anthropic/MODEL``: the official ``anthropic`` SDK (async).

Maps our OpenAI-shaped request onto the Messages API: system turns go to the top-level
``system``, ``max_tokens`` is always sent (the API requires it), ``stop`` becomes
``stop_sequences``, and ``n > 1`` is ``n`` requests (the API returns one message). Stop reasons
map onto ours (``end_turn``/``stop_sequence`` -> ``stop``, ``max_tokens`` -> ``length``); input
usage includes prompt-cache reads and writes. The API has no seed or logprobs: a seed is ignored
(documented), logprobs come back as ``None`` so the judge falls back to parsed verdicts.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from cai_engine.models.base import ChatRequest, ChatResponse, Choice, ModelConfig, Usage
from cai_engine.models.endpoints import Endpoint, EndpointPool
from cai_engine.models.keys import resolve_key
from cai_engine.models.openai_backend import ENDPOINT_FAULTS
from cai_engine.models.retryable import MalformedResponse, RetryDecision, classify_status, classify_transport

DEFAULT_ENV = "ANTHROPIC_API_KEY"
STOP_REASONS = {
    "end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
    "tool_use": "tool_calls", "refusal": "content_filter", "pause_turn": "stop",
}


_SDK_ARGS = frozenset({"model", "max_tokens", "messages", "system", "stop_sequences"})


def request_body(model_name: str, request: ChatRequest) -> dict[str, Any]:
    """Messages API JSON parameters for one choice of ``request`` (also a batch item's ``params``)."""
    p = request.params
    system = "\n\n".join(m.content for m in request.messages if m.role == "system")
    body: dict[str, Any] = {
        "model": model_name,
        "max_tokens": p.max_tokens,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages if m.role != "system"],
        "temperature": min(p.temperature, 1.0),  # the API's range is 0..1
    }
    if system:
        body["system"] = system
    if p.top_p < 1.0:
        body["top_p"] = p.top_p
    if p.stop:
        body["stop_sequences"] = p.stop
    return body


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def parse_message(message: Any) -> tuple[Choice, Usage]:
    """One Messages API message (SDK object or dict from batch results) as a choice + usage."""
    content = _get(message, "content")
    if content is None:
        raise MalformedResponse("message without content")
    text = "".join(_get(b, "text") or "" for b in content if _get(b, "type") == "text")
    reason = _get(message, "stop_reason")
    usage = _get(message, "usage")
    inp = sum(int(_get(usage, f) or 0) for f in
              ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")) if usage else 0
    out = int(_get(usage, "output_tokens") or 0) if usage else 0
    return Choice(text=text, finish_reason=STOP_REASONS.get(reason, reason)), Usage(input_tokens=inp, output_tokens=out)


def classify(exc: BaseException) -> RetryDecision:
    """Map an ``anthropic`` SDK exception onto the engine's retry classes (529 overloaded is 5xx)."""
    import anthropic

    if isinstance(exc, anthropic.APIStatusError):
        return classify_status(exc.status_code, exc.response.headers)
    if isinstance(exc, anthropic.APITimeoutError):
        return RetryDecision(True, "timeout")
    if isinstance(exc, anthropic.APIConnectionError):
        return RetryDecision(True, "connection")
    if isinstance(exc, anthropic.APIResponseValidationError):
        return RetryDecision(True, "malformed")
    return classify_transport(exc)


class AnthropicBackend:
    provider = "anthropic"

    def __init__(self, name: str, config: ModelConfig):
        import anthropic

        self.spec = f"anthropic/{name}"
        self.name = name
        self.config = config
        key = resolve_key(config, DEFAULT_ENV)
        urls: list[str | None] = list(config.base_urls) or [None]
        self.pool: EndpointPool[Any] = EndpointPool([
            Endpoint(url=u or "https://api.anthropic.com",
                     client=anthropic.AsyncAnthropic(api_key=key.reveal(), base_url=u, max_retries=0,
                                                     timeout=config.timeout_s))
            for u in urls
        ])

    def __repr__(self) -> str:
        return f"AnthropicBackend({self.spec!r})"

    def classify(self, exc: BaseException) -> RetryDecision:
        return classify(exc)

    async def _one(self, body: dict[str, Any]) -> tuple[Choice, Usage]:
        with self.pool.use() as ep:
            try:
                message = await ep.client.messages.create(**body)
                result = parse_message(message)
            except Exception as exc:
                self.pool.record(ep, ok=classify(exc).kind not in ENDPOINT_FAULTS)
                raise
            self.pool.record(ep, ok=True)
            return result

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

    def batch_adapter(self) -> Any:
        from cai_engine.models.anthropic_batch import AnthropicBatch

        return AnthropicBatch(self)

    async def aclose(self) -> None:
        for ep in self.pool.endpoints:
            await ep.client.close()


def create(name: str, config: ModelConfig) -> AnthropicBackend:
    return AnthropicBackend(name, config)
