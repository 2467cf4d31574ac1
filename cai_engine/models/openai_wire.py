"""The OpenAI chat-completions wire format, shared by the backend and the Batch API adapter.

:func:`request_body` is both the ``create()`` arguments and the ``body`` of one Batch API input
line; :func:`parse_completion` reads an SDK ``ChatCompletion`` or the plain dict of a reply or of a
batch output line. ``usage.prompt_tokens_details.cached_tokens`` (part of ``prompt_tokens``) becomes
``Usage.cached_input_tokens``; ``cache_key`` is sent as ``prompt_cache_key``.
"""

from __future__ import annotations

from typing import Any

from cai_engine.models.base import ChatRequest, ChatResponse, Choice, TokenLogprob
from cai_engine.models.hosted import get_field, token_count, usage_from
from cai_engine.models.retryable import MalformedResponse

# Reasoning models take max_completion_tokens; compatible servers and older models take max_tokens.
_COMPLETION_TOKEN_MODELS = ("o1", "o3", "o4", "gpt-5")


def request_body(model_name: str, request: ChatRequest, cache_key: str | None = None) -> dict[str, Any]:
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
    if cache_key:
        body["prompt_cache_key"] = cache_key
    return body


def _logprobs(choice: Any) -> list[TokenLogprob] | None:
    lp = get_field(choice, "logprobs")
    content = get_field(lp, "content") if lp is not None else None
    if not content:
        return None
    return [
        TokenLogprob(
            token=get_field(t, "token"),
            logprob=get_field(t, "logprob"),
            top={get_field(a, "token"): get_field(a, "logprob") for a in (get_field(t, "top_logprobs") or [])},
        )
        for t in content
    ]


def parse_completion(data: Any, spec: str, latency_s: float = 0.0) -> ChatResponse:
    """A ChatCompletion (SDK object or plain dict from a batch output file) as our response."""
    choices_raw = get_field(data, "choices")
    if not choices_raw:
        raise MalformedResponse("chat completion without choices")
    choices = []
    for c in sorted(choices_raw, key=lambda c: get_field(c, "index") or 0):
        message = get_field(c, "message")
        if message is None:
            raise MalformedResponse("chat completion choice without a message")
        choices.append(Choice(text=get_field(message, "content") or "", finish_reason=get_field(c, "finish_reason"),
                              logprobs=_logprobs(c)))
    usage = get_field(data, "usage")
    details = get_field(usage, "prompt_tokens_details") if usage else None
    return ChatResponse(
        choices=choices,
        usage=usage_from(usage, ("prompt_tokens",), ("completion_tokens",),
                         cached=token_count(details, "cached_tokens")),
        model=spec,
        latency_s=latency_s,
    )
